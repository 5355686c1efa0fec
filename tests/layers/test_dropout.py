"""Dropout between layers: training mode only, never on the last layer's output."""

import mlx.core as mx
import numpy as np
import pytest

import mlxseq

D, H, B, T = 4, 8, 2, 6


def test_eval_mode_is_deterministic_and_ignores_dropout():
    mx.random.seed(0)
    lstm = mlxseq.LSTM(D, H, num_layers=3, dropout=0.5)
    x = mx.random.normal((B, T, D))
    lstm.eval()
    a, _ = lstm(x)
    b, _ = lstm(x)
    assert mx.array_equal(a, b)
    reference = mlxseq.LSTM(D, H, num_layers=3)
    reference.update(lstm.parameters())
    c, _ = reference(x)
    assert mx.array_equal(a, c)


def test_train_mode_drops_between_layers():
    mx.random.seed(0)
    gru = mlxseq.GRU(D, H, num_layers=2, dropout=0.5)
    x = mx.random.normal((B, T, D))
    gru.train()
    a, _ = gru(x)
    b, _ = gru(x)
    assert not mx.allclose(a, b)  # a fresh mask on each call
    gru.eval()
    c, _ = gru(x)
    assert not mx.allclose(a, c)


def test_last_layer_output_is_never_dropped():
    # With one layer there is nothing between layers: train mode equals eval mode.
    # With two, the last layer's output has no zeroed entries even at p close to 1,
    # while its input (the first layer's output, fed back as the only layer) would.
    mx.random.seed(0)
    with pytest.warns(UserWarning, match="no effect"):
        one = mlxseq.RNN(D, H, dropout=0.9)
    x = mx.random.normal((B, T, D))
    one.train()
    a, _ = one(x)
    one.eval()
    b, _ = one(x)
    assert mx.array_equal(a, b)

    two = mlxseq.RNN(D, H, num_layers=2, dropout=0.9)
    two.train()
    out, h = two(x)
    assert np.count_nonzero(np.array(out) == 0) == 0
    assert mx.array_equal(out[:, -1], h[1])
