"""What the command line's commands share: talking to a person at a terminal, option checks, one-line errors."""

from contextlib import contextmanager

import typer


def say_startup_notes() -> None:
    """Tell a person at a terminal, on stderr, what would otherwise be a long silence (first kernel build, slow BLAS)."""
    import sys

    if not sys.stderr.isatty():
        return
    from mlxseq.system.environment import startup_notes

    for note in startup_notes():
        typer.echo(note, err=True)


@contextmanager
def sentence_progress(total: int, what: str = "sentences"):
    """A rich progress bar on stderr with items/s and the time left, for a person at a terminal;
    yields ``advance(n)``, or None (no bar: not a terminal, or too little work to show)."""
    import sys

    if not sys.stderr.isatty() or total < 64:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn(f"{what}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=total, rate="")

        def advance(n: int) -> None:
            bar.advance(task, n)
            speed = bar.tasks[0].speed
            bar.update(task, rate=f"{speed:.1f}/s" if speed else "")

        yield advance


def decoding_choices(beam_size=None, length_penalty=None, max_length_ratio=None, n_best=1, batch_size=32,
                      search=None, max_length=None, replace_unk=False, length_penalty_kind=None,
                      max_length_offset=None) -> dict:
    """The decoding options given on the command line (None: the model folder's, else mlxseq's default).

    Checked at once, so that a bad option fails before a model is loaded.
    """
    from mlxseq.decoding.args import DecodingArgs

    given = dict(beam_size=beam_size, length_penalty=length_penalty, length_penalty_kind=length_penalty_kind,
                 max_length_ratio=max_length_ratio, max_length_offset=max_length_offset, n_best=n_best,
                 batch_size=batch_size, search=search, max_length=max_length, replace_unk=replace_unk)
    given = {key: value for key, value in given.items() if value is not None}
    DecodingArgs(**{"beam_size": max(given.get("n_best", 1), 1), **given})
    return given


def check_writable_file(path: str) -> None:
    """ValueError unless ``path`` can become a file: not a folder, in an existing folder."""
    from pathlib import Path

    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{path} is a folder; pass a file name (e.g. {target / 'attention.png'})")
    if not target.resolve().parent.is_dir():
        raise ValueError(f"cannot write {path}: folder {target.parent} does not exist")


@contextmanager
def folder_errors(output: str):
    """A model-folder problem or a failed write of ``output``: one ``error:`` line and exit status 1."""
    from mlxseq.checkpoint import ModelFolderError

    try:
        yield
    except ModelFolderError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1)
    except OSError as error:
        typer.echo(f"error: cannot write {output}: {error.strerror or error}", err=True)
        raise typer.Exit(1)
