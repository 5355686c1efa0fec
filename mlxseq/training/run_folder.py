"""The run folder: every file a training run writes, in one place.

Layout of ``output_dir``::

    last/ best/        model folders (loadable by mlxseq.load), replaced whole
    checkpoints/       step-<8-digit step>/ model folders of the last saves (training.keep_checkpoints)
    resume/            the resume checkpoint (mlxseq.training.resume)
    metrics.jsonl      one JSON object per logged window or validation
    curves.png         training and validation curves, redrawn at each validation
    config.yaml        the resolved config of the run (written by mlxseq.runs.from_config)
    .lock              the pid of the run that holds the folder (an OS lock while it runs)

Only the primary process writes (``primary=False`` makes every write a no-op), so
distributed training can run one RunFolder per process with rank 0 primary.

A model folder is written to ``.NAME.tmp/`` and swapped in: ``NAME`` is renamed to
``.NAME.old/``, the new folder to ``NAME``, and the old one deleted. A crash between
the two renames leaves ``.NAME.old/``, which :meth:`RunFolder.recover` renames back.

One run at a time: :meth:`RunFolder.locked` holds an OS file lock on ``.lock`` for
the whole run (released on exit, and by the OS when the process dies), so a
second run in the same folder stops at once with :class:`RunFolderBusyError`.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import mlx.nn as nn
import mlx.optimizers as optim

from mlxseq.system.files import write_text
from mlxseq.training import resume
from mlxseq.training.curves import plot_curves
from mlxseq.training.progress import TOKENS, LossUnits

METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"
MODEL_FOLDERS = ("last", "best")
CHECKPOINTS_DIR = "checkpoints"
LOCK_FILE = ".lock"
# Leftovers of atomic writes cut short (mlxseq.system.files.atomic_write names them .NAME.*.tmp*).
_ATOMIC_LEFTOVERS = (f".{METRICS_FILE}.*.tmp*", f".{CURVES_FILE}.*.tmp*", ".config.yaml.*.tmp*")

_held_locks: dict[str, int] = {}  # folder -> nesting depth of locked() in this process


class RunFolderBusyError(RuntimeError):
    """Another process is training in the same run folder; the message names its pid."""


class RunFolder:
    def __init__(self, path, primary: bool = True):
        self.path = Path(path)
        self.primary = primary
        self.resume_dir = self.path / "resume"
        self.metrics_path = self.path / METRICS_FILE
        self.curves_path = self.path / CURVES_FILE

    # --- model folders ----------------------------------------------------------------

    def recover(self) -> None:
        """Undo what a crash during a model-folder swap left behind."""
        if not self.primary or not self.path.is_dir():
            return
        for name in MODEL_FOLDERS:
            final, old, tmp = self._names(name)
            if not final.exists() and old.exists():
                os.rename(old, final)
            for leftover in (old, tmp):
                shutil.rmtree(leftover, ignore_errors=True)
        for leftover in (self.path / CHECKPOINTS_DIR).glob(".step-*.tmp"):  # a checkpoint cut short
            shutil.rmtree(leftover, ignore_errors=True)
        for pattern in _ATOMIC_LEFTOVERS:
            for leftover in self.path.glob(pattern):
                leftover.unlink(missing_ok=True)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder for this run; :class:`RunFolderBusyError` if another process holds it.

        Re-entrant within a process (the config runner and the training loop both take it).
        """
        if not self.primary:
            yield
            return
        self.path.mkdir(parents=True, exist_ok=True)
        key = str(self.path.resolve())
        if key in _held_locks:
            _held_locks[key] += 1
            try:
                yield
            finally:
                _held_locks[key] -= 1
            return
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderBusyError(
                f"{self.path}: another training run (pid {holder}) is using this folder; "
                "wait for it to end or choose another output_dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        _held_locks[key] = 1
        try:
            yield
        finally:
            del _held_locks[key]
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def write_model(self, name: str, write: Callable[[Path], None]) -> Path:
        """Let ``write(folder)`` fill a fresh folder, then swap it in as ``name``."""
        final, old, tmp = self._names(name)
        if not self.primary:
            return final
        self.path.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        write(tmp)
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        return final

    def write_checkpoint(self, step: int, write: Callable[[Path], None], keep: int) -> Path:
        """Let ``write(folder)`` fill ``checkpoints/step-<8-digit step>/``; keep the ``keep`` latest of them."""
        parent = self.path / CHECKPOINTS_DIR
        final, tmp = parent / f"step-{step:08d}", parent / f".step-{step:08d}.tmp"
        if not self.primary:
            return final
        parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        write(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        for old in self.checkpoints()[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def checkpoints(self) -> list[Path]:
        """The kept checkpoint model folders, oldest first."""
        return sorted((self.path / CHECKPOINTS_DIR).glob("step-" + "[0-9]" * 8))

    def drop_checkpoints_after(self, step: int) -> None:
        """A resumed run redoes the steps after ``step``: their kept checkpoints are of another past."""
        if self.primary:
            for folder in self.checkpoints():
                if int(folder.name[len("step-"):]) > step:
                    shutil.rmtree(folder, ignore_errors=True)

    def _names(self, name: str) -> tuple[Path, Path, Path]:
        return self.path / name, self.path / f".{name}.old", self.path / f".{name}.tmp"

    # --- resume checkpoints --------------------------------------------------------------

    def has_checkpoint(self) -> bool:
        return resume.has_checkpoint(self.resume_dir)

    def save_checkpoint(self, model: nn.Module, optimizer: optim.Optimizer, state: dict, ranks=None) -> None:
        if self.primary:
            resume.save_checkpoint(self.resume_dir, model, optimizer, state, ranks)

    def load_checkpoint(self, model: nn.Module, optimizer: optim.Optimizer) -> dict:
        return resume.load_checkpoint(self.resume_dir, model, optimizer)

    # --- metrics and curves ---------------------------------------------------------------

    def append_metrics(self, record: dict) -> None:
        if not self.primary:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict]:
        """The records of ``metrics.jsonl``; a line cut short by a crash is skipped."""
        if not self.metrics_path.is_file():
            return []
        records = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def keep_metrics_until(self, step: int) -> list[dict]:
        """Drop the records after ``step`` (a resumed run redoes those steps); return the rest."""
        records = [r for r in self.read_metrics() if r.get("step", 0) <= step]
        if self.primary and self.metrics_path.is_file():
            write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in records))
        return records

    def write_curves(self, records: list[dict], title: str = "", units: LossUnits = TOKENS) -> bool:
        return self.primary and plot_curves(records, self.curves_path, title, units)

    def write_text(self, name: str, text: str) -> None:
        if self.primary:
            self.path.mkdir(parents=True, exist_ok=True)
            write_text(self.path / name, text)
