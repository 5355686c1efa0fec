"""Tasks by the ``task`` key of a training config: what turns a config into training parts.

A task module (``mlxseq.tasks.translation`` is the model to follow) defines::

    NAME                    the task's name, the key here
    MODEL_TYPES             the model_type values it can train
    FILLED_MODEL_FIELDS     {ModelArgs field: why a config may not set it} (the task fills these in)
    DataArgs                dataclass of the config's ``data`` section
    ValidationArgs          dataclass of the ``validation`` section (every field defaulted)
    check_config(config)    -> [(dotted key, message)] for settings that clash across sections
    prepare(config, run_dir, *, resuming, command, log) -> TaskParts

Registering a new task is one line (``register_task("lm", "mlxseq.tasks.language_model")``);
the module is imported only when a config names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any, Callable

from mlxseq.training.progress import TOKENS, LossUnits

TASKS = {
    "translation": "mlxseq.tasks.translation",
    "lm": "mlxseq.tasks.language_model",
    "classification": "mlxseq.tasks.classification",
    "tagging": "mlxseq.tasks.tagging",
    "forecasting": "mlxseq.tasks.forecasting",
    "speech": "mlxseq.tasks.speech",
}


def register_task(name: str, module: str) -> None:
    """Make ``task: name`` in a config load the task module ``module`` (a dotted import path)."""
    TASKS[name] = module


def task_module(name: str):
    """The module implementing task ``name``; ValueError naming the known tasks otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
    return import_module(TASKS[name])


@dataclass
class TaskParts:
    """What a task hands the training loop (see :func:`mlxseq.training.train` for each role)."""

    model: Any  # the mlx.nn.Module to train
    batches: Any  # a ResumableBatches: tuples of arrays for ``loss``
    loss: Callable  # loss(model, batch) -> (summed loss, number of tokens)
    validate: Callable | None  # validate(model) -> metrics
    save_model: Callable  # save_model(folder, model, summary): a complete model folder
    description: str = ""  # a few lines on the data and model, for the log
    units: LossUnits = TOKENS  # what the loss counts: tokens, examples, values (logs, bar, curves)


def metric_problems(training, metrics: tuple[str, ...], minimised: str = "") -> list[tuple[str, str]]:
    """``training.metric`` must be one of the task's ``metrics``; with ``minimised`` (the reason, for the
    message) every metric is lower-better and ``metric_mode: max`` is refused."""
    problems = []
    if training.metric not in metrics:
        problems.append(("training.metric", f"must be one of {', '.join(metrics)} here, got {training.metric!r}"))
    if minimised and training.metric_mode == "max":
        problems.append(("training.metric_mode", f"{minimised}: use auto or min"))
    return problems
