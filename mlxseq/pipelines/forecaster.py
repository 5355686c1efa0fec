"""Forecast with a ``forecaster`` model folder: the next H steps of a CSV series, and MSE / MAE.

    forecaster = TimeSeriesForecaster.load("path/or/owner-repo")   # model, normaliser, settings
    dates, values = forecaster.forecast(read_timeseries("ETTh1.csv"))  # after the last row, data units
    forecaster.evaluate(series, split="test")                       # -> {"mse", "mae", ...} normalised

A folder holds the model, ``normaliser.json`` (per-feature mean and std of the training
rows) and ``forecast.json`` (the date column, the feature columns, and the row split the
model was trained with). Scores are on the normalised scale, averaged over every window,
horizon step and feature; windows slide by one step and their targets cover exactly the
split (inputs may reach back into the rows before it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import mlx.core as mx
import numpy as np

from mlxseq.checkpoint import load_with_tokenizer, read_folder_settings, write_folder_settings
from mlxseq.data import DataError, Normaliser, TimeSeries

SETTINGS_FILE = "forecast.json"
SPLITS = ("train", "valid", "test")


@dataclass
class SeriesSettings:
    """What a forecaster reads (``forecast.json``): columns and the rows of each split."""

    date_column: str
    columns: list[str]
    train_rows: int  # rows [0, train_rows) trained the model and fitted the normaliser
    valid_rows: int  # the next rows: validation
    test_rows: int  # the next rows: test

    def split_range(self, split: str) -> tuple[int, int]:
        """Rows ``[start, stop)`` whose values are the targets of ``split``."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        bounds = np.cumsum([0, self.train_rows, self.valid_rows, self.test_rows])
        i = SPLITS.index(split)
        return int(bounds[i]), int(bounds[i + 1])

    def save(self, folder) -> None:
        write_folder_settings(folder, SETTINGS_FILE, self)

    @classmethod
    def load(cls, folder) -> "SeriesSettings":
        return read_folder_settings(folder, SETTINGS_FILE, cls, "a forecast settings file")


def window_starts(first_target: int, stop: int, input_length: int, horizon: int, stride: int = 1) -> np.ndarray:
    """Target starts ``t`` of the windows ``rows[t - L : t] -> rows[t : t + H]`` with targets inside
    ``[first_target, stop)`` and inputs inside the series (``t >= L``)."""
    first = max(first_target, input_length)
    return np.arange(first, stop - horizon + 1, stride, dtype=np.int64)


def windows(values: np.ndarray, starts: np.ndarray, input_length: int, horizon: int):
    """Inputs ``(N, L, D)`` and targets ``(N, H, D)`` as float32 for the given target starts."""
    inputs = np.stack([values[t - input_length : t] for t in starts]).astype(np.float32)
    targets = np.stack([values[t : t + horizon] for t in starts]).astype(np.float32)
    return inputs, targets


def _next_dates(dates: list[str], count: int) -> list[str]:
    """``count`` dates after the last, at the step between the last two rows."""
    last = datetime.fromisoformat(dates[-1])
    step = last - datetime.fromisoformat(dates[-2]) if len(dates) > 1 else None
    if step is None:
        return [f"+{k}" for k in range(1, count + 1)]
    return [str(last + step * k) for k in range(1, count + 1)]


class TimeSeriesForecaster:
    """A ``forecaster`` model with its normaliser and series settings."""

    def __init__(self, model, normaliser: Normaliser, settings: SeriesSettings, folder: Path | None = None):
        self.model, self.normaliser, self.settings, self.folder = model, normaliser, settings, folder
        self.model.eval()

    @classmethod
    def load(cls, path_or_repo, revision: str | None = None) -> "TimeSeriesForecaster":
        model, (normaliser, settings), folder = load_with_tokenizer(
            path_or_repo, "forecaster", lambda f: (Normaliser.load(f), SeriesSettings.load(f)),
            bundled=Path(__file__).parents[1] / "bundled" / "forecaster", job="forecasting", revision=revision,
        )
        return cls(model, normaliser, settings, folder)

    def _check(self, series: TimeSeries) -> None:
        if series.columns != self.settings.columns:
            raise DataError(f"columns {series.columns} differ from the model's {self.settings.columns}", series.path)

    def predict_normalised(self, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Predictions ``(N, H, D)`` for normalised input windows ``(N, L, D)``."""
        out = [np.array(self.model(mx.array(inputs[i : i + batch_size])))
               for i in range(0, len(inputs), batch_size)]
        return np.concatenate(out).astype(np.float64)

    def predict(self, series: TimeSeries) -> tuple[list[str], np.ndarray]:
        """The pipelines' common name for :meth:`forecast`."""
        return self.forecast(series)

    def forecast(self, series: TimeSeries) -> tuple[list[str], np.ndarray]:
        """Dates and values ``(H, D)`` (the data's units) of the H steps after the series' last row."""
        self._check(series)
        L = self.model.args.input_length
        if len(series) < L:
            raise DataError(f"the model reads {L} rows, the file has {len(series)}", series.path)
        window = self.normaliser.transform(series.values[-L:])[None].astype(np.float32)
        values = self.normaliser.inverse(self.predict_normalised(window)[0])
        return _next_dates(series.dates, self.model.args.horizon), values

    def evaluate(self, series: TimeSeries, split: str = "test", batch_size: int = 256) -> dict:
        """MSE and MAE on the normalised scale over every window whose targets lie in ``split``."""
        self._check(series)
        start, stop = self.settings.split_range(split)
        if stop > len(series):
            raise DataError(f"the {split} split ends at row {stop}, the file has {len(series)} rows", series.path)
        L, H = self.model.args.input_length, self.model.args.horizon
        starts = window_starts(start, stop, L, H)
        if len(starts) == 0:
            raise DataError(f"the {split} split (rows {start}-{stop - 1}) holds no window of {L} + {H} rows", series.path)
        inputs, targets = windows(self.normaliser.transform(series.values), starts, L, H)
        error = self.predict_normalised(inputs, batch_size) - targets
        return {
            "loss": float(np.mean(error**2)), "mse": float(np.mean(error**2)), "mae": float(np.mean(np.abs(error))),
            "settings": (f"{split} rows {start}-{stop - 1} of {Path(series.path).name}, {len(starts)} windows, "
                         f"input {L}, horizon {H}, {len(series.columns)} features, z-scores of the training rows"),
        }
