"""Time series for forecasting: CSV files with a date column, and a per-feature normaliser.

A file has one header line naming its columns, then one row per time step, in time
order: a date (ISO 8601, e.g. ``2016-07-01 00:00:00``) and real-valued features. Every
failure is a :class:`DataError` naming file and line. The data are read as they are;
derived forms (normalised values, windows) are computed at load time only.

Public API::

    read_timeseries(path, date_column="date", columns=None) -> TimeSeries
    Normaliser.fit(values, columns)   # per-feature mean and std of the training rows
    normaliser.transform(x), normaliser.inverse(x), normaliser.save(folder), Normaliser.load(folder)
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Sequence

import numpy as np

from mlxseq.data.corpus import DataError, PathLike, _file_lines
from mlxseq.system.files import write_text

NORMALISER_FILE = "normaliser.json"
FORMAT_VERSION = 1


@dataclass
class TimeSeries:
    """The rows of a CSV time series.

    Attributes:
        dates: the date of each row, as written.
        columns: the feature names, in the order of ``values``' last axis.
        values: float64 ``(N, D)``.
        path: the file read.
    """

    dates: list[str] = field(repr=False)
    columns: list[str]
    values: np.ndarray = field(repr=False)
    path: str = ""

    def __len__(self) -> int:
        return len(self.dates)


def _parse_date(text: str, path, number) -> datetime:
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise DataError(f"bad date {text!r}: expected ISO 8601, e.g. 2016-07-01 00:00:00", path, number) from None


def read_timeseries(path: PathLike, date_column: str = "date", columns: Sequence[str] | None = None) -> TimeSeries:
    """Read a CSV time series with a header line.

    Args:
        path: plain or gzip-compressed UTF-8 CSV.
        date_column: the header name of the date column.
        columns: the features to keep, in this order; None keeps every column but the date.

    Raises:
        DataError: no header, no date column, an unknown column, a row with another number
            of fields, a value that is not a finite number, a bad or non-increasing date.
    """
    lines = _file_lines(path)
    if not lines:
        raise DataError("file is empty, expected a header line and rows", path)
    header = [name.strip() for name in next(csv.reader([lines[0]]))]
    if date_column not in header:
        raise DataError(f"no {date_column!r} column in the header (columns: {', '.join(header)})", path, 1)
    names = [n for n in header if n != date_column] if columns is None else list(columns)
    for name in names:
        if name not in header or name == date_column:
            raise DataError(f"no feature column {name!r} in the header (columns: {', '.join(header)})", path, 1)
    if not names:
        raise DataError("no feature columns besides the date", path, 1)
    date_index, indices = header.index(date_column), [header.index(n) for n in names]
    dates, rows, previous = [], [], None
    for number, row in enumerate(csv.reader(lines[1:]), start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(f"expected {len(header)} comma-separated fields, got {len(row)}", path, number)
        when = _parse_date(row[date_index], path, number)
        if previous is not None and when <= previous:
            raise DataError(f"date {row[date_index]} is not after the previous row's", path, number)
        previous = when
        values = []
        for name, i in zip(names, indices):
            try:
                value = float(row[i])
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise DataError(f"column {name!r}: {row[i]!r} is not a finite number", path, number)
            values.append(value)
        dates.append(row[date_index].strip())
        rows.append(values)
    if not rows:
        raise DataError("no rows after the header", path)
    return TimeSeries(dates, names, np.array(rows, dtype=np.float64), str(path))


@dataclass
class Normaliser:
    """Per-feature standardisation ``(x - mean) / std`` (z-scores), fitted on training rows only.

    ``std`` is the population standard deviation; a constant feature gets std 1.
    """

    columns: list[str]
    mean: np.ndarray  # (D,)
    std: np.ndarray  # (D,)

    @classmethod
    def fit(cls, values: np.ndarray, columns: Sequence[str]) -> "Normaliser":
        """Mean and std of each column of ``values`` (N, D)."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(columns) or len(values) == 0:
            raise ValueError(f"expected values of shape (N >= 1, D={len(columns)}), got shape {values.shape}")
        std = values.std(axis=0)
        return cls(list(columns), values.mean(axis=0), np.where(std > 0, std, 1.0))

    def _check(self, x: np.ndarray) -> None:
        if x.shape[-1] != len(self.columns):
            raise ValueError(f"expected {len(self.columns)} features in the last axis, got shape {x.shape}")

    def transform(self, x: np.ndarray) -> np.ndarray:
        """``(x - mean) / std`` over the last axis."""
        x = np.asarray(x, dtype=np.float64)
        self._check(x)
        return (x - self.mean) / self.std

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """``z * std + mean``: back to the data's units."""
        z = np.asarray(z, dtype=np.float64)
        self._check(z)
        return z * self.std + self.mean

    def save(self, folder: PathLike) -> Path:
        """Write ``normaliser.json`` into ``folder`` (atomically); returns its path."""
        path = Path(folder) / NORMALISER_FILE
        content = {"format_version": FORMAT_VERSION, "columns": self.columns,
                   "mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}
        write_text(path, json.dumps(content, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, folder: PathLike) -> "Normaliser":
        """Read what :meth:`save` wrote; DataError naming the file otherwise."""
        path = Path(folder) / NORMALISER_FILE
        if not path.is_file():
            raise DataError("no such normaliser file", path)
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DataError(f"not a normaliser JSON file ({error})", path) from None
        if not isinstance(content, dict) or content.get("format_version") != FORMAT_VERSION:
            raise DataError(f"format_version must be {FORMAT_VERSION}", path)
        columns, mean, std = content.get("columns"), content.get("mean"), content.get("std")
        if not (isinstance(columns, list) and isinstance(mean, list) and isinstance(std, list)
                and len(columns) == len(mean) == len(std)):
            raise DataError("'columns', 'mean' and 'std' must be lists of one length", path)
        return cls(columns, np.array(mean, dtype=np.float64), np.array(std, dtype=np.float64))
