"""Training runs for the task tests: one stopped by Ctrl-C at a given step, then resumed."""

from pathlib import Path

import pytest

from mlxseq.training import TrainingInterrupted
from mlxseq.runs.from_config import train_from_config


def train_stopped_and_resumed(config: Path, stop_step: int):
    """Train ``config`` until Ctrl-C at ``stop_step`` (the run saves and stops), then resume it to the end."""

    def interrupt_at(step, loss):
        if step == stop_step:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        train_from_config(config, quiet=True, on_step=interrupt_at)
    return train_from_config(config, resume=True, quiet=True)
