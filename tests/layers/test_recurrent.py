"""Parity of mlxseq.RNN/GRU/LSTM with torch.nn: outputs, final states and every gradient."""

import itertools

import mlx.core as mx
import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import mlxseq
from tests.layers.parity import KINDS, assert_close, cotangents, load_torch_weights, to_mx

pytestmark = pytest.mark.usefixtures("recurrence_path")  # tests/layers/conftest.py: both paths

B, T, D, H = 3, 5, 4, 6
RAGGED = [5, 1, 3]  # includes the full length and a length of 1


def _torch_run(layer, x, state, lengths):
    if lengths is None:
        return layer(x, state)
    packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    out, final = layer(packed, state)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out, final


def _states(final, is_lstm):
    return list(final) if is_lstm else [final]


def check_parity(kind, num_layers, bidirectional, bias, lengths, with_state, batched=True, seed=0):
    torch_cls, mlx_cls, kwargs = KINDS[kind]
    torch.manual_seed(seed)
    is_lstm = torch_cls is torch.nn.LSTM
    tl = torch_cls(D, H, num_layers=num_layers, bias=bias, bidirectional=bidirectional, batch_first=True, **kwargs)
    ml = mlx_cls(D, H, num_layers=num_layers, bias=bias, bidirectional=bidirectional, **kwargs)
    load_torch_weights(ml, tl)

    dirs = 2 if bidirectional else 1
    P = kwargs.get("proj_size") or H
    x = torch.randn(B, T, D) if batched else torch.randn(T, D)
    x.requires_grad_(True)
    state_shapes = [(num_layers * dirs, B, P)] + ([(num_layers * dirs, B, H)] if is_lstm else [])
    if not batched:
        state_shapes = [(s[0], s[2]) for s in state_shapes]
    states = [torch.randn(s, requires_grad=True) for s in state_shapes] if with_state else None
    t_state = None if states is None else (tuple(states) if is_lstm else states[0])

    out, final = _torch_run(tl, x, t_state, lengths)
    finals = _states(final, is_lstm)
    weights = cotangents([out.shape] + [f.shape for f in finals], seed + 1)
    loss = sum((a * w).sum() for a, w in zip([out, *finals], weights))
    loss.backward()

    params = {k: to_mx(v) for k, v in tl.named_parameters()}
    m_state = None if states is None else [to_mx(s) for s in states]
    m_lengths = None if lengths is None else mx.array(lengths)
    m_weights = [to_mx(w) for w in weights]

    def forward(x, params, state):
        ml.update(params)
        s = None if state is None else (tuple(state) if is_lstm else state[0])
        out, final = ml(x, s, lengths=m_lengths)
        return out, _states(final, is_lstm)

    def loss_fn(x, params, state):
        out, finals = forward(x, params, state)
        return sum((a * w).sum() for a, w in zip([out, *finals], m_weights))

    m_out, m_finals = forward(to_mx(x), params, m_state)
    assert_close(m_out, out, "output")
    for name, m, t in zip(("h_n", "c_n"), m_finals, finals):
        assert_close(m, t, name)

    argnums = (0, 1, 2) if with_state else (0, 1)
    grads = mx.grad(loss_fn, argnums=argnums)(to_mx(x), params, m_state)
    assert_close(grads[0], x.grad, "d input")
    for name, p in tl.named_parameters():
        assert_close(grads[1][name], p.grad, f"d {name}")
    if with_state:
        for name, g, s in zip(("h_0", "c_0"), grads[2], states):
            assert_close(g, s.grad, f"d {name}")


@pytest.mark.parametrize(
    "kind,num_layers,bidirectional,bias,lengths,with_state",
    list(itertools.product(KINDS, [1, 3], [False, True], [True, False], [None, RAGGED], [False, True])),
)
def test_parity_with_torch(kind, num_layers, bidirectional, bias, lengths, with_state):
    check_parity(kind, num_layers, bidirectional, bias, lengths, with_state)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_unbatched_parity_with_torch(kind, bidirectional, with_state):
    check_parity(kind, 2, bidirectional, True, None, with_state, batched=False)


def test_longer_sequences_stay_exact():
    # 60 steps of a 2-layer bidirectional LSTM: errors of the gate math must not grow with time.
    torch.manual_seed(3)
    tl = torch.nn.LSTM(8, 16, num_layers=2, bidirectional=True, batch_first=True)
    ml = mlxseq.LSTM(8, 16, num_layers=2, bidirectional=True)
    load_torch_weights(ml, tl)
    x = torch.randn(2, 60, 8) * 3
    out, (h, c) = tl(x)
    m_out, (m_h, m_c) = ml(to_mx(x))
    assert_close(m_out, out, "output")
    assert_close(m_c, c, "c_n")


def test_lengths_match_unpadded_sequences():
    # Each sequence of a padded batch gives what it gives alone, with zeros past its length.
    mx.random.seed(0)
    gru = mlxseq.GRU(D, H, bidirectional=True)
    x = mx.random.normal((B, T, D))
    out, h = gru(x, lengths=mx.array(RAGGED))
    for b, n in enumerate(RAGGED):
        alone, h_alone = gru(x[b : b + 1, :n])
        np.testing.assert_allclose(np.array(out[b, :n]), np.array(alone[0]), atol=1e-6)
        np.testing.assert_allclose(np.array(h[:, b]), np.array(h_alone[:, 0]), atol=1e-6)
        assert not np.any(np.array(out[b, n:]))


def test_lengths_inside_a_compiled_function():
    # Inside mx.compile the lengths cannot be read back for checks; results must not change.
    mx.random.seed(0)
    lstm = mlxseq.LSTM(D, H, bidirectional=True)
    x = mx.random.normal((B, T, D))
    lengths = mx.array(RAGGED)
    eager, _ = lstm(x, lengths=lengths)
    compiled, _ = mx.compile(lambda x, n: lstm(x, lengths=n))(x, lengths)
    np.testing.assert_allclose(np.array(compiled), np.array(eager), atol=1e-6)


@pytest.mark.parametrize("kind", list(KINDS))
def test_time_major_layers_match_torchs_default_layout(kind):
    # batch_first=False on both sides: (T, B, D) in, (T, B, dirs * H) out, states as always.
    torch_cls, mlx_cls, kwargs = KINDS[kind]
    torch.manual_seed(4)
    tl = torch_cls(D, H, num_layers=2, bidirectional=True, **kwargs)  # torch's default: batch_first=False
    ml = mlx_cls(D, H, num_layers=2, bidirectional=True, batch_first=False, **kwargs)
    load_torch_weights(ml, tl)
    x = torch.randn(T, B, D)
    out, final = tl(pack_padded_sequence(x, torch.tensor(RAGGED), enforce_sorted=False))
    out, _ = pad_packed_sequence(out, total_length=T)
    m_out, m_final = ml(to_mx(x), lengths=mx.array(RAGGED))
    assert m_out.shape == (T, B, out.shape[-1])
    assert_close(m_out, out, "output")
    for name, m, t in zip(("h_n", "c_n"), _states(m_final, torch_cls is torch.nn.LSTM), _states(final, torch_cls is torch.nn.LSTM)):
        assert_close(m, t, name)


def test_torch_habits_get_errors_that_point_to_the_way_that_works(tmp_path):
    lstm = mlxseq.LSTM(D, H)
    packed = pack_padded_sequence(torch.randn(B, T, D), torch.tensor(RAGGED), batch_first=True, enforce_sorted=False)
    with pytest.raises(ValueError, match=r"input is a torch PackedSequence; .* sequence lengths as lengths="):
        lstm(packed)
    torch.save(torch.nn.LSTM(D, H).state_dict(), tmp_path / "lstm.pt")
    with pytest.raises(ValueError, match=r"lstm.pt is a PyTorch checkpoint: .*load_torch_checkpoint.*mlxseq convert"):
        lstm.load_weights(str(tmp_path / "lstm.pt"))
    with pytest.raises(mlxseq.checkpoint.ModelFolderError, match=r"convert a PyTorch checkpoint first: mlxseq convert"):
        mlxseq.load(tmp_path / "lstm.pt")
    with pytest.raises(ValueError, match="batch_first must be True or False, got 'yes'"):
        mlxseq.GRU(D, H, batch_first="yes")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_long_inference_runs_in_chunks_with_torchs_numbers(kind):
    # 700 steps: untraced calls evaluate chunks of scan.EVAL_CHUNK steps and keep nothing for a
    # backward pass; traced calls (here mx.vjp) build one graph. Both give torch's numbers.
    from mlxseq.layers import scan

    torch_cls, mlx_cls, kwargs = KINDS[kind]
    torch.manual_seed(5)
    tl = torch_cls(D, H, num_layers=2, bidirectional=True, batch_first=True, **kwargs)
    ml = mlx_cls(D, H, num_layers=2, bidirectional=True, **kwargs)
    load_torch_weights(ml, tl)
    steps, lengths = 700, [700, 333, 1]
    assert steps > 2 * scan.EVAL_CHUNK
    x = torch.randn(B, steps, D)
    out, final = _torch_run(tl, x, None, lengths)
    is_lstm = torch_cls is torch.nn.LSTM
    m_lengths = mx.array(lengths)
    eager = ml(to_mx(x), lengths=m_lengths)
    def flat(x):
        out, final = ml(x, lengths=m_lengths)
        return [out, *_states(final, is_lstm)]

    shapes = [a.shape for a in flat(to_mx(x))]
    traced_outputs, _ = mx.vjp(flat, [to_mx(x)], [mx.ones(shape) for shape in shapes])
    traced = (traced_outputs[0], tuple(traced_outputs[1:]) if is_lstm else traced_outputs[1])
    for m_out, m_final in (eager, traced):
        assert_close(m_out, out, "output")
        for name, m, t in zip(("h_n", "c_n"), _states(m_final, is_lstm), _states(final, is_lstm)):
            assert_close(m, t, name)
