"""Sequences of feature vectors from files: one example's ``(frames, features)`` array.

- ``.npy``: a 2-D array (a 1-D array is one feature per frame);
- ``.npz``: the same, as the archive's only array (or the one named ``frames``);
- ``.csv``: one frame per line, comma-separated numbers (a first line with any non-number is
  a header and skipped).

Arrays are read without pickles (``allow_pickle=False``) and must be finite numbers.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from mlxseq.data.corpus import DataError, MissingFileError
from mlxseq.data.timeseries import Normaliser

FRAME_SUFFIXES = (".npy", ".npz", ".csv")
MAX_FRAME_VALUES = 1 << 28  # values in one example (1 GiB of float32)


def read_frames(path) -> np.ndarray:
    """The ``(frames, features)`` float32 array stored at ``path``; DataError naming the file otherwise."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FRAME_SUFFIXES:
        raise DataError(f"expected a feature file ending in {', '.join(FRAME_SUFFIXES)}", path)
    if not path.is_file():
        raise MissingFileError("no such file", path)
    try:
        if suffix == ".csv":
            values = _read_csv(path)
        elif suffix == ".npy":
            values = _checked_load(path)
        else:
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.files)
                name = "frames" if "frames" in names else names[0] if len(names) == 1 else None
                if name is None:
                    raise DataError(f"holds {len(names)} arrays ({', '.join(names[:5])}); name the one to read 'frames'",
                                    path)
                values = archive[name]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"not a readable {suffix[1:]} array ({error})", path) from None
    values = np.asarray(values)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or values.shape[0] == 0 or not np.issubdtype(values.dtype, np.number):
        raise DataError(f"expected a numeric (frames, features) array with at least one frame, got "
                        f"{values.dtype} of shape {values.shape}", path)
    values = values.astype(np.float32)
    if not np.isfinite(values).all():
        raise DataError("holds NaN or infinite values", path)
    return values


def _checked_load(path: Path) -> np.ndarray:
    """A .npy file's array, its size checked from the header (memory-mapped) before it is read."""
    mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    if mapped.size > MAX_FRAME_VALUES:
        raise DataError(f"an array of shape {mapped.shape} is over the {MAX_FRAME_VALUES:,} values an example may hold",
                        path)
    return np.array(mapped)


def _read_csv(path: Path) -> np.ndarray:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append([float(v) for v in line.split(",")])
        except ValueError:
            if number == 1:
                continue  # a header
            raise DataError(f"expected comma-separated numbers, got {line[:60]!r}", path, number) from None
        if len(rows[-1]) != len(rows[0]):
            raise DataError(f"{len(rows[-1])} values, the first frame has {len(rows[0])}", path, number)
    return np.array(rows, dtype=np.float32)


def standardise(train: list[np.ndarray], valid: list[np.ndarray], source) -> tuple[Normaliser, list, list]:
    """``(normaliser, train, valid)``: a per-feature standardisation fitted on the training frames, applied
    to both (float32); DataError naming ``source`` when the examples differ in features per frame."""
    widths = {f.shape[1] for f in train + valid}
    if len(widths) != 1:
        raise DataError(f"examples hold different numbers of features per frame: {sorted(widths)}", source)
    normaliser = Normaliser.fit(np.concatenate(train), [f"feature_{k}" for k in range(widths.pop())])
    return (normaliser, [normaliser.transform(f).astype(np.float32) for f in train],
            [normaliser.transform(f).astype(np.float32) for f in valid])
