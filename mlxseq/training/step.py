"""One training update, compiled: loss and gradients, global-norm clipping, the optimizer.

The step is a function of the batch only; the model, the optimizer and MLX's
global random state are its state (``mx.compile(inputs=state, outputs=state)``,
as mlx-examples ``transformer_lm/main.py`` does), so dropout draws new masks at
every step and the same key gives the same masks. Compile modes:

    step     the whole update compiled; one trace per distinct batch shape
    update   loss and gradients eager, clipping + optimizer compiled
    eager    nothing compiled (for debugging)
    auto     ``step``; if tracing the model fails (a layer that reads array values
             while traced), the state is restored and ``update`` is used instead

The objective is ``loss_sum / num_tokens`` from ``loss_fn(model, batch) -> (sum, count)``.

With a distributed ``group`` (data parallel, :mod:`mlxseq.training.distributed`) each
rank computes the gradients of its summed loss on its shard; the sums, the counts
and the gradients are all-reduced in one message (inside the compiled step) and
then divided by the global count, so every rank applies the single-process update
of the whole batch. A rank whose shard is empty (``batch=None``) adds zeros.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from typing import Callable, Sequence

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_map, tree_unflatten

from mlxseq.training.distributed import all_sum_tree

LossFn = Callable[[nn.Module, tuple], tuple]
MODES = ("auto", "step", "update", "eager")


def random_key() -> list[int]:
    """MLX's global random key as two Python ints (what ``mx.random.seed`` can restore)."""
    return [int(v) for v in mx.random.state[0].tolist()]


def set_random_key(key: Sequence[int]) -> None:
    """Restore a key from :func:`random_key`: ``mx.random.key(s)`` is ``[s >> 32, s & 0xffffffff]``."""
    hi, lo = (int(v) for v in key)
    mx.random.seed((hi << 32) | lo)


def global_norm(grads) -> mx.array:
    return mx.sqrt(sum(mx.sum(g.astype(mx.float32) ** 2) for _, g in tree_flatten(grads)))


class TrainStep:
    """``step(batch) -> (loss, num_tokens, grad_norm)``, lazily evaluated; the caller evaluates.

    Args:
        model, optimizer: updated in place (the optimizer must be initialised).
        loss_fn: ``loss_fn(model, batch) -> (summed loss, number of tokens)``. A loss function with a
            ``value_and_grad(model, batch) -> ((summed loss, count), gradients of the sum)`` attribute
            is not differentiated here: that attribute gives its gradients (adversarial training).
        clip_norm: scale gradients down to this global norm; 0 turns clipping off.
        mode: one of ``MODES`` (see the module docstring).
        log: receives a note when ``auto`` falls back to ``update``.
        group: an ``mx.distributed.Group`` of more than one rank for data-parallel
            training; None (or a group of one) trains in this process alone.
    """

    def __init__(
        self, model: nn.Module, optimizer: optim.Optimizer, loss_fn: LossFn, clip_norm: float,
        mode: str = "auto", log: Callable[[str], None] | None = None, group=None,
    ):
        if mode not in MODES:
            raise ValueError(f"compile mode must be one of {MODES}, got {mode!r}")
        self.model, self.optimizer, self.loss_fn, self.clip_norm = model, optimizer, loss_fn, clip_norm
        self.mode, self.log = mode, log
        self.group = group if group is not None and group.size() > 1 else None
        self._shapes: set = set()

        def objective(model, *batch):
            total, count = loss_fn(model, batch)
            if self.group is not None:
                return total, count  # divided by the global count after the all-reduce
            return total / mx.maximum(count, 1), count

        custom = getattr(loss_fn, "value_and_grad", None)  # ((summed loss, count), gradients of the sum)

        def custom_objective(model, *batch):
            (total, count), grads = custom(model, batch)
            if self.group is not None:
                return (total, count), grads
            denominator = mx.maximum(count, 1)
            return (total / denominator, count), tree_map(lambda g: g / denominator, grads)

        self._loss_and_grad = nn.value_and_grad(model, objective) if custom is None else custom_objective
        self._compiled_step = None
        self._compiled_update = None

    def __call__(self, batch: tuple | None):
        if self.group is None:
            return self._call(batch)
        with self._rank_random_key():
            if batch is None:  # an empty shard: take part in the all-reduce with zeros
                zeros = tree_map(mx.zeros_like, self.model.trainable_parameters())
                return self._update(mx.array(0.0), mx.array(0), zeros)
            return self._call(batch)

    def _call(self, batch: tuple):
        if self.mode in ("auto", "step"):
            return self._whole(tuple(batch))
        (loss, count), grads = self._loss_and_grad(self.model, *batch)
        if self.mode == "eager":
            return self._finish(loss, count, grads)
        return self._update(loss, count, grads)

    def _update(self, loss, count, grads):
        """:meth:`_finish` compiled (eager in ``eager`` mode)."""
        if self.mode == "eager":
            return self._finish(loss, count, grads)
        if self._compiled_update is None:
            state = [self.model.state, self.optimizer.state]
            self._compiled_update = partial(mx.compile, inputs=state, outputs=state)(self._finish)
        return self._compiled_update(loss, count, grads)

    def _finish(self, loss, count, grads):
        """All-reduce (distributed), clip, update; ``(loss, count, grad_norm)``."""
        if self.group is not None:
            loss, count, grads = all_sum_tree((loss, count, grads), self.group)
            denominator = mx.maximum(count, 1)
            loss, grads = loss / denominator, tree_map(lambda g: g / denominator, grads)
        return loss, count, self._apply(grads)

    @contextmanager
    def _rank_random_key(self):
        """Give each rank its own dropout masks, drawn from one shared key that moves on as one stream.

        The shared key (the one a checkpoint saves, the same on every rank) is split into
        its successor and a step key; each rank draws this step with its share of the step key.
        """
        following, step_key = mx.random.split(mx.random.state[0])
        set_random_key(mx.random.split(step_key, self.group.size())[self.group.rank()].tolist())
        try:
            yield
        finally:
            set_random_key(following.tolist())

    def _apply(self, grads):
        if self.clip_norm > 0:
            grads, norm = optim.clip_grad_norm(grads, self.clip_norm)
        else:
            norm = global_norm(grads)
        self.optimizer.update(self.model, grads)
        return norm

    def _step(self, *batch):
        (loss, count), grads = self._loss_and_grad(self.model, *batch)
        return self._finish(loss, count, grads)

    def _whole(self, batch: tuple):
        if self._compiled_step is None:
            state = [self.model.state, self.optimizer.state, mx.random.state]
            self._compiled_step = partial(mx.compile, inputs=state, outputs=state)(self._step)
        shape = tuple((tuple(a.shape), a.dtype) for a in batch)
        if self.mode == "step" or shape in self._shapes:
            return self._compiled_step(*batch)
        # A new shape is traced now. A failed trace leaves placeholders in the state,
        # so keep the real arrays (immutable: holding them is free) to put back.
        saved = (tree_flatten(self.model.parameters()), tree_flatten(self.optimizer.state), random_key())
        try:
            result = self._compiled_step(*batch)
        except Exception as error:  # noqa: BLE001 - any trace failure; an eager retry re-raises real bugs
            self.model.update(tree_unflatten(saved[0]))
            self.optimizer.state = tree_unflatten(saved[1])
            set_random_key(saved[2])
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            if self.log:
                self.log(f"note: the training step cannot be compiled whole ({reason}); compiling the update only")
            self.mode, self._compiled_step = "update", None
            return self._call(batch)
        self._shapes.add(shape)
        return result
