"""Samplers and filters on small hand-built distributions with exact expected sets."""

import math

import mlx.core as mx
import numpy as np
import pytest

from mlxseq.decoding.sampling import (
    apply_min_p,
    apply_repetition_penalty,
    apply_top_k,
    apply_top_p,
    categorical_sampling,
    make_repetition_penalty,
    make_sampler,
)


def kept(masked):
    """Ids of the entries of a ``(V,)`` or ``(B, V)`` array that are not -inf, per row."""
    rows = np.atleast_2d(np.array(masked))
    return [set(np.nonzero(row != -np.inf)[0].tolist()) for row in rows]


def assert_masked_exactly(masked, original, keep):
    """``masked`` equals ``original`` on ``keep`` (per row) and is -inf everywhere else."""
    masked, original = np.array(masked), np.array(original)
    for row, (got, want) in enumerate(zip(masked, original)):
        expected = np.where(np.isin(np.arange(want.size), sorted(keep[row])), want, -np.inf)
        np.testing.assert_array_equal(got, expected, err_msg=f"row {row}")


# Probabilities 1/8, 1/2, 1/8, 1/4 in a shuffled order: partial sums 0.5, 0.75, 1.
QUARTERS = np.log(np.array([[0.125, 0.5, 0.125, 0.25]], dtype=np.float32))


def test_temperature_zero_is_argmax():
    logits = mx.array([[0.1, 2.0, -1.0], [3.0, 2.9, 3.1], [5.0, 5.0, 1.0]])
    sampler = make_sampler(temp=0.0, top_p=0.5, top_k=1)
    # The last row is a tie: argmax takes the lowest id.
    assert sampler(logits).tolist() == [1, 2, 0]


@pytest.mark.parametrize(
    "top_k,expected",
    [(1, {1}), (2, {1, 4}), (3, {1, 4, 2}), (4, {0, 1, 2, 4}), (5, {0, 1, 2, 3, 4}), (0, {0, 1, 2, 3, 4})],
)
def test_top_k_keeps_exactly_the_k_largest(top_k, expected):
    logits = mx.array([[1.0, 5.0, 3.0, -2.0, 4.0], [-1.0, -5.0, -3.0, 2.0, -4.0]])
    # Second row is the first negated: its ranking is reversed.
    ranked_second = [3, 0, 2, 4, 1]
    second = set(ranked_second[:top_k]) if top_k else set(range(5))
    assert_masked_exactly(apply_top_k(logits, top_k), logits, [expected, second])


def test_top_k_keeps_values_tied_with_the_kth():
    logits = mx.array([[2.0, 1.0, 2.0, 0.0]])
    assert kept(apply_top_k(logits, 1)) == [{0, 2}]
    assert kept(apply_top_k(logits, 3)) == [{0, 1, 2}]


@pytest.mark.parametrize(
    "top_p,expected",
    [
        (1e-9, {1}),
        (0.3, {1}),
        (0.5, {1}),  # reaches p exactly with the first token
        (0.501, {1, 3}),
        (0.75, {1, 3}),
        (0.76, {0, 1, 2, 3}),
        (0.875, {0, 1, 2, 3}),  # 1/8 + 1/8 are tied: both or neither
        (1.0, {0, 1, 2, 3}),
        (0.0, {0, 1, 2, 3}),  # disabled
    ],
)
def test_top_p_keeps_the_smallest_set_reaching_p(top_p, expected):
    logprobs = mx.array(QUARTERS)
    assert_masked_exactly(apply_top_p(logprobs, top_p), logprobs, [expected])
    # Unnormalised logits (shifted by a constant) give the same set.
    assert kept(apply_top_p(logprobs + 7.0, top_p)) == [expected]


def test_top_p_rows_are_independent():
    logits = mx.array(np.log([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7], [0.4, 0.35, 0.25]]).astype(np.float32))
    assert kept(apply_top_p(logits, 0.8)) == [{0, 1}, {1, 2}, {0, 1, 2}]


@pytest.mark.parametrize(
    "min_p,min_tokens_to_keep,expected",
    [
        (0.0, 1, {0, 1, 2, 3}),
        (0.2, 1, {0, 1, 2, 3}),
        (0.45, 1, {0, 1, 2}),
        (0.7, 1, {0, 1}),
        (0.8, 1, {0}),
        (0.99, 1, {0}),
        (0.8, 3, {0, 1, 2}),
    ],
)
def test_min_p_keeps_tokens_above_a_fraction_of_the_top(min_p, min_tokens_to_keep, expected):
    # Ratios to the top probability: 1, 0.75, 0.5, 0.25.
    logprobs = mx.array(np.log([[0.4, 0.3, 0.2, 0.1]]).astype(np.float32))
    masked = apply_min_p(logprobs, min_p, min_tokens_to_keep)
    assert_masked_exactly(masked, logprobs, [expected])


def test_repetition_penalty_changes_exactly_the_seen_tokens():
    logits = mx.array([[2.0, -1.0, 0.5, -3.0, 4.0], [1.0, 1.0, -2.0, 0.0, 3.0]])
    seen = mx.array([[0, 1, 1], [4, 2, 3]])
    expected = np.array([[1.0, -2.0, 0.5, -3.0, 4.0], [1.0, 1.0, -4.0, 0.0, 1.5]], dtype=np.float32)
    np.testing.assert_array_equal(np.array(apply_repetition_penalty(logits, seen, 2.0)), expected)
    # Nothing seen, nothing changed.
    empty = mx.zeros((2, 0), dtype=mx.int32)
    np.testing.assert_array_equal(np.array(apply_repetition_penalty(logits, empty, 2.0)), np.array(logits))


def test_repetition_penalty_processor_looks_only_at_the_context():
    logits = mx.array([[2.0, 2.0, 2.0]])
    processor = make_repetition_penalty(4.0, context_size=2)
    # Token 0 was seen three steps ago: outside a context of 2.
    out = processor(mx.array([[0, 1, 2]]), logits)
    np.testing.assert_array_equal(np.array(out), [[2.0, 0.5, 0.5]])


def draw(sampler, logits, draws, key):
    """``draws`` tokens from one ``(V,)`` distribution in one batched call."""
    return np.array(sampler(mx.broadcast_to(logits, (draws, logits.size)), key=key))


def assert_frequencies(tokens, probs):
    """Observed frequencies within 5 standard errors of ``probs`` (fails by chance < 1e-6)."""
    draws = tokens.size
    counts = np.bincount(tokens, minlength=len(probs)) / draws
    for token, p in enumerate(probs):
        tolerance = 5 * math.sqrt(p * (1 - p) / draws)
        assert abs(counts[token] - p) <= tolerance, (token, counts[token], p, tolerance)


@pytest.mark.parametrize("temp,expected", [(1.0, [0.2, 0.3, 0.5]), (0.5, [0.04 / 0.38, 0.09 / 0.38, 0.25 / 0.38])])
def test_sampling_frequencies_match_the_distribution(temp, expected):
    logits = mx.log(mx.array([0.2, 0.3, 0.5]))
    tokens = draw(make_sampler(temp=temp), logits, 4000, mx.random.key(3))
    assert_frequencies(tokens, expected)


def test_sampling_draws_only_from_the_filtered_set():
    logits = mx.array(QUARTERS[0])
    # top-p 0.75 keeps {1, 3} (2/3 and 1/3 after renormalising); top-k 3 changes nothing more.
    tokens = draw(make_sampler(temp=1.0, top_p=0.75, top_k=3), logits, 3000, mx.random.key(0))
    assert_frequencies(tokens, [0.0, 2 / 3, 0.0, 1 / 3])
    tokens = draw(make_sampler(temp=1.0, min_p=0.3), logits, 3000, mx.random.key(1))
    assert_frequencies(tokens, [0.0, 2 / 3, 0.0, 1 / 3])


def test_the_same_seed_gives_the_same_tokens():
    logits = mx.zeros((300, 3))  # uniform: two different streams agree with chance 3**-300
    sampler = make_sampler(temp=1.0)
    mx.random.seed(7)
    first = np.array(sampler(logits))
    mx.random.seed(7)
    again = np.array(sampler(logits))
    mx.random.seed(8)
    other = np.array(sampler(logits))
    np.testing.assert_array_equal(first, again)
    assert (first != other).any()
    by_key = np.array(categorical_sampling(logits, 1.0, key=mx.random.key(5)))
    np.testing.assert_array_equal(by_key, np.array(sampler(logits, key=mx.random.key(5))))
    assert (by_key != np.array(sampler(logits, key=mx.random.key(6)))).any()


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: make_sampler(temp=-0.1), "temp must be .* got -0.1"),
        (lambda: make_sampler(temp=float("nan")), "temp must be .* got nan"),
        (lambda: make_sampler(temp=1.0, top_p=1.5), r"top_p must be in \(0, 1\].* got 1.5"),
        (lambda: make_sampler(temp=1.0, top_p=-0.2), "top_p .* got -0.2"),
        (lambda: make_sampler(temp=1.0, top_k=-1), "top_k must be an integer >= 0, got -1"),
        (lambda: make_sampler(temp=1.0, top_k=2.5), "top_k .* got 2.5"),
        (lambda: make_sampler(temp=1.0, min_p=1.0), r"min_p must be in \[0, 1\).* got 1.0"),
        (lambda: make_sampler(temp=1.0, min_p=-0.01), "min_p .* got -0.01"),
        (lambda: make_sampler(temp=1.0, min_tokens_to_keep=0), "min_tokens_to_keep .* got 0"),
        (lambda: make_repetition_penalty(0.0), "penalty must be .* > 0 .* got 0.0"),
        (lambda: make_repetition_penalty(-1.2), "penalty .* got -1.2"),
        (lambda: make_repetition_penalty(1.2, context_size=0), "context_size .* got 0"),
        (lambda: apply_repetition_penalty(mx.zeros((2, 3)), mx.zeros((3, 1), mx.int32), 1.5), r"\(B, t\) with B=2"),
        (lambda: apply_top_k(mx.zeros((1, 3)), -2), "top_k .* got -2"),
        (lambda: apply_top_p(mx.zeros((1, 3)), 2.0), "top_p .* got 2.0"),
        (lambda: apply_min_p(mx.zeros((1, 3)), 1.5), "min_p .* got 1.5"),
    ],
)
def test_bad_arguments_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()
