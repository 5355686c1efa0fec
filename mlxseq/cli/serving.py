"""``mlxseq serve``: the command's options, and one line when it cannot start."""

import typer

from mlxseq.cli.helpers import say_startup_notes
from mlxseq.serve.service import Limits

LIMITS = Limits()


def serve(
    model: list[str] = typer.Option(
        None, help="Model folder or Hub repo id; repeat for several. Default: the bundled translator."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; 0.0.0.0 serves other machines too."),
    port: int = typer.Option(8080, help="Port; 0 picks a free one."),
    max_texts: int = typer.Option(LIMITS.max_texts, help="Texts one request may hold."),
    max_text_chars: int = typer.Option(LIMITS.max_text_chars, help="Characters of one text or prompt."),
    max_tokens: int = typer.Option(LIMITS.max_tokens, help="Tokens one completion may generate."),
    max_queue: int = typer.Option(LIMITS.max_queue, help="Requests waiting for the model; more get 503."),
    timeout: float = typer.Option(LIMITS.timeout, help="Seconds a request may wait and run; then 504."),
    batch_wait_ms: float = typer.Option(
        LIMITS.batch_wait * 1000, help="Milliseconds a translation waits for others to join its batch."),
    max_batch_texts: int = typer.Option(LIMITS.max_batch_texts, help="Texts translated together at most; 1: no batching."),
    quiet: bool = typer.Option(False, help="Do not log each request."),
):
    """Serve model folders over HTTP: /v1/translate, /v1/completions (OpenAI's), /v1/predict, and a page at /."""
    say_startup_notes()
    from mlxseq.checkpoint import ModelFolderError
    from mlxseq.serve import serve as run_server

    try:
        limits = Limits(max_texts=max_texts, max_text_chars=max_text_chars, max_tokens=max_tokens,
                        max_queue=max_queue, timeout=timeout, batch_wait=batch_wait_ms / 1000,
                        max_batch_texts=max_batch_texts)
        if min(max_texts, max_text_chars, max_queue, max_batch_texts) < 1 or max_tokens < 0 or timeout <= 0 or batch_wait_ms < 0:
            raise ValueError("limits must be positive numbers")

        def ready(server):
            bound_host, bound_port = server.server_address[:2]
            typer.echo(f"serving {len(server.service.models)} model(s) on http://{bound_host}:{bound_port}/ "
                       f"({', '.join(server.service.models)}); Ctrl-C stops after the requests in flight", err=True)

        run_server(list(model) if model else [None], host, port, limits, quiet=quiet, on_ready=ready)
    except (ModelFolderError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1)
    except OSError as error:  # the port is taken, the address is not this machine's
        typer.echo(f"error: cannot serve on {host}:{port}: {error.strerror or error}", err=True)
        raise typer.Exit(1)
    typer.echo("stopped", err=True)
