"""Pooling over the valid steps of padded sequences: final states, mean, max, attention.

For outputs ``x`` (B, T, D) of a recurrent layer and ``lengths`` n (B,), step t of
sequence b is valid when ``t < n_b``. Padding never enters a pooled vector::

    final:      [x_{n-1}^fwd ; x_0^bwd]     forward half at the last valid step, backward
                                            half at step 0, where the backward pass ends
    mean:       sum_{t<n} x_t / n
    max:        max_{t<n} x_t               padded steps are -inf before the max
    attention:  sum_{t<n} a_t x_t,          a = softmax_{t<n}(v . tanh(W x_t + b))

Public API::

    sequence_mask(lengths, steps) -> (B, T) bool
    final_pool(x, lengths, directions=1), mean_pool(x, lengths), max_pool(x, lengths) -> (B, D)
    AttentionPooling(input_size, attention_size)     # (x, lengths) -> (pooled (B, D), weights (B, T))
    Pooling(kind, input_size, directions=1)          # one of POOLINGS
"""

import mlx.core as mx
import mlx.nn as nn

POOLINGS = ("final", "mean", "max", "attention")


def sequence_mask(lengths: mx.array, steps: int) -> mx.array:
    """``(B, T)`` booleans, True at the valid steps ``t < lengths[b]``."""
    return mx.arange(steps)[None, :] < lengths[:, None]


def _check(x: mx.array, lengths: mx.array) -> None:
    if x.ndim != 3:
        raise ValueError(f"pooling expects outputs of shape (B, T, D), got shape {tuple(x.shape)}")
    if tuple(lengths.shape) != (x.shape[0],):
        raise ValueError(f"lengths must have shape (B,) = ({x.shape[0]},), got shape {tuple(lengths.shape)}")


def final_pool(x: mx.array, lengths: mx.array, directions: int = 1) -> mx.array:
    """The recurrent layer's final states, read from its outputs ``x`` (B, T, dirs * H).

    The forward direction ends at step ``n - 1``; the backward direction (the second
    half of the features when ``directions == 2``) runs from ``n - 1`` down to 0 and ends at step 0.
    """
    _check(x, lengths)
    if directions not in (1, 2) or x.shape[-1] % directions:
        raise ValueError(f"directions must be 1 or 2 and divide D={x.shape[-1]}, got {directions}")
    last = (lengths.astype(mx.int32) - 1)[:, None, None]  # (B, 1, 1)
    index = mx.broadcast_to(last, (x.shape[0], 1, x.shape[2]))
    forward = mx.take_along_axis(x, index, axis=1)[:, 0]  # (B, D)
    if directions == 1:
        return forward
    half = x.shape[-1] // 2
    return mx.concatenate([forward[:, :half], x[:, 0, half:]], axis=-1)


def mean_pool(x: mx.array, lengths: mx.array) -> mx.array:
    """Mean over the valid steps: ``(B, D)``."""
    _check(x, lengths)
    mask = sequence_mask(lengths, x.shape[1])[..., None]  # (B, T, 1)
    total = mx.where(mask, x, 0.0).sum(axis=1)
    return total / mx.maximum(lengths, 1).astype(x.dtype)[:, None]


def max_pool(x: mx.array, lengths: mx.array) -> mx.array:
    """Maximum over the valid steps, feature by feature: ``(B, D)``."""
    _check(x, lengths)
    mask = sequence_mask(lengths, x.shape[1])[..., None]
    return mx.where(mask, x, -mx.inf).max(axis=1)


class AttentionPooling(nn.Module):
    """Additive self-attention pooling (Yang et al. 2016): a learned query scores each step.

    ``a = softmax_t(v . tanh(W x_t + b))`` over valid steps only; returns ``sum_t a_t x_t``.

    Args:
        input_size (int): D.
        attention_size (int): the inner size of ``W``. Default: D.
    """

    def __init__(self, input_size: int, attention_size: int | None = None):
        super().__init__()
        size = attention_size or input_size
        self.proj = nn.Linear(input_size, size)
        self.query = nn.Linear(size, 1, bias=False)

    def __call__(self, x: mx.array, lengths: mx.array):
        """``x`` (B, T, D), ``lengths`` (B,) -> ``(pooled (B, D), weights (B, T))``."""
        _check(x, lengths)
        scores = self.query(mx.tanh(self.proj(x)))[..., 0]  # (B, T)
        scores = mx.where(sequence_mask(lengths, x.shape[1]), scores, -mx.inf)
        weights = mx.softmax(scores, axis=-1, precise=True)
        return (weights[:, :, None] * x).sum(axis=1), weights


class Pooling(nn.Module):
    """One of ``POOLINGS`` as a module: ``pooling(x, lengths) -> (B, D)``.

    Args:
        kind (str): ``"final"``, ``"mean"``, ``"max"`` or ``"attention"``.
        input_size (int): D, the features of ``x``.
        directions (int): 2 when ``x`` comes from a bidirectional layer (for ``final``).
        attention_size (int): inner size of attention pooling. Default: D.
    """

    def __init__(self, kind: str, input_size: int, directions: int = 1, attention_size: int | None = None):
        super().__init__()
        if kind not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {kind!r}")
        self.kind, self.directions = kind, directions
        if kind == "attention":
            self.attention = AttentionPooling(input_size, attention_size)

    def __call__(self, x: mx.array, lengths: mx.array) -> mx.array:
        if self.kind == "final":
            return final_pool(x, lengths, self.directions)
        if self.kind == "mean":
            return mean_pool(x, lengths)
        if self.kind == "max":
            return max_pool(x, lengths)
        return self.attention(x, lengths)[0]
