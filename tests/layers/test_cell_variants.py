"""The cells older and non-PyTorch models use: peephole LSTM, Cho's GRU (reset before the
recurrent product) and learned initial states, against the equations written out in torch
(float64 autograd through a plain loop, one sequence at a time): outputs, final states and the
gradients of the input, the initial states and every parameter."""

import mlx.core as mx
import numpy as np
import pytest
import torch

import mlxseq
from tests.layers.parity import cotangents

pytestmark = pytest.mark.usefixtures("recurrence_path")  # tests/layers/conftest.py: both paths

B, T, D, H = 3, 6, 4, 5
LENGTHS = [6, 1, 4]


def _lstm_peephole_step(x, h, c, w):
    z = x @ w["weight_ih"].T + h @ w["weight_hh"].T + w.get("bias_ih", 0) + w.get("bias_hh", 0)
    z_i, z_f, z_g, z_o = z.chunk(4, dim=-1)
    p_i, p_f, p_o = w["weight_ph"].chunk(3)
    i = torch.sigmoid(z_i + p_i * c)
    f = torch.sigmoid(z_f + p_f * c)
    c = f * c + i * torch.tanh(z_g)
    o = torch.sigmoid(z_o + p_o * c)
    return o * torch.tanh(c), c


def _gru_reset_before_step(x, h, c, w):
    xr, xz, xn = (x @ w["weight_ih"].T + w.get("bias_ih", 0)).chunk(3, dim=-1)
    w_r, w_z, w_n = w["weight_hh"].chunk(3)
    b_r, b_z, b_n = w["bias_hh"].chunk(3) if "bias_hh" in w else (0, 0, 0)
    r = torch.sigmoid(xr + h @ w_r.T + b_r)
    z = torch.sigmoid(xz + h @ w_z.T + b_z)
    n = torch.tanh(xn + (r * h) @ w_n.T + b_n)
    return (1 - z) * n + z * h, None


def _lstm_step(x, h, c, w):
    z = x @ w["weight_ih"].T + h @ w["weight_hh"].T + w.get("bias_ih", 0) + w.get("bias_hh", 0)
    i, f, g, o = z.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _reference(step, params, x, h0, c0, num_layers, bidirectional, lengths):
    """Outputs (B, T, dirs H) and final states of the stacked layer, sequence by sequence."""
    suffixes = ["", "_reverse"] if bidirectional else [""]
    outputs, h_n, c_n = [], [[] for _ in range(num_layers * len(suffixes))], [[] for _ in h0]
    for b in range(x.shape[0]):
        length = lengths[b] if lengths else x.shape[1]
        layer_input = x[b, :length]
        for k in range(num_layers):
            directions = []
            for d, suffix in enumerate(suffixes):
                w = {name[: -len(f"_l{k}{suffix}")]: value for name, value in params.items()
                     if name.endswith(f"_l{k}{suffix}") and (suffix or not name.endswith("_reverse"))}
                index = k * len(suffixes) + d
                h, c = h0[index][b], None if c0 is None else c0[index][b]
                steps = range(length - 1, -1, -1) if d else range(length)
                out = [None] * length
                for t in steps:
                    h, c = step(layer_input[t], h, c, w)
                    out[t] = h
                directions.append(torch.stack(out))
                h_n[index].append(h)
                if c0 is not None:
                    c_n[index].append(c)
            layer_input = torch.cat(directions, dim=-1)
        padding = torch.zeros(x.shape[1] - length, layer_input.shape[-1], dtype=x.dtype)
        outputs.append(torch.cat([layer_input, padding]))
    finals = [torch.stack([torch.stack(s) for s in h_n])]
    if c0 is not None:
        finals.append(torch.stack([torch.stack(s) for s in c_n]))
    return torch.stack(outputs), finals


CASES = {
    "lstm_peephole": (mlxseq.LSTM, {"peephole": True}, _lstm_peephole_step, True),
    "gru_reset_before": (mlxseq.GRU, {"reset_after": False}, _gru_reset_before_step, False),
}


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("num_layers,bidirectional,lengths", [(1, False, None), (2, True, LENGTHS), (1, True, None)])
@pytest.mark.parametrize("case", sorted(CASES))
def test_variant_matches_its_equations_with_every_gradient(case, num_layers, bidirectional, lengths, bias):
    layer_cls, options, step, is_lstm = CASES[case]
    mx.random.seed(3)
    layer = layer_cls(D, H, num_layers=num_layers, bidirectional=bidirectional, bias=bias, **options)
    dirs = 2 if bidirectional else 1
    rng = np.random.default_rng(4)
    x = rng.standard_normal((B, T, D))
    states = [rng.standard_normal((num_layers * dirs, B, H)) for _ in range(1 + is_lstm)]

    params = {name: torch.tensor(np.array(value), dtype=torch.float64, requires_grad=True)
              for name, value in layer.parameters().items()}
    tx = torch.tensor(x, requires_grad=True)
    t_states = [torch.tensor(s, requires_grad=True) for s in states]
    out, finals = _reference(step, params, tx, t_states[0], t_states[1] if is_lstm else None,
                             num_layers, bidirectional, lengths)
    weights = [w.double() for w in cotangents([out.shape] + [f.shape for f in finals], seed=5)]
    sum((a * w).sum() for a, w in zip([out, *finals], weights)).backward()

    m_weights = [mx.array(w.numpy().astype(np.float32)) for w in weights]
    m_lengths = None if lengths is None else mx.array(lengths)

    def loss(x, parameters, states):
        layer.update(parameters)
        state = tuple(states) if is_lstm else states[0]
        o, final = layer(x, state, lengths=m_lengths)
        final = list(final) if is_lstm else [final]
        return sum((a * w).sum() for a, w in zip([o, *final], m_weights)), (o, final)

    m_states = [mx.array(s.astype(np.float32)) for s in states]
    (_, (m_out, m_finals)), (dx, dparams, dstates) = mx.value_and_grad(loss, argnums=(0, 1, 2))(
        mx.array(x.astype(np.float32)), layer.parameters(), m_states)

    def close(actual, expected, what):
        np.testing.assert_allclose(np.array(actual), expected.detach().numpy(), atol=1e-5, rtol=1e-5, err_msg=what)

    close(m_out, out, "output")
    for i, (m_final, final) in enumerate(zip(m_finals, finals)):
        close(m_final, final, f"final state {i}")
    close(dx, tx.grad, "d input")
    for i, (m_d, state) in enumerate(zip(dstates, t_states)):
        close(m_d, state.grad, f"d initial state {i}")
    assert set(dparams) == set(params)
    for name, value in params.items():
        close(dparams[name], value.grad, f"d {name}")


def test_peephole_weights_at_zero_give_the_plain_lstm():
    mx.random.seed(0)
    peephole = mlxseq.LSTM(D, H, num_layers=2, peephole=True)
    plain = mlxseq.LSTM(D, H, num_layers=2)
    plain.update({name: value for name, value in peephole.parameters().items() if "weight_ph" not in name})
    peephole.update({name: mx.zeros_like(value) for name, value in peephole.parameters().items() if "weight_ph" in name})
    x = mx.random.normal((B, T, D))
    np.testing.assert_allclose(np.array(peephole(x)[0]), np.array(plain(x)[0]), atol=1e-6)


def test_the_two_gru_forms_differ_and_share_parameter_names():
    mx.random.seed(0)
    after, before = mlxseq.GRU(D, H), mlxseq.GRU(D, H, reset_after=False)
    assert sorted(after.parameters()) == sorted(before.parameters())
    before.update(after.parameters())
    x = mx.random.normal((B, T, D))
    assert np.abs(np.array(after(x)[0]) - np.array(before(x)[0])).max() > 1e-3


@pytest.mark.parametrize("layer_cls,is_lstm", [(mlxseq.LSTM, True), (mlxseq.GRU, False), (mlxseq.RNN, False)])
def test_a_learned_initial_state_starts_every_sequence_and_learns(layer_cls, is_lstm):
    mx.random.seed(1)
    layer = layer_cls(D, H, num_layers=2, bidirectional=True, learn_initial_state=True)
    names = sorted(name for name in layer.parameters() if name.startswith("initial_"))
    expected = [f"initial_{s}_l{k}{d}" for s in ("c", "h")[1 - is_lstm:] for k in (0, 1) for d in ("", "_reverse")]
    assert names == sorted(expected)
    starts = {name: mx.random.normal(layer[name].shape) for name in names}
    layer.update(starts)
    x = mx.random.normal((B, T, D))
    # The learned state is the same as passing it, broadcast over the batch, as the initial state.
    h0 = mx.stack([mx.broadcast_to(starts[f"initial_h_l{k}{d}"], (B, H)) for k in (0, 1) for d in ("", "_reverse")])
    state = h0
    if is_lstm:
        c0 = mx.stack([mx.broadcast_to(starts[f"initial_c_l{k}{d}"], (B, H)) for k in (0, 1) for d in ("", "_reverse")])
        state = (h0, c0)
    plain = layer_cls(D, H, num_layers=2, bidirectional=True)
    plain.update({name: value for name, value in layer.parameters().items() if not name.startswith("initial_")})
    np.testing.assert_allclose(np.array(layer(x)[0]), np.array(plain(x, state)[0]), atol=1e-6)

    def loss(parameters):
        layer.update(parameters)
        return (layer(x)[0] ** 2).sum()

    grads = mx.grad(loss)(layer.parameters())
    assert all(np.abs(np.array(grads[name])).max() > 0 for name in names)


@pytest.mark.parametrize("option", [{"peephole": 1}, {"reset_after": "no"}, {"learn_initial_state": None}])
def test_variant_options_take_booleans_only(option):
    layer_cls = mlxseq.GRU if "reset_after" in option else mlxseq.LSTM
    with pytest.raises(ValueError, match=f"{next(iter(option))} must be True or False"):
        layer_cls(D, H, **option)
