"""One rank of the data-parallel tests in test_distributed.py, and the single-process reference.

``python -m tests.training.distributed_worker OUT SCENARIO`` with MLX_RANK and MLX_HOSTFILE set
(as mlx.launch sets them) trains a tiny LSTM classifier and writes ``OUT/rank{R}.npz``
(its parameters) and ``OUT/rank{R}.json`` (losses per step, how it ended). Scenarios:

    train       6 steps (2 epochs of batches of 7, 7 and 1 rows; validation at 3 and 6)
    interrupt   the same, but rank 1 gets SIGINT at step 4: both ranks must stop there
    resume      continue the run in OUT/run to step 6
    init        only join the group (start-up tests), with a 2-second timeout
"""

import json
import os
import signal
import sys
from pathlib import Path

import mlxseq  # noqa: F401 - loads OpenBLAS before mlx.core
import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from mlxseq.data import BatchSampler
from mlxseq.tasks.batches import SamplerBatches
from mlxseq.training import TrainingArgs, TrainingInterrupted, train
from mlxseq.training.distributed import DistributedError, init_world

N, T, FEATURES, HIDDEN, CLASSES = 15, 5, 3, 8, 3
ARGS = dict(lr=0.05, max_steps=6, eval_every=3, log_every=1, clip_norm=0.5, seed=0)


class Classifier(nn.Module):
    """An LSTM over a ragged batch, classifying each sequence from its final state (no dropout)."""

    def __init__(self):
        super().__init__()
        self.rnn = mlxseq.LSTM(FEATURES, HIDDEN)
        self.out = nn.Linear(HIDDEN, CLASSES)

    def __call__(self, x, lengths):
        _, (h, _) = self.rnn(x, lengths=lengths)
        return self.out(h[-1])


class Batches(SamplerBatches):
    """Batches of 7, 7 and 1 sequences (shuffled each epoch): an uneven split and an empty shard for 2 ranks."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(N, T, FEATURES)).astype(np.float32)
        self.lengths = rng.integers(1, T + 1, size=N).astype(np.int32)
        self.y = (self.x[:, 0, 0] > 0).astype(np.int32) + (self.x[:, 0, 1] > 1).astype(np.int32)
        super().__init__(BatchSampler(np.ones(N, dtype=np.int64), 56, multiple=8, seed=0))

    def __iter__(self):
        for idx in self.sampler:
            yield mx.array(self.x[idx]), mx.array(self.lengths[idx]), mx.array(self.y[idx])


def loss_fn(model, batch):
    x, lengths, y = batch
    return nn.losses.cross_entropy(model(x, lengths), y).sum(), mx.array(x.shape[0])


def make_validate(batches):
    def validate(model):
        loss, count = loss_fn(model, (mx.array(batches.x), mx.array(batches.lengths), mx.array(batches.y)))
        return {"loss": (loss / count).item()}

    return validate


def run(out_dir, world=None, seed=0, on_step=None):
    """Train from a model initialised with ``seed``; return (model, losses by step)."""
    mx.random.seed(seed)
    model = Classifier()
    batches = Batches()
    losses = {}

    def record(step, loss):
        losses[step] = loss
        if on_step is not None:
            on_step(step)

    train(
        model, batches, loss_fn, TrainingArgs(**ARGS), out_dir, validate=make_validate(batches),
        progress=False, log=None, on_step=record, world=world,
    )
    return model, losses


def parameters(model) -> dict:
    return {k: np.array(v) for k, v in tree_flatten(model.parameters())}


def main(out: Path, scenario: str) -> int:
    if scenario == "init":
        try:
            init_world(True, timeout=2)
        except DistributedError as error:
            print(f"error: {error}", file=sys.stderr, flush=True)
            return 1
        return 0
    world = init_world(True, timeout=60)
    report = {"rank": world.rank, "size": world.size, "ended": "done"}

    def interrupt_rank_1(step):
        if scenario == "interrupt" and world.rank == 1 and step == 4:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C reaching one rank only

    # Rank 1 initialises differently on purpose: training must start from rank 0's parameters.
    model = None
    try:
        model, report["losses"] = run(out / "run", world, seed=world.rank * 1000, on_step=interrupt_rank_1)
    except TrainingInterrupted as error:
        report["ended"] = f"interrupted: {error}"
    if model is not None:
        np.savez(out / f"rank{world.rank}.npz", **parameters(model))
    (out / f"rank{world.rank}.json").write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2]))
