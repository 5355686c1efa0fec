"""A training run from a config file: ``mlxseq train CONFIG`` and ``mlxseq.train(CONFIG)``.

The config (:mod:`mlxseq.config`) names a task (:mod:`mlxseq.tasks`), which builds the
model, batches, loss and validation; the generic loop (:mod:`mlxseq.training`) trains.
"""

from mlxseq.runs.from_config import USER_ERRORS, train_from_config

__all__ = ["train_from_config", "USER_ERRORS"]
