"""Tests of mlxseq/tasks/forecasting.py: a toy series learned, the folder, splits and the loss."""

import json
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from mlxseq.data import read_timeseries
from mlxseq.pipelines.forecaster import SeriesSettings, TimeSeriesForecaster, window_starts
from mlxseq.tasks.forecasting import forecast_loss
from mlxseq.runs.from_config import train_from_config
from tests.support.configs import write_training_config

ROWS = 600


def write_series(path: Path) -> None:
    """Two hourly features: a daily sine around 20, and its negative cosine at scale 3 plus a trend."""
    t = np.arange(ROWS)
    a = 20 + 5 * np.sin(2 * np.pi * t / 24)
    b = -3 * np.cos(2 * np.pi * t / 24) + 0.01 * t
    dates = np.datetime64("2020-01-01T00:00") + t.astype("timedelta64[h]")
    lines = ["date,A,B"] + [f"{str(d).replace('T', ' ')}:00,{x:.6f},{y:.6f}" for d, x, y in zip(dates, a, b)]
    path.write_text("\n".join(lines) + "\n")


def write_config(folder: Path, **model) -> Path:
    write_series(folder / "series.csv")
    raw = {
        "version": 1, "task": "forecasting", "output_dir": str(folder / "run"),
        "model": {"model_type": "forecaster", "input_length": 48, "horizon": 12, "segment_length": 12,
                  "hidden_size": 32, **model},
        "data": {"path": str(folder / "series.csv"), "train_rows": 400, "valid_rows": 100, "test_rows": 100},
        "training": {"lr": 0.005, "max_steps": 200, "max_batch_size": 32, "eval_every": 100, "log_every": 50},
    }
    return write_training_config(folder, raw)


@pytest.mark.parametrize("decoder", ["direct", "autoregressive"])
def test_a_tiny_forecaster_learns_a_periodic_series(tmp_path, decoder):
    result = train_from_config(write_config(tmp_path, decoder=decoder), quiet=True)
    series = read_timeseries(tmp_path / "series.csv")
    forecaster = TimeSeriesForecaster.load(tmp_path / "run" / "best")
    scores = forecaster.evaluate(series, "test")
    # Repeating the last value errs by about one standard deviation squared here.
    start, stop = forecaster.settings.split_range("test")
    z = forecaster.normaliser.transform(series.values)
    starts = window_starts(start, stop, 48, 12)
    repeat = np.mean([(z[t : t + 12] - z[t - 1]) ** 2 for t in starts])
    assert scores["mse"] < 0.05 * repeat and result.metrics["mse"] < 0.05 * repeat
    assert "test rows 500-599 of series.csv, 89 windows, input 48, horizon 12" in scores["settings"]
    dates, values = forecaster.forecast(series)
    assert dates[0] == "2020-01-26 00:00:00" and dates[-1] == "2020-01-26 11:00:00" and values.shape == (12, 2)
    t = np.arange(ROWS, ROWS + 12)
    truth = np.stack([20 + 5 * np.sin(2 * np.pi * t / 24), -3 * np.cos(2 * np.pi * t / 24) + 0.01 * t], axis=1)
    assert np.abs(values - truth).max() < 1.0  # in the data's units: the normaliser was inverted


def test_the_folder_keeps_the_normaliser_of_the_training_rows(tmp_path):
    train_from_config(write_config(tmp_path), ["training.max_steps=1", "training.eval_every=0"], quiet=True)
    folder = tmp_path / "run" / "last"
    saved = json.loads((folder / "normaliser.json").read_text())
    values = read_timeseries(tmp_path / "series.csv").values[:400]
    assert saved["columns"] == ["A", "B"] and np.allclose(saved["mean"], values.mean(axis=0))
    assert np.allclose(saved["std"], values.std(axis=0))
    assert SeriesSettings.load(folder).split_range("valid") == (400, 500)


def test_windows_cover_exactly_the_split():
    assert window_starts(100, 110, 5, 3).tolist() == list(range(100, 108))  # targets t..t+2 inside [100, 110)
    assert window_starts(0, 10, 5, 3).tolist() == [5, 6, 7]  # inputs need 5 rows before t


def test_the_loss_on_hand_made_values():
    predictions, targets = mx.array([[[1.0, 2.0], [3.0, 4.0]]]), mx.array([[[0.0, 2.0], [5.0, 4.0]]])
    total, count = forecast_loss(predictions, targets, "mse")
    assert total.item() == 5.0 and count.item() == 4
    assert forecast_loss(predictions, targets, "mae")[0].item() == 3.0
    with pytest.raises(ValueError, match=r"predictions \(1, 2, 2\) and targets \(2, 2\) differ in shape"):
        forecast_loss(predictions, targets[0])
