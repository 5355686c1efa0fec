"""The ``mlxseq`` command line: one library call per command, heavy imports inside."""

import typer

app = typer.Typer(help="Recurrent sequence models on MLX.", no_args_is_help=True, add_completion=False)


def _version(value: bool):
    if value:
        from mlxseq._version import __version__

        typer.echo(f"mlxseq {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
):
    """mlxseq: RNN, GRU and LSTM models with PyTorch's parameters, compiled for MLX."""


@app.command()
def info():
    """Show the MLX version, device, BLAS and compiler that mlxseq runs with."""
    from mlxseq.environment import describe_environment

    for key, value in describe_environment().items():
        typer.echo(f"{key + ':':<14}{value}")


@app.command()
def demo(
    kind: str = typer.Option("lstm", help="rnn, gru or lstm."),
    batch: int = typer.Option(32, min=1, help="Sequences per batch."),
    steps: int = typer.Option(40, min=1, help="Time steps of the longest sequence."),
    hidden: int = typer.Option(256, min=1, help="Hidden size."),
):
    """Run a deep bidirectional layer on a ragged batch, forward and backward, and time it."""
    from mlxseq.demo import run_demo

    try:
        run_demo(kind, batch, steps, hidden, echo=typer.echo)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1)


@app.command()
def convert(
    source: str = typer.Argument(..., help="PyTorch checkpoint (.pt/.pth/.bin, zip or legacy), .safetensors or .npz."),
    out_dir: str = typer.Argument(..., help="Model folder to write."),
    format: str = typer.Option("auto", "--format", help="auto or torch-rnn."),
    prefix: str = typer.Option(None, help="Key prefix of the layer, e.g. 'encoder.rnn.' (when there are several)."),
    nonlinearity: str = typer.Option("tanh", help="tanh or relu, for an nn.RNN (its weights cannot tell)."),
    allow: list[str] = typer.Option([], help="Extra pickled class paths to read as inert records (e.g. 'argparse.Namespace')."),
):
    """Convert a PyTorch checkpoint into an mlxseq model folder, without torch and without running pickled code."""
    from mlxseq.convert.errors import CheckpointError
    from mlxseq.convert.folder import ConversionError, convert_checkpoint

    try:
        done = convert_checkpoint(
            source, out_dir, format=format, prefix=prefix, nonlinearity=nonlinearity, allow=tuple(allow)
        )
    except (ConversionError, CheckpointError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1)
    typer.echo(f"found {done.description}")
    typer.echo(f"wrote {done.folder}")
