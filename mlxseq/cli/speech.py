"""``mlxseq transcribe``: WAV files to text with a speech recogniser folder."""

import typer

from mlxseq.cli.helpers import say_startup_notes


def transcribe(
    audio: list[str] = typer.Argument(..., help="WAV files (PCM, any rate: resampled to the model's)."),
    model: str = typer.Option(None, help="Speech recogniser folder or Hub repo id; default: the bundled digit "
                                         "recogniser (English digits only)."),
    beam_size: int = typer.Option(1, help="CTC prefix beam search width; 1 is greedy (best path)."),
    batch_size: int = typer.Option(16, help="Files per batch."),
):
    """Transcribe WAV files: one line per file, file<TAB>transcript."""
    say_startup_notes()
    from mlxseq.checkpoint import ModelFolderError
    from mlxseq.pipelines.transcriber import Transcriber

    try:
        Transcriber.check_beam(beam_size)  # before loading anything
        texts = Transcriber.load(model).transcribe(audio, batch_size, beam_size)
    except (ModelFolderError, ValueError) as error:  # AudioError is a ValueError
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1)
    for path, text in zip(audio, texts):
        typer.echo(f"{path}\t{text}")
