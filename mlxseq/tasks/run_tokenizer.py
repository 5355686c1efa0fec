"""A run's tokenizer in ``RUN/tokenizer/``: trained once, reused by a resumed run.

The folder holds the tokenizer files and ``settings.json`` (the data settings it
was trained from, or ``{"init_from": folder}`` when a fine-tuned run took the tokenizer of the
model it starts from, which is then used whatever the data settings). A later run with the same settings reuses it; a resumed run
with other settings is refused (its model was trained on that vocabulary); a new
run with other settings trains a new one. The folder is written under a
temporary name and renamed, so a crash never leaves half a tokenizer.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable, TypeVar

from mlxseq.system.files import write_text
from mlxseq.training.resume import ResumeError

TOKENIZER_FOLDER = "tokenizer"
T = TypeVar("T")


def tokenizer_for_run(
    run_dir,
    settings: dict,
    train: Callable[[], T],
    save: Callable[[T, Path], object],
    load: Callable[[Path], T],
    *,
    resuming: bool,
    log: Callable[[str], None] | None = None,
    description: str = "tokenizer",
) -> T:
    """The tokenizer of ``RUN/tokenizer/`` if trained with ``settings``, else ``train()`` saved there.

    Args:
        run_dir: the run folder.
        settings: JSON-serialisable data settings the tokenizer depends on.
        train: trains a new tokenizer.
        save, load: ``save(tokenizer, folder)`` and ``load(folder)``.
        resuming: whether a resume checkpoint is being continued (other settings are then an error).
        log: receives "training the ..." when a tokenizer is trained.
        description: what is trained, for the log (e.g. "sentencepiece tokenizer on 29000 pairs").
    """
    folder = Path(run_dir) / TOKENIZER_FOLDER
    settings_path = folder / "settings.json"
    if settings_path.is_file():
        saved = json.loads(settings_path.read_text(encoding="utf-8"))
        if saved == settings or "init_from" in saved:  # a fine-tuned model keeps its folder's vocabulary
            return load(folder)
        if resuming:
            changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
            raise ResumeError(
                f"{settings_path}: the run's tokenizer was trained with other data settings ({', '.join(changed)}); "
                "a resumed model needs the same vocabulary: restore them, or choose another output_dir"
            )
    if log:
        log(f"training the {description}")
    tokenizer = train()
    temporary = Path(run_dir) / f".{TOKENIZER_FOLDER}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    save(tokenizer, temporary)
    write_text(temporary / "settings.json", json.dumps(settings, indent=1) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    os.rename(temporary, folder)
    return tokenizer
