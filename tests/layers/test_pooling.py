"""Tests of mlxseq/layers/pooling.py: known answers on hand-made inputs, padding ignored."""

import mlx.core as mx
import numpy as np
import pytest

from mlxseq.layers.pooling import (
    AttentionPooling, Pooling, final_pool, final_span_pool, max_pool, max_span_pool, mean_pool, mean_span_pool, sequence_mask,
    span_mask,
)

# Two sequences of lengths 3 and 1 padded to T=4, D=2. Padding holds large values that would
# change every answer if it leaked in.
X = mx.array([
    [[1.0, -2.0], [3.0, 4.0], [-5.0, 0.5], [99.0, 99.0]],
    [[2.0, 7.0], [99.0, -99.0], [99.0, 99.0], [99.0, 99.0]],
])
LENGTHS = mx.array([3, 1])


def test_sequence_mask():
    assert sequence_mask(LENGTHS, 4).tolist() == [[True, True, True, False], [True, False, False, False]]


def test_mean_and_max_cover_valid_steps_only():
    assert np.allclose(np.array(mean_pool(X, LENGTHS)), [[-1 / 3, 2.5 / 3], [2.0, 7.0]])
    assert max_pool(X, LENGTHS).tolist() == [[3.0, 4.0], [2.0, 7.0]]


def test_final_reads_forward_at_the_last_valid_step_and_backward_at_step_0():
    assert final_pool(X, LENGTHS).tolist() == [[-5.0, 0.5], [2.0, 7.0]]
    # Bidirectional: feature 0 is the forward half, feature 1 the backward half.
    assert final_pool(X, LENGTHS, directions=2).tolist() == [[-5.0, -2.0], [2.0, 7.0]]


def test_final_equals_the_recurrent_layers_final_states():
    from mlxseq.layers import GRU

    gru = GRU(3, 5, num_layers=2, bidirectional=True)
    x = mx.random.normal((3, 6, 3))
    lengths = mx.array([6, 2, 4])
    out, h_n = gru(x, lengths=lengths)
    expected = mx.concatenate([h_n[2], h_n[3]], axis=-1)  # the top layer's two directions
    assert np.allclose(np.array(final_pool(out, lengths, directions=2)), np.array(expected), atol=1e-6)


def test_attention_pooling_weights_are_zero_on_padding_and_sum_to_one():
    mx.random.seed(0)
    pool = AttentionPooling(2, 4)
    pooled, weights = pool(X, LENGTHS)
    w = np.array(weights)
    assert np.allclose(w.sum(axis=1), 1.0) and w[0, 3] == 0 and np.all(w[1, 1:] == 0)
    assert np.allclose(np.array(pooled[1]), [2.0, 7.0])  # one valid step: the step itself
    manual = (w[0][:3, None] * np.array(X[0, :3])).sum(axis=0)
    assert np.allclose(np.array(pooled[0]), manual, atol=1e-6)


@pytest.mark.parametrize("kind", ["final", "mean", "max", "attention"])
def test_a_sequence_alone_and_in_a_padded_batch_pools_the_same(kind):
    mx.random.seed(1)
    pool = Pooling(kind, 2)
    alone = pool(X[1:, :1], mx.array([1]))
    batched = pool(X, LENGTHS)[1:]
    assert np.allclose(np.array(alone), np.array(batched), atol=1e-6)


def test_bad_shapes_and_kinds_are_named():
    with pytest.raises(ValueError, match=r"pooling must be one of .* got 'sum'"):
        Pooling("sum", 2)
    with pytest.raises(ValueError, match=r"\(B, T, D\), got shape \(4, 2\)"):
        mean_pool(X[0], LENGTHS)
    with pytest.raises(ValueError, match=r"lengths must have shape \(B,\) = \(2,\), got shape \(3,\)"):
        max_pool(X, mx.array([1, 2, 3]))


def test_span_mask_marks_the_steps_of_each_span():
    starts, ends = mx.array([[0, 2], [1, 0]]), mx.array([[2, 3], [2, 1]])
    assert span_mask(starts, ends, 4).tolist() == [
        [[True, True, False, False], [False, False, True, False]],
        [[False, True, False, False], [True, False, False, False]],
    ]


def test_span_max_and_mean_on_hand_made_spans():
    starts, ends = mx.array([[0, 1, 2], [0, 0, 0]]), mx.array([[2, 3, 3], [1, 1, 1]])
    assert max_span_pool(X, starts, ends).tolist() == [[[3.0, 4.0], [3.0, 4.0], [-5.0, 0.5]], [[2.0, 7.0]] * 3]
    assert np.allclose(np.array(mean_span_pool(X, starts, ends)),
                       [[[2.0, 1.0], [-1.0, 2.25], [-5.0, 0.5]], [[2.0, 7.0]] * 3])
    # Bidirectional final: forward half (feature 0) at end - 1, backward half (feature 1) at start.
    assert final_span_pool(X, starts, ends, directions=2).tolist() == [[[3.0, -2.0], [-5.0, 4.0], [-5.0, 0.5]],
                                                                        [[2.0, 7.0]] * 3]


@pytest.mark.parametrize("kind", ["final", "mean", "max", "attention"])
def test_a_span_pools_as_its_slice_alone(kind):
    """Span [i, j) of a padded batch equals the pooling of x[b, i:j] on its own: neither the steps
    outside the span nor the padding enter it."""
    mx.random.seed(2)
    pool = Pooling(kind, 4, directions=2)
    x = mx.random.normal((2, 6, 4))
    starts, ends = mx.array([[0, 1, 3, 5], [0, 2, 1, 0]]), mx.array([[6, 4, 5, 6], [3, 3, 2, 1]])
    pooled = np.array(pool.spans(x, starts, ends))
    assert pooled.shape == (2, 4, 4)
    for b in range(2):
        for s in range(4):
            i, j = int(starts[b, s]), int(ends[b, s])
            alone = pool(x[b:b + 1, i:j], mx.array([j - i]))
            assert np.allclose(pooled[b, s], np.array(alone)[0], atol=1e-6), (kind, b, s)


def test_attention_weights_of_a_span_are_zero_outside_it():
    mx.random.seed(0)
    pool = AttentionPooling(2, 4)
    _, weights = pool.spans(X, mx.array([[1], [0]]), mx.array([[3], [1]]))
    w = np.array(weights)
    assert w.shape == (2, 1, 4) and np.allclose(w.sum(axis=-1), 1.0)
    assert w[0, 0, 0] == 0 and w[0, 0, 3] == 0 and w[1, 0, 0] == 1.0


def test_bad_span_shapes_are_named():
    with pytest.raises(ValueError, match=r"starts and ends must both have shape \(B, S\) with B=2, got shapes \(2, 3\) and \(2, 2\)"):
        max_span_pool(X, mx.zeros((2, 3), mx.int32), mx.ones((2, 2), mx.int32))
    with pytest.raises(ValueError, match=r"span pooling expects outputs of shape \(B, T, D\), got shape \(4, 2\)"):
        mean_span_pool(X[0], mx.zeros((2, 1), mx.int32), mx.ones((2, 1), mx.int32))
