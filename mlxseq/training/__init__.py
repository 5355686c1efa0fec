"""Training: a generic loop over a model, resumable batches, a loss and callbacks.

Public API::

    train(model, batches, loss_fn, args, output_dir, *, validate=, save_model=, resume=, ...) -> TrainingResult
    TrainingArgs                       # the ``training`` section of a config
    TrainingError, TrainingDivergedError, TrainingInterrupted, ResumeError

Modules: ``args`` (TrainingArgs), ``schedule`` (learning rates, metric trackers),
``step`` (the compiled update), ``resume`` (crash-safe checkpoints), ``run_folder``
(every file a run writes), ``curves`` (the PNG), ``progress`` (bar and log lines),
``loop`` (the loop itself).
"""

from mlxseq.training.args import TrainingArgs
from mlxseq.training.loop import (
    TrainingDivergedError,
    TrainingError,
    TrainingInterrupted,
    TrainingResult,
    make_optimizer,
    train,
)
from mlxseq.training.resume import ResumeError

__all__ = [
    "TrainingArgs", "train", "TrainingResult", "make_optimizer",
    "TrainingError", "TrainingDivergedError", "TrainingInterrupted", "ResumeError",
]
