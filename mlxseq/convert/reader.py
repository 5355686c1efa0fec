"""Read a checkpoint file into numpy arrays, safely and without torch.

:func:`load_torch_checkpoint` is the one entry point. It picks the format by
suffix (``.safetensors``, ``.npz``) and otherwise by content (torch zip or
legacy ``torch.save``), and turns every failure into a
:class:`CheckpointError` that names the file.
"""

from __future__ import annotations

import errno
import os
import zipfile
from typing import Any, Iterable

import numpy as np

from .errors import CheckpointError
from .pickle_globals import normalize_allow
from .torch_checkpoint import read_legacy_checkpoint, read_zip_checkpoint

_MAX_WRAPPED_MESSAGE = 300


def load_torch_checkpoint(path: str | os.PathLike, *, allow: str | Iterable[str] = ()) -> Any:
    """Load a PyTorch checkpoint with every tensor as a numpy array.

    Reads ``torch.save`` files of both layouts (zip, torch >= 1.6, and the
    legacy stream, torch < 1.6) without importing torch and without running
    any code the file names: the pickle may only use plain data types,
    ``collections.OrderedDict`` and torch's tensor rebuild functions, storage
    classes and dtypes. ``.safetensors`` and ``.npz`` files load too, as a
    dict of name -> array.

    bfloat16 tensors come back as float32 arrays with exactly the same
    values (numpy has no bfloat16); bool tensors as numpy bool; shared storages
    are read once, but each returned array is its own copy.

    Work and memory are bounded by the file: all arrays together may take at
    most 4x the stored tensor bytes (plus 64 MiB for expanded views), zip
    members may inflate at most 100x, and nested tuples are capped (see
    :mod:`mlxseq.convert.unpickler`); past a bound the file is refused.

    Args:
        path: the file.
        allow: extra globals the pickle may name, as exact ``module.name``
            paths or ``fnmatch`` patterns, e.g. ``("argparse.Namespace",
            "onmt.*")``. They are never imported or called: their objects come
            back as :class:`PickledObject` records holding the pickled data.

    Returns:
        The saved object (dicts, lists, tuples, OrderedDicts, numbers, strings,
        numpy arrays, records).

    Raises:
        FileNotFoundError: ``path`` is not an existing file.
        UnsafeGlobalError: the pickle names a global that is not allowed (a
            :class:`CheckpointError`; the message says how to allow it).
        CheckpointError: the file is truncated, corrupt or of an unsupported kind.
    """
    path = os.fspath(path)
    patterns = normalize_allow(allow)
    if not os.path.isfile(path):
        raise FileNotFoundError(errno.ENOENT, "no such checkpoint file", path)
    try:
        return _load(path, patterns)
    except CheckpointError as error:
        error.add_path(path)
        raise
    except Exception as error:  # corrupt input surfaces as any exception type
        detail = f"{type(error).__name__}: {error}"[:_MAX_WRAPPED_MESSAGE]
        raise CheckpointError(f"corrupt or unreadable checkpoint ({detail})", path) from error


def _load(path: str, allow: tuple[str, ...]) -> Any:
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".safetensors":
        return read_safetensors(path)
    if suffix == ".npz":
        return read_npz(path)
    if os.path.getsize(path) == 0:
        raise CheckpointError("the file is empty")
    if zipfile.is_zipfile(path):
        return read_zip_checkpoint(path, allow)
    return read_legacy_checkpoint(path, allow)


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """A ``.safetensors`` file as name -> array (bfloat16 widened exactly to float32)."""
    import mlx.core as mx  # only this format needs MLX

    arrays = mx.load(path, format="safetensors")
    return {name: np.array(a.astype(mx.float32) if a.dtype == mx.bfloat16 else a)
            for name, a in arrays.items()}


def read_npz(path: str) -> dict[str, np.ndarray]:
    """An ``.npz`` file as name -> array; object arrays (pickles) are refused."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {}
        for name in archive.files:
            try:
                arrays[name] = archive[name]
            except ValueError as error:
                if "allow_pickle" not in str(error):
                    raise
                raise CheckpointError(
                    f"array {name!r} is an object array (pickled Python objects), which is refused"
                ) from None
        return arrays
