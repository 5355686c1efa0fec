"""A linear-chain conditional random field over K tags, with masks for padded batches.

For emissions ``e`` (B, T, K) and a tag path ``y`` of a sequence of length n::

    score(y) = start[y_0] + sum_{t<n} e_t[y_t] + sum_{0<t<n} trans[y_{t-1}, y_t] + end[y_{n-1}]
    log Z    = log sum_{all K^n paths y'} exp score(y')        (the forward algorithm)
    nll(y)   = log Z - score(y)

``trans[i, j]`` scores tag i followed by tag j. The forward algorithm and Viterbi run
one step per time step over the whole batch; a sequence past its length keeps its
forward (or Viterbi) vector unchanged, so padding adds nothing to any score.

Shapes: B batch, T steps, K tags.
"""

import mlx.core as mx
import mlx.nn as nn
import numpy as np


class CRF(nn.Module):
    """Linear-chain CRF: transition, start and end scores (parameters ``transitions``
    (K, K), ``start`` (K,), ``end`` (K,)), initialised uniformly in [-0.1, 0.1].

    Args:
        num_tags (int): K.
    """

    def __init__(self, num_tags: int):
        super().__init__()
        if not isinstance(num_tags, int) or num_tags < 1:
            raise ValueError(f"num_tags must be a positive integer, got {num_tags!r}")
        self.num_tags = num_tags
        self.transitions = mx.random.uniform(-0.1, 0.1, (num_tags, num_tags))
        self.start = mx.random.uniform(-0.1, 0.1, (num_tags,))
        self.end = mx.random.uniform(-0.1, 0.1, (num_tags,))

    def _check(self, emissions, lengths):
        if emissions.ndim != 3 or emissions.shape[-1] != self.num_tags:
            raise ValueError(
                f"emissions must have shape (B, T, K={self.num_tags}), got shape {tuple(emissions.shape)}"
            )
        if tuple(lengths.shape) != (emissions.shape[0],):
            raise ValueError(f"lengths must have shape (B,) = ({emissions.shape[0]},), got shape {tuple(lengths.shape)}")

    def score(self, emissions: mx.array, tags: mx.array, lengths: mx.array) -> mx.array:
        """``score(y)`` of the paths ``tags`` (B, T) int: ``(B,)``. Tags past a length are ignored."""
        self._check(emissions, lengths)
        B, T, _ = emissions.shape
        valid = mx.arange(T)[None, :] < lengths[:, None]  # (B, T)
        tags = mx.where(valid, tags, 0).astype(mx.int32)  # any in-range id at padding; masked below
        emitted = mx.take_along_axis(emissions, tags[..., None], axis=-1)[..., 0]  # (B, T)
        total = mx.where(valid, emitted, 0.0).sum(axis=1) + self.start[tags[:, 0]]
        if T > 1:
            moves = self.transitions[tags[:, :-1], tags[:, 1:]]  # (B, T - 1)
            total = total + mx.where(valid[:, 1:], moves, 0.0).sum(axis=1)
        last = mx.take_along_axis(tags, (lengths.astype(mx.int32) - 1)[:, None], axis=1)[:, 0]
        return total + self.end[last]

    def log_partition(self, emissions: mx.array, lengths: mx.array) -> mx.array:
        """``log Z`` by the forward algorithm: ``(B,)``.

        1. alpha_0 = start + e_0                                          (B, K)
        2. alpha_t = logsumexp_i(alpha_{t-1}[i] + trans[i, :]) + e_t       for t < n, else alpha_{t-1}
        3. log Z = logsumexp(alpha_{T-1} + end)
        """
        self._check(emissions, lengths)
        T = emissions.shape[1]
        alpha = self.start[None, :] + emissions[:, 0]
        for t in range(1, T):
            step = mx.logsumexp(alpha[:, :, None] + self.transitions[None], axis=1) + emissions[:, t]
            alpha = mx.where((t < lengths)[:, None], step, alpha)
        return mx.logsumexp(alpha + self.end[None, :], axis=1)

    def neg_log_likelihood(self, emissions: mx.array, tags: mx.array, lengths: mx.array) -> mx.array:
        """``log Z - score(tags)`` per sequence: ``(B,)``."""
        return self.log_partition(emissions, lengths) - self.score(emissions, tags, lengths)

    def decode(self, emissions: mx.array, lengths: mx.array) -> tuple[list[list[int]], list[float]]:
        """Viterbi: the best path of each sequence (``lengths[b]`` tags) and its score.

        1. v_0 = start + e_0
        2. v_t = max_i(v_{t-1}[i] + trans[i, :]) + e_t, backpointer = argmax_i   (t < n)
        3. best last tag = argmax(v + end); follow the backpointers from step n - 1 to 0
        """
        self._check(emissions, lengths)
        B, T, _ = emissions.shape
        v = self.start[None, :] + emissions[:, 0]
        pointers = []
        for t in range(1, T):
            candidates = v[:, :, None] + self.transitions[None]  # (B, K_prev, K)
            pointers.append(mx.argmax(candidates, axis=1))
            step = mx.max(candidates, axis=1) + emissions[:, t]
            v = mx.where((t < lengths)[:, None], step, v)
        final = v + self.end[None, :]
        back = mx.stack(pointers, axis=1) if pointers else mx.zeros((B, 0, self.num_tags), dtype=mx.uint32)
        mx.eval(final, back)
        final, back, ns = np.array(final), np.array(back), np.array(lengths)
        paths, scores = [], []
        for b in range(B):
            tag = int(final[b].argmax())
            path = [tag]
            for t in range(int(ns[b]) - 1, 0, -1):  # pointers[t - 1] maps the tag at t to the one at t - 1
                tag = int(back[b, t - 1, tag])
                path.append(tag)
            paths.append(path[::-1])
            scores.append(float(final[b].max()))
        return paths, scores
