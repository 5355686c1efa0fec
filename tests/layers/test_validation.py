"""Bad arguments to the recurrent layers raise ValueError naming what was expected and given."""

import mlx.core as mx
import numpy as np
import pytest

import mlxseq

D, H, B, T = 4, 6, 3, 5


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: mlxseq.RNN(D, H, nonlinearity="sigmoid"), "nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"),
        (lambda: mlxseq.LSTM(D, H, proj_size=H), r"proj_size must be in \[0, hidden_size=6\), got 6"),
        (lambda: mlxseq.LSTM(D, H, proj_size=-1), "proj_size"),
        (lambda: mlxseq.GRU(D, H, num_layers=2, dropout=1.5), r"dropout must be a number in \[0, 1\], got 1.5"),
        (lambda: mlxseq.GRU(D, H, num_layers=2, dropout=-0.1), "dropout"),
        (lambda: mlxseq.GRU(D, 0), "hidden_size must be a positive integer, got 0"),
        (lambda: mlxseq.GRU(D, H, num_layers=0), "num_layers"),
    ],
)
def test_bad_constructor_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_dropout_on_a_single_layer_warns():
    with pytest.warns(UserWarning, match="no effect with num_layers=1"):
        mlxseq.LSTM(D, H, dropout=0.5)


@pytest.mark.parametrize(
    "x,message",
    [
        (mx.zeros((B, T, D, 1)), r"\(B, T, D\) or unbatched \(T, D\) with D=4, got shape \(3, 5, 4, 1\)"),
        (mx.zeros((D,)), r"got shape \(4,\)"),
        (mx.zeros((B, T, D + 1)), r"D=4 features in its last axis, got shape \(3, 5, 5\)"),
        (mx.zeros((B, 0, D)), "at least one time step"),
        (mx.zeros((B, T, D), dtype=mx.int32), "floating-point"),
        (np.zeros((B, T, D), dtype=np.float32), "mlx.core.array"),
    ],
)
def test_bad_input(x, message):
    with pytest.raises(ValueError, match=message):
        mlxseq.GRU(D, H)(x)


@pytest.mark.parametrize(
    "lengths,message",
    [
        (mx.array([5, 4]), r"shape \(B,\) = \(3,\), got shape \(2,\)"),
        (mx.array([[5, 4, 3]]), r"got shape \(1, 3\)"),
        (mx.array([5.0, 4.0, 3.0]), "lengths must be integers, got dtype"),
        ([5.0, 4.0, 3.0], "lengths must be integers"),
        (mx.array([5, 0, 3]), r"lengths must lie in \[1, T=5\], got 0"),
        (mx.array([5, 6, 3]), r"lengths must lie in \[1, T=5\], got 6"),
        ([5, -1, 3], "got -1"),
    ],
)
def test_bad_lengths(lengths, message):
    with pytest.raises(ValueError, match=message):
        mlxseq.LSTM(D, H)(mx.zeros((B, T, D)), lengths=lengths)


def test_lengths_with_unbatched_input():
    with pytest.raises(ValueError, match="lengths requires batched input"):
        mlxseq.GRU(D, H)(mx.zeros((T, D)), lengths=[5])


@pytest.mark.parametrize(
    "make,state,message",
    [
        (lambda: mlxseq.GRU(D, H, num_layers=2), mx.zeros((1, B, H)), r"h_0 must have shape \(2, 3, 6\), got \(1, 3, 6\)"),
        (lambda: mlxseq.GRU(D, H, bidirectional=True), mx.zeros((1, B, H)), r"\(2, 3, 6\)"),
        (lambda: mlxseq.LSTM(D, H), mx.zeros((1, B, H)), r"tuple \(h_0, c_0\)"),
        (lambda: mlxseq.LSTM(D, H), (mx.zeros((1, B, H)), mx.zeros((1, B, H + 1))), r"c_0 must have shape \(1, 3, 6\)"),
        (lambda: mlxseq.LSTM(D, H, proj_size=2), (mx.zeros((1, B, H)), mx.zeros((1, B, H))), r"h_0 must have shape \(1, 3, 2\)"),
        (lambda: mlxseq.RNN(D, H), np.zeros((1, B, H)), "mlx.core.array"),
    ],
)
def test_bad_state(make, state, message):
    with pytest.raises(ValueError, match=message):
        make()(mx.zeros((B, T, D)), state)


def test_unbatched_state_shape():
    with pytest.raises(ValueError, match=r"h_0 must have shape \(1, 6\), got \(1, 1, 6\)"):
        mlxseq.GRU(D, H)(mx.zeros((T, D)), mx.zeros((1, 1, H)))
