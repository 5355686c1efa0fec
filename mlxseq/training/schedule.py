"""Learning rate schedules and the trackers of a validation metric (best, plateau, early stopping).

The learning rate of update ``k`` (1-based) is ``base(k) * plateau.scale`` where ``base`` is::

    k <= W:   lr * k / W                                  linear warmup (W = warmup_steps)
    k >  W:   none          lr
              inverse_sqrt  lr * sqrt(W' / k), W' = max(W, 1)
              cosine        min_lr + (lr - min_lr) * (1 + cos(pi * (k - W) / (N - W))) / 2
              linear        lr + (min_lr - lr) * (k - W) / (N - W)
              reduce_on_plateau  lr, times plateau.scale

with ``N`` the total number of updates. Warmup, cosine and linear come from
``mlx.optimizers`` (``linear_schedule``, ``cosine_decay``, ``join_schedules``).
The loop evaluates the schedule in Python and hands the optimizer the number, so
its position is just the step count (plus :class:`Plateau` state) in a checkpoint.
"""

from __future__ import annotations

import math
from typing import Callable

import mlx.core as mx
import mlx.optimizers as optim

from mlxseq.training.args import TrainingArgs


def learning_rate_schedule(args: TrainingArgs, total_steps: int) -> Callable[[int], float]:
    """``schedule(k)``: the base learning rate of update ``k`` (1-based), before any plateau scaling."""
    W, lr = args.warmup_steps, args.lr
    decay_steps = max(total_steps - W, 1)
    if args.decay in ("none", "reduce_on_plateau"):
        decay = lambda k: mx.array(lr, dtype=mx.float32)  # noqa: E731
    elif args.decay == "inverse_sqrt":
        # join_schedules passes j = k - W, so j + W is the update number k again.
        decay = lambda j: mx.array(lr * math.sqrt(max(W, 1) / max(j + W, 1)), dtype=mx.float32)  # noqa: E731
    elif args.decay == "cosine":
        decay = optim.cosine_decay(lr, decay_steps, end=args.min_lr)
    elif args.decay == "linear":
        decay = optim.linear_schedule(lr, args.min_lr, decay_steps)
    else:  # TrainingArgs checks the choices; this guards a new one forgotten here
        raise ValueError(f"unknown decay {args.decay!r}")
    schedule = optim.join_schedules([optim.linear_schedule(0.0, lr, W), decay], [W]) if W > 0 else decay
    return lambda k: float(schedule(k).item())


class Tracker:
    """The best value of a metric so far and the validations since it improved."""

    def __init__(self, lower_is_better: bool):
        self.lower_is_better = lower_is_better
        self.best: float | None = None
        self.best_step: int | None = None
        self.stale = 0  # validations since the last improvement

    def update(self, value: float, step: int) -> bool:
        """Record a validation; True when it is the best so far (NaN never is)."""
        better = value == value and (
            self.best is None or (value < self.best if self.lower_is_better else value > self.best)
        )
        if better:
            self.best, self.best_step, self.stale = float(value), step, 0
        else:
            self.stale += 1
        return better

    def state_dict(self) -> dict:
        return {"best": self.best, "best_step": self.best_step, "stale": self.stale}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_step, self.stale = state["best"], state["best_step"], int(state["stale"])


class Plateau:
    """reduce_on_plateau: the learning rate scale, cut by ``factor`` when the metric stalls.

    As PyTorch's ``ReduceLROnPlateau``: after more than ``patience`` validations
    without improvement the scale is multiplied by ``factor`` (never below
    ``min_lr / lr``) and the count starts again.
    """

    def __init__(self, args: TrainingArgs):
        self.enabled = args.decay == "reduce_on_plateau"
        self.factor, self.patience = args.plateau_factor, args.plateau_patience
        self.floor = args.min_lr / args.lr
        self.tracker = Tracker(args.lower_is_better)
        self.scale = 1.0

    def update(self, value: float, step: int) -> bool:
        """Record a validation; True when the scale was cut."""
        if not self.enabled or self.tracker.update(value, step) or self.tracker.stale <= self.patience:
            return False
        self.scale, self.tracker.stale = max(self.scale * self.factor, self.floor), 0
        return True

    def state_dict(self) -> dict:
        return {"scale": self.scale, **self.tracker.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.scale = float(state["scale"])
        self.tracker.load_state_dict(state)
