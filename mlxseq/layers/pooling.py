"""Pooling over the valid steps of padded sequences: final states, mean, max, attention.

For outputs ``x`` (B, T, D) of a recurrent layer and ``lengths`` n (B,), step t of
sequence b is valid when ``t < n_b``. Padding never enters a pooled vector::

    final:      [x_{n-1}^fwd ; x_0^bwd]     forward half at the last valid step, backward
                                            half at step 0, where the backward pass ends
    mean:       sum_{t<n} x_t / n
    max:        max_{t<n} x_t               padded steps are -inf before the max
    attention:  sum_{t<n} a_t x_t,          a = softmax_{t<n}(v . tanh(W x_t + b))

The same poolings over spans ``[start, end)`` of each sequence (a phrase inside a sentence,
read from the sentence's outputs), ``starts`` and ``ends`` (B, S) with ``start < end``: each
span pools as the slice ``x[b, start:end]`` would alone, except that its states saw the whole
sequence (``final``: the forward half at ``end - 1``, the backward half at ``start``).

Public API::

    sequence_mask(lengths, steps) -> (B, T) bool
    final_pool(x, lengths, directions=1), mean_pool(x, lengths), max_pool(x, lengths) -> (B, D)
    AttentionPooling(input_size, attention_size)     # (x, lengths) -> (pooled (B, D), weights (B, T))
    Pooling(kind, input_size, directions=1)          # one of POOLINGS; .spans(x, starts, ends) -> (B, S, D)
    span_mask(starts, ends, steps) -> (B, S, T) bool
    final_span_pool(x, starts, ends, directions=1), mean_span_pool, max_span_pool -> (B, S, D)
"""

import mlx.core as mx
import mlx.nn as nn

from mlxseq.layers.activations import tanh

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


def span_mask(starts: mx.array, ends: mx.array, steps: int) -> mx.array:
    """``(B, S, T)`` booleans, True at the steps ``starts[b, s] <= t < ends[b, s]``."""
    t = mx.arange(steps)
    return (t >= starts[..., None]) & (t < ends[..., None])


def _check_spans(x: mx.array, starts: mx.array, ends: mx.array) -> None:
    if x.ndim != 3:
        raise ValueError(f"span pooling expects outputs of shape (B, T, D), got shape {tuple(x.shape)}")
    if starts.ndim != 2 or starts.shape != ends.shape or starts.shape[0] != x.shape[0]:
        raise ValueError(f"starts and ends must both have shape (B, S) with B={x.shape[0]}, "
                         f"got shapes {tuple(starts.shape)} and {tuple(ends.shape)}")


def final_span_pool(x: mx.array, starts: mx.array, ends: mx.array, directions: int = 1) -> mx.array:
    """Each span's final states in context: the forward half at ``end - 1``, the backward half at ``start``."""
    _check_spans(x, starts, ends)
    if directions not in (1, 2) or x.shape[-1] % directions:
        raise ValueError(f"directions must be 1 or 2 and divide D={x.shape[-1]}, got {directions}")

    def at(steps):  # (B, S) -> x at those steps (B, S, D)
        return mx.take_along_axis(x, mx.broadcast_to(steps.astype(mx.int32)[..., None], (*steps.shape, x.shape[2])), axis=1)

    forward = at(ends - 1)
    if directions == 1:
        return forward
    half = x.shape[-1] // 2
    return mx.concatenate([forward[..., :half], at(starts)[..., half:]], axis=-1)


def mean_span_pool(x: mx.array, starts: mx.array, ends: mx.array) -> mx.array:
    """Mean over each span: ``(B, S, D)``."""
    _check_spans(x, starts, ends)
    inside = span_mask(starts, ends, x.shape[1]).astype(x.dtype)  # (B, S, T)
    return (inside @ x) / mx.maximum(ends - starts, 1).astype(x.dtype)[..., None]


def max_span_pool(x: mx.array, starts: mx.array, ends: mx.array) -> mx.array:
    """Maximum over each span, feature by feature: ``(B, S, D)``, through a ``(B, S, T, D)``
    intermediate (SST-2's largest batch: 1,008 tokens x 56 span slots x 512 features, 116 MB in float32)."""
    _check_spans(x, starts, ends)
    inside = span_mask(starts, ends, x.shape[1])[..., None]  # (B, S, T, 1)
    return mx.where(inside, x[:, None], -mx.inf).max(axis=2)


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
        scores = self.query(tanh(self.proj(x)))[..., 0]  # (B, T)
        scores = mx.where(sequence_mask(lengths, x.shape[1]), scores, -mx.inf)
        weights = mx.softmax(scores, axis=-1, precise=True)
        return (weights[:, :, None] * x).sum(axis=1), weights

    def spans(self, x: mx.array, starts: mx.array, ends: mx.array):
        """``x`` (B, T, D), ``starts``, ``ends`` (B, S) -> ``(pooled (B, S, D), weights (B, S, T))``:
        the same scores, each span's softmax over its own steps."""
        _check_spans(x, starts, ends)
        scores = self.query(tanh(self.proj(x)))[..., 0]  # (B, T)
        scores = mx.where(span_mask(starts, ends, x.shape[1]), scores[:, None], -mx.inf)  # (B, S, T)
        weights = mx.softmax(scores, axis=-1, precise=True)
        return weights @ x, weights


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

    def spans(self, x: mx.array, starts: mx.array, ends: mx.array) -> mx.array:
        """The same pooling over spans ``[start, end)`` (``starts``, ``ends`` (B, S)): ``(B, S, D)``."""
        if self.kind == "final":
            return final_span_pool(x, starts, ends, self.directions)
        if self.kind == "mean":
            return mean_span_pool(x, starts, ends)
        if self.kind == "max":
            return max_span_pool(x, starts, ends)
        return self.attention.spans(x, starts, ends)[0]
