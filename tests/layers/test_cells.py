"""Parity of mlxseq.RNNCell/GRUCell/LSTMCell with torch.nn cells, values and gradients."""

import itertools

import mlx.core as mx
import pytest
import torch

import mlxseq
from tests.layers.parity import assert_close, cotangents, load_torch_weights, to_mx

pytestmark = pytest.mark.usefixtures("recurrence_path")  # tests/layers/conftest.py: both paths

D, H, B = 4, 6, 3
CELLS = {
    "rnn_tanh": (torch.nn.RNNCell, mlxseq.RNNCell, {"nonlinearity": "tanh"}),
    "rnn_relu": (torch.nn.RNNCell, mlxseq.RNNCell, {"nonlinearity": "relu"}),
    "gru": (torch.nn.GRUCell, mlxseq.GRUCell, {}),
    "lstm": (torch.nn.LSTMCell, mlxseq.LSTMCell, {}),
}


@pytest.mark.parametrize(
    "kind,bias,with_state,batched", list(itertools.product(CELLS, [True, False], [False, True], [True, False]))
)
def test_cell_parity_with_torch(kind, bias, with_state, batched):
    torch_cls, mlx_cls, kwargs = CELLS[kind]
    torch.manual_seed(1)
    tc = torch_cls(D, H, bias=bias, **kwargs)
    mc = mlx_cls(D, H, bias=bias, **kwargs)
    load_torch_weights(mc, tc)
    is_lstm = kind == "lstm"
    shape = (B, H) if batched else (H,)
    x = torch.randn((B, D) if batched else (D,), requires_grad=True)
    states = [torch.randn(shape, requires_grad=True) for _ in range(2 if is_lstm else 1)] if with_state else None

    t_in = None if states is None else (tuple(states) if is_lstm else states[0])
    t_out = tc(x, t_in)
    t_out = list(t_out) if is_lstm else [t_out]
    weights = cotangents([o.shape for o in t_out], 2)
    sum((o * w).sum() for o, w in zip(t_out, weights)).backward()

    m_weights = [to_mx(w) for w in weights]

    def run(x, params, states):
        mc.update(params)
        out = mc(x, None if states is None else (tuple(states) if is_lstm else states[0]))
        return list(out) if is_lstm else [out]

    def loss(x, params, states):
        return sum((o * w).sum() for o, w in zip(run(x, params, states), m_weights))

    params = {k: to_mx(v) for k, v in tc.named_parameters()}
    m_states = None if states is None else [to_mx(s) for s in states]
    for m, t in zip(run(to_mx(x), params, m_states), t_out):
        assert_close(m, t, "cell output")
    argnums = (0, 1, 2) if with_state else (0, 1)
    grads = mx.grad(loss, argnums=argnums)(to_mx(x), params, m_states)
    assert_close(grads[0], x.grad, "d input")
    for name, p in tc.named_parameters():
        assert_close(grads[1][name], p.grad, f"d {name}")
    if with_state:
        for g, s in zip(grads[2], states):
            assert_close(g, s.grad, "d state")


def test_cell_steps_equal_the_layer():
    # Unrolling a cell with a layer's weights gives the layer's outputs.
    mx.random.seed(2)
    layer = mlxseq.LSTM(D, H)
    cell = mlxseq.LSTMCell(D, H)
    cell.load_weights([(k[: -len("_l0")], v) for k, v in layer.parameters().items()])
    x = mx.random.normal((B, 5, D))
    out, _ = layer(x)
    h = c = mx.zeros((B, H))
    for t in range(5):
        h, c = cell(x[:, t], (h, c))
        assert mx.allclose(h, out[:, t], atol=1e-6)


@pytest.mark.parametrize(
    "make,call,message",
    [
        (lambda: mlxseq.GRUCell(D, H), lambda c: c(mx.zeros((B, D + 1))), "shape"),
        (lambda: mlxseq.GRUCell(D, H), lambda c: c(mx.zeros((2, B, D))), "shape"),
        (lambda: mlxseq.GRUCell(D, H), lambda c: c(mx.zeros((B, D)), mx.zeros((B, H + 1))), "cell state h"),
        (lambda: mlxseq.LSTMCell(D, H), lambda c: c(mx.zeros((B, D)), mx.zeros((B, H))), "tuple"),
        (lambda: mlxseq.LSTMCell(D, H), lambda c: c(mx.zeros((B, D)), (mx.zeros((B, H)), mx.zeros((1, H)))), "c"),
        (lambda: mlxseq.RNNCell(D, H, nonlinearity="gelu"), None, "nonlinearity"),
        (lambda: mlxseq.RNNCell(D, 0), None, "hidden_size"),
    ],
)
def test_cell_bad_input(make, call, message):
    with pytest.raises(ValueError, match=message):
        cell = make()
        call(cell)


@pytest.mark.parametrize("kind", list(CELLS))
def test_unroll_equals_stepping(kind):
    _, mlx_cls, kwargs = CELLS[kind]
    mx.random.seed(4)
    cell = mlx_cls(D, H, **kwargs)
    xs = mx.random.normal((5, B, D))
    states = tuple(mx.random.normal((B, H)) for _ in range(2 if kind == "lstm" else 1))
    outputs, final = cell.unroll(xs, states)
    current = states
    for t in range(5):
        current = cell(xs[t], current if kind == "lstm" else current[0])
        current = tuple(current) if kind == "lstm" else (current,)
        assert mx.allclose(outputs[t], current[0], atol=1e-6)
    for a, b in zip(final, current):
        assert mx.allclose(a, b, atol=1e-6)
