"""Recurrent layers computing with quantized matrices (``mx.quantized_matmul`` at every step) give
the outputs of the same layers holding the dequantized float matrices."""

import mlx.core as mx
import pytest
from mlx.utils import tree_flatten

import mlxseq
from mlxseq.layers.quantized import QuantizedMatrix, product
from mlxseq.quantization import dequantize_recurrent, keep_recurrent_quantized, quantize_recurrent

LAYERS = {
    "rnn": lambda: mlxseq.RNN(64, 64, num_layers=2, bidirectional=True),
    "gru": lambda: mlxseq.GRU(64, 64, num_layers=2, bidirectional=True),
    "gru_cho": lambda: mlxseq.GRU(64, 64, reset_after=False),
    "lstm_proj": lambda: mlxseq.LSTM(64, 128, proj_size=64, num_layers=2),
    "lstm_peephole": lambda: mlxseq.LSTM(64, 64, peephole=True, bidirectional=True),
}


def _float_and_quantized(kind, bits):
    mx.random.seed(3)
    layer = LAYERS[kind]()
    stored, count = quantize_recurrent(dict(tree_flatten(layer.parameters())), bits=bits, group_size=64)
    layer.load_weights(list(dequantize_recurrent(stored, bits, 64).items()))
    twin = LAYERS[kind]()
    twin.load_weights(list(tree_flatten(layer.parameters())))
    assert keep_recurrent_quantized(twin, stored, bits, 64) == count > 0
    return layer, twin, count


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_a_layer_with_quantized_matrices_computes_what_its_dequantized_twin_does(kind, bits):
    layer, twin, count = _float_and_quantized(kind, bits)
    names = dict(tree_flatten(twin.parameters()))
    assert len(names) == len(dict(tree_flatten(layer.parameters()))) - count  # no longer parameters
    assert not any(n.startswith(("weight_ih", "weight_hh", "weight_hr")) for n in names)
    x = mx.random.normal((3, 9, 64))
    lengths = mx.array([9, 4, 1])
    for kwargs in ({}, {"lengths": lengths}):
        expected, got = layer(x, **kwargs), twin(x, **kwargs)
        for e, g in zip(tree_flatten(expected), tree_flatten(got)):
            assert e[1].shape == g[1].shape
            assert mx.allclose(e[1], g[1], atol=2e-5, rtol=1e-4), (kind, kwargs, float(mx.abs(e[1] - g[1]).max()))


@pytest.mark.parametrize("kind", ["gru", "lstm_proj"])
def test_a_quantized_layer_compiles_and_passes_gradients_to_its_inputs(kind):
    layer, twin, _ = _float_and_quantized(kind, 8)
    x = mx.random.normal((2, 5, 64))
    expected = mx.grad(lambda v: (layer(v)[0] ** 2).sum())(x)
    got = mx.grad(lambda v: (twin(v)[0] ** 2).sum())(x)
    assert mx.allclose(got, expected, atol=1e-4), float(mx.abs(got - expected).max())
    step = mx.compile(lambda v: twin(v)[0])  # as generation compiles its step
    assert mx.allclose(step(x), layer(x)[0], atol=2e-5)


def test_quantized_matrix_products_rows_and_scaling_match_the_dequantized_matrix():
    mx.random.seed(0)
    w = mx.random.normal((96, 128))
    q = QuantizedMatrix(*mx.quantize(w, group_size=64, bits=4), group_size=64, bits=4)
    dense = q.dequantize()
    assert q.shape == (96, 128) and q.T.shape == (128, 96) and mx.array_equal(q.T.dequantize(), dense.T)
    x, c = mx.random.normal((5, 128)), mx.random.normal((5, 32))
    assert mx.allclose(product(x, q.T), x @ dense.T, atol=1e-4)
    assert mx.allclose(product(x, q.T[:, 32:64], add=c), c + x @ dense[32:64].T, atol=1e-4)
    factors = mx.array([1.0] * 48 + [2.0] * 48)
    assert mx.allclose(q.scale_rows(factors).dequantize(), dense * factors[:, None], atol=1e-6)
    with pytest.raises(ValueError, match="W\\^T"):
        product(x, q)
