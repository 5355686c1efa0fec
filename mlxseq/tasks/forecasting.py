"""``task: forecasting``: a CSV time series to a trained ``forecaster`` model folder.

:func:`prepare` (1) reads the CSV (date column and features), (2) fits the per-feature
normaliser on the training rows only (``data.train_rows``), (3) cuts sliding windows of
``model.input_length`` inputs and ``model.horizon`` targets: training windows lie inside
the training rows, validation windows have their targets in the validation rows (their
inputs may reach back into the training rows), (4) batches ``training.max_batch_size``
windows at a time in a shuffled, resumable order. Everything derived from the data is
computed here, at load time; the data file is only read.

The loss is the squared (``mse``) or absolute (``mae``) error per predicted value on the
normalised scale. Validation scores the model as ``mlxseq evaluate`` does
(:class:`mlxseq.pipelines.forecaster.TimeSeriesForecaster`): ``loss`` (= ``mse``), ``mse``, ``mae``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import mlx.core as mx
import numpy as np

from mlxseq.layers import count_parameters
from mlxseq import checkpoint
from mlxseq.data import BatchSampler, DataError, Normaliser, read_timeseries
from mlxseq.pipelines.forecaster import SeriesSettings, TimeSeriesForecaster, window_starts, windows
from mlxseq.models import model_module
from mlxseq.tasks.config_paths import from_config_key
from mlxseq.tasks import TaskParts, metric_problems
from mlxseq.training.progress import LossUnits
from mlxseq.tasks.batches import SamplerBatches
from mlxseq.tasks.model_card import card_heading, scores_table, training_section

NAME = "forecasting"
MODEL_TYPES = ("forecaster",)
FILLED_MODEL_FIELDS = {"num_features": "set by the task: the number of data.columns (or of the CSV's feature columns)"}
METRICS = ("loss", "mse", "mae")


@dataclass
class DataArgs:
    path: str  # CSV with a header line: a date column and real-valued features, one row per time step
    date_column: str = "date"
    columns: list[str] = field(default_factory=list)  # features read and predicted, in order; [] = all but the date
    train_rows: int = 8640  # rows [0, train_rows) train and fit the normaliser (ETT: 12 months of 30 days x 24 h)
    valid_rows: int = 2880  # the next rows hold the validation targets (ETT: 4 months)
    test_rows: int = 2880  # the next rows hold the test targets, for mlxseq evaluate only (ETT: 4 months)
    stride: int = 1  # steps between the starts of consecutive training windows
    loss: Literal["mse", "mae"] = "mse"  # the training objective; validation reports both


@dataclass
class ValidationArgs:
    batch_size: int = 256  # windows predicted at once


def check_config(config) -> list[tuple[str, str]]:
    """Settings that clash across sections, as (dotted key, message)."""
    data, training = config.data, config.training
    problems = metric_problems(training, METRICS, "errors are minimised")
    if training.max_batch_size < 1:
        problems.append(("training.max_batch_size", "set the windows per batch (e.g. 64); forecasting does not "
                                                    "use training.batch_tokens"))
    if min(data.train_rows, data.valid_rows, data.stride) < 1 or data.test_rows < 0:
        problems.append(("data", "train_rows, valid_rows and stride must be >= 1, test_rows >= 0"))
    if config.validation.batch_size < 1:
        problems.append(("validation.batch_size", "must be >= 1"))
    return problems


class WindowBatches(SamplerBatches):
    """Training batches ``(inputs (B, L, D), targets (B, H, D))`` of normalised windows, shuffled each epoch."""

    def __init__(self, values: np.ndarray, starts: np.ndarray, input_length: int, horizon: int, sampler: BatchSampler):
        super().__init__(sampler)
        self.values, self.starts = values, starts
        self.input_length, self.horizon = input_length, horizon

    def __iter__(self):
        for indices in self.sampler:
            inputs, targets = windows(self.values, self.starts[indices], self.input_length, self.horizon)
            yield mx.array(inputs), mx.array(targets)


def forecast_loss(predictions: mx.array, targets: mx.array, kind: str = "mse"):
    """``(summed error, number of values)``: squared or absolute error of every predicted value."""
    if predictions.shape != targets.shape:
        raise ValueError(f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} differ in shape")
    error = predictions.astype(mx.float32) - targets
    total = (error * error).sum() if kind == "mse" else mx.abs(error).sum()
    return total, mx.array(error.size)


def model_card(config, facts: dict, summary: dict) -> str:
    metrics = summary.get("metrics") or {}
    args = facts["args"]
    lines = card_heading(config, f"recurrent forecaster, {args.input_length} steps in, {args.horizon} out", summary,
                         "time-series-forecasting", [config.data.path])
    lines += scores_table(f"Validation ({metrics.get('settings', '')}):", metrics)
    lines += ["", "## Data", "", f"- {config.data.path}: features {', '.join(facts['columns'])}",
              f"- rows: train {config.data.train_rows}, valid {config.data.valid_rows}, test {config.data.test_rows}; "
              f"{facts['windows']} training windows", "- normaliser.json: mean and std of each feature over the training rows"]
    return "\n".join(lines + training_section(facts["command"], facts["parameters"]))


def prepare(config, run_dir, *, resuming: bool, command: str, log=None) -> TaskParts:
    """The model, batches, loss, validation and model-folder writer for ``config``."""
    data, training = config.data, config.training
    with from_config_key("data.path"):
        series = read_timeseries(data.path, data.date_column, data.columns or None)
    settings = SeriesSettings(data.date_column, series.columns, data.train_rows, data.valid_rows, data.test_rows)
    end = data.train_rows + data.valid_rows
    if end > len(series):
        raise DataError(f"data.train_rows + data.valid_rows = {end} rows, the file has {len(series)}", data.path)
    args = config.model.model_args(num_features=len(series.columns))
    L, H = args.input_length, args.horizon
    normaliser = Normaliser.fit(series.values[: data.train_rows], series.columns)
    values = normaliser.transform(series.values)
    starts = window_starts(0, data.train_rows, L, H, data.stride)
    if len(starts) == 0:
        raise DataError(f"data.train_rows={data.train_rows} holds no window of {L} + {H} rows", data.path)
    model = model_module(config.model.model_type).build_model(args)
    sampler = BatchSampler(np.ones(len(starts), dtype=np.int64), training.max_batch_size, multiple=1,
                           seed=training.seed)
    forecaster = TimeSeriesForecaster(model, normaliser, settings)

    def validate(model) -> dict:
        forecaster.model = model
        return forecaster.evaluate(series, "valid", config.validation.batch_size)

    def loss(model, batch):
        inputs, targets = batch
        return forecast_loss(model(inputs), targets, data.loss)

    facts = {"args": args, "columns": series.columns, "windows": len(starts), "command": command,
             "parameters": count_parameters(model)}

    def save_model(folder, model, summary):
        checkpoint.save_model(folder, model, config.model.model_type, args, readme=model_card(config, facts, summary))
        normaliser.save(folder)
        settings.save(folder)

    description = "\n".join([
        f"series: {len(series)} rows x {len(series.columns)} features ({', '.join(series.columns)}); "
        f"{len(starts)} training windows of {L} + {H} steps",
        f"model: {config.model.model_type}, {facts['parameters']:,} parameters, loss {data.loss}",
        f"batches: {len(sampler)} per epoch of {training.max_batch_size} windows",
    ])
    units = LossUnits("value", perplexity=False, loss_label=f"{data.loss.upper()} per predicted value")
    return TaskParts(model, WindowBatches(values, starts, L, H, sampler), loss, validate, save_model, description, units)
