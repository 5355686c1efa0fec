"""Errors for files named by a config: which key the path came from, where relative paths start."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable

from mlxseq.data import MissingFileError
from mlxseq.data.locations import where_to_get


@contextmanager
def from_config_key(key: str | Callable[[str], str]):
    """Re-raise a :class:`MissingFileError` inside the block naming the config key of the path.

    ``key`` is the dotted key (``"data.train"``), or a function of the missing path that
    returns it (for a block that reads the files of several keys).
    """
    try:
        yield
    except MissingFileError as error:
        name = key(error.path) if callable(key) else key
        hint = where_to_get(error.path) or (
            f"; relative data paths start at the data root (data.root, MLXSEQ_DATA or ./data) unless they exist "
            f"from {os.getcwd()}")
        raise MissingFileError(f"no such file (from {name}{hint})", error.path) from None
