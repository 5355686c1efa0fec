"""Samplers and logits processors: pure functions on a batch of next-token logits.

Names and defaults follow mlx-lm's ``mlx_lm/sample_utils.py`` where the two overlap, so
``make_sampler(temp=0.7, top_p=0.9)`` means the same thing in both. Shapes: B batch,
V vocabulary, t tokens generated so far.

Every filter (``apply_top_k``, ``apply_top_p``, ``apply_min_p``) takes logits or
log-probabilities ``(B, V)`` alike (all three are unchanged by adding a constant to a row),
returns the same array with the dropped tokens set to ``-inf``, and decides by thresholds
on values, never by position in a sort: tokens tied with the last kept token are kept too,
so the result does not depend on how a sort orders equal values.
"""

import math
from typing import Callable, Optional

import mlx.core as mx

Sampler = Callable[..., mx.array]
"""``sampler(logprobs (B, V), key=None) -> tokens (B,)``; logits work as well."""

LogitsProcessor = Callable[[mx.array, mx.array], mx.array]
"""``processor(tokens (B, t), logits (B, V)) -> logits (B, V)``; ``tokens`` are those generated so far."""

# Softmax and cumsum in float32 are off by a few ulps, so a p equal to a partial sum
# (p=0.75 over probabilities 0.5, 0.25, ...) would flip with rounding without this slack.
_TOP_P_SLACK = 1e-6


def _check_temp(temp):
    if not (isinstance(temp, (int, float)) and temp >= 0 and math.isfinite(temp)):
        raise ValueError(f"temp must be a finite number >= 0 (0 means argmax), got {temp!r}")


def _check_top_p(top_p):
    if not (isinstance(top_p, (int, float)) and 0 <= top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1], or 0 to disable it, got {top_p!r}")


def _check_min_p(min_p):
    if not (isinstance(min_p, (int, float)) and 0 <= min_p < 1):
        raise ValueError(f"min_p must be in [0, 1) (0 disables it), got {min_p!r}")


def _check_count(name, value, smallest):
    if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
        raise ValueError(f"{name} must be an integer >= {smallest}, got {value!r}")


def _check_penalty(penalty):
    if not (isinstance(penalty, (int, float)) and penalty > 0 and math.isfinite(penalty)):
        raise ValueError(f"repetition penalty must be a finite number > 0 (1 disables it), got {penalty!r}")


def _kth_largest(logits: mx.array, k: int) -> mx.array:
    """The k-th largest value of each row, ``(B, 1)``; ``1 <= k <= V``."""
    vocab = logits.shape[-1]
    return mx.partition(logits, kth=vocab - k, axis=-1)[..., vocab - k : vocab - k + 1]


def greedy_sampler(logprobs: mx.array, key: Optional[mx.array] = None) -> mx.array:
    """The most probable token of each row, ``(B, V) -> (B,)``; ties go to the lowest id."""
    return mx.argmax(logprobs, axis=-1)


def categorical_sampling(logprobs: mx.array, temp: float, key: Optional[mx.array] = None) -> mx.array:
    """Draw one token per row from ``softmax(logprobs / temp)``, ``(B, V) -> (B,)``.

    Args:
        logprobs: ``(B, V)`` logits or log-probabilities; ``-inf`` entries are never drawn.
        temp: temperature > 0; below 1 sharpens, above 1 flattens.
        key: an ``mx.random.key``; ``None`` draws from the global generator (``mx.random.seed``).
    """
    return mx.random.categorical(logprobs * (1.0 / temp), axis=-1, key=key)


def apply_top_k(logprobs: mx.array, top_k: int) -> mx.array:
    """Keep the ``top_k`` largest entries of each row (and any tied with the k-th).

    Args:
        logprobs: ``(B, V)`` logits or log-probabilities.
        top_k: how many to keep; ``0`` or ``top_k >= V`` keeps all.
    """
    _check_count("top_k", top_k, 0)
    if top_k == 0 or top_k >= logprobs.shape[-1]:
        return logprobs
    return mx.where(logprobs >= _kth_largest(logprobs, top_k), logprobs, -mx.inf)


def apply_top_p(logprobs: mx.array, top_p: float) -> mx.array:
    """Nucleus filter: keep the most probable tokens whose probabilities sum to at least ``top_p``.

    Tokens are taken in decreasing probability until the running sum reaches ``top_p``
    (within 1e-6, for float32 rounding); the most probable token is always kept, and so is
    every token as probable as the last one taken. Probabilities are ``softmax(logprobs)``,
    so unnormalised logits work too.

    Args:
        logprobs: ``(B, V)`` logits or log-probabilities.
        top_p: in (0, 1]; ``1`` keeps all, ``0`` means disabled and keeps all too.
    """
    _check_top_p(top_p)
    if top_p == 0 or top_p == 1:
        return logprobs
    probs = mx.softmax(logprobs.astype(mx.float32), axis=-1)
    descending = mx.sort(probs, axis=-1)[..., ::-1]  # (B, V)
    running = mx.cumsum(descending, axis=-1)
    # Index of the token whose inclusion first reaches top_p; its probability is the threshold.
    last = mx.sum(running < top_p - _TOP_P_SLACK, axis=-1, keepdims=True)
    last = mx.minimum(last, probs.shape[-1] - 1)
    threshold = mx.take_along_axis(descending, last, axis=-1)
    return mx.where(probs >= threshold, logprobs, -mx.inf)


def apply_min_p(logprobs: mx.array, min_p: float, min_tokens_to_keep: int = 1) -> mx.array:
    """Keep tokens whose probability is at least ``min_p`` times the row's largest probability.

    Args:
        logprobs: ``(B, V)`` logits or log-probabilities.
        min_p: in [0, 1); ``0`` keeps all.
        min_tokens_to_keep: the most probable this many tokens (and ties) are kept whatever
            ``min_p`` says. Default: ``1``.
    """
    _check_min_p(min_p)
    _check_count("min_tokens_to_keep", min_tokens_to_keep, 1)
    if min_p == 0:
        return logprobs
    # p_i >= min_p * p_max  <=>  logit_i >= logit_max + log(min_p), with no softmax needed.
    keep = logprobs >= mx.max(logprobs, axis=-1, keepdims=True) + math.log(min_p)
    if min_tokens_to_keep > 1:
        k = min(min_tokens_to_keep, logprobs.shape[-1])
        keep = keep | (logprobs >= _kth_largest(logprobs, k))
    return mx.where(keep, logprobs, -mx.inf)


def make_sampler(
    temp: float = 0.0,
    top_p: float = 0.0,
    min_p: float = 0.0,
    *,
    top_k: int = 0,
    min_tokens_to_keep: int = 1,
) -> Sampler:
    """Make ``sampler(logprobs (B, V), key=None) -> tokens (B,)`` for the decoding loops.

    The filters act on the distribution at temperature 1, in mlx-lm's order (top-p, then
    min-p, then top-k); the temperature then rescales what is left.

    Args:
        temp: temperature; ``0`` means argmax (the filters then change nothing). Default: ``0``.
        top_p: nucleus threshold in (0, 1]; ``0`` (default) or ``1`` disables it.
        min_p: in [0, 1), relative to the top token's probability; ``0`` (default) disables it.
        top_k: keep the k most probable tokens; ``0`` (default) disables it.
        min_tokens_to_keep: tokens that min-p may not remove. Default: ``1``.

    Raises:
        ValueError: naming any argument outside its range, when the sampler is made.
    """
    _check_temp(temp)
    _check_top_p(top_p)
    _check_min_p(min_p)
    _check_count("top_k", top_k, 0)
    _check_count("min_tokens_to_keep", min_tokens_to_keep, 1)
    if temp == 0:
        return greedy_sampler

    def sampler(logprobs: mx.array, key: Optional[mx.array] = None) -> mx.array:
        logprobs = apply_top_p(logprobs, top_p)
        logprobs = apply_min_p(logprobs, min_p, min_tokens_to_keep)
        logprobs = apply_top_k(logprobs, top_k)
        return categorical_sampling(logprobs, temp, key=key)

    return sampler


def apply_repetition_penalty(logits: mx.array, seen_tokens: mx.array, penalty: float) -> mx.array:
    """CTRL's repetition penalty (Keskar et al. 2019, arXiv:1909.05858), row by row.

    For each row b and each token id in ``seen_tokens[b]`` (once, however often it occurs):
    a positive logit is divided by ``penalty``, a negative one multiplied by it, so with
    ``penalty > 1`` a seen token always becomes less likely. Other entries are unchanged.
    The sign matters, so pass raw logits, not log-probabilities (those are all negative).

    Args:
        logits: ``(B, V)``.
        seen_tokens: ``(B, t)`` integer token ids; ``t`` may be 0.
        penalty: > 0; ``1`` changes nothing.
    """
    _check_penalty(penalty)
    if seen_tokens.ndim != 2 or seen_tokens.shape[0] != logits.shape[0]:
        raise ValueError(
            f"seen_tokens must have shape (B, t) with B={logits.shape[0]}, got {tuple(seen_tokens.shape)}"
        )
    if seen_tokens.shape[1] == 0:
        return logits
    seen = mx.put_along_axis(
        mx.zeros(logits.shape, dtype=mx.bool_), seen_tokens.astype(mx.int32), mx.array(True), axis=-1
    )
    penalised = mx.where(logits < 0, logits * penalty, logits / penalty)
    return mx.where(seen, penalised, logits)


def make_repetition_penalty(penalty: float, context_size: int = 20) -> LogitsProcessor:
    """Make a processor applying ``apply_repetition_penalty`` to the last ``context_size`` tokens.

    Args:
        penalty: > 0; values a little above 1 (1.1-1.3) are usual.
        context_size: how many of the most recent generated tokens count as seen. Default: ``20``.
    """
    _check_penalty(penalty)
    _check_count("context_size", context_size, 1)

    def repetition_penalty_processor(tokens: mx.array, logits: mx.array) -> mx.array:
        return apply_repetition_penalty(logits, tokens[:, -context_size:], penalty)

    return repetition_penalty_processor
