"""Point-wise gate math of one recurrent step, forward and backward.

Each cell kind is a :class:`GateMath`: the element-wise part of a step, given
the input projection ``xh = W_ih x_t + b`` and the recurrent projection
``hh = W_hh h_{t-1} (+ b_hh)``. The matrix products live in ``scan.py``; the
functions here are compiled into fused kernels, forward and backward, so the
backward pass never differentiates through the activation approximations.

Shapes: B batch, H hidden, G = gates * H.
"""

from dataclasses import dataclass
from typing import Callable

import mlx.core as mx

from mlxseq.layers import activations as act
from mlxseq.layers.quantized import product


@dataclass(frozen=True)
class GateMath:
    """The element-wise half of a recurrent cell.

    ``forward(xh, hh, h_prev, *extra_prev) -> (y, extra_new, saved)``:
    ``y`` (B, H) is the new hidden state before any projection, ``extra_new``
    the other states (LSTM: ``(c,)``), ``saved`` what the backward step needs.
    When ``fused_input``, ``xh`` is the whole pre-activation ``xh + hh`` (the
    scan forms it with one ``addmm``) and ``hh`` is None.

    ``backward(dy, d_extra, h_prev, extra_prev, extra_new, saved, params) -> (dxh, dhh, dh_direct, d_extra_prev)``:
    gradients with respect to ``xh``, ``hh`` (``None`` when equal to ``dxh``),
    the part of ``h_prev``'s gradient that does not pass through ``W_hh``
    (``None`` when there is none), and the previous extra states.

    ``num_params`` cell weights beyond the matrices (LSTM peepholes) come last
    in ``forward``'s arguments and as the tuple ``params`` in ``backward``;
    ``params_grad(d_pre, extra_prev, extra_new, params)`` gives their gradients
    from every step's ``dxh`` and states at once, each ``(T, B, ...)``.

    A cell whose step needs a matrix product between its gates (the reset gate
    applied before ``W_hn``) brings its whole step instead:
    ``step_forward(x, h, w_hh_t) -> (y, (), saved)``, ``step_backward(dy,
    h_prev, saved, w_hh) -> (dx, dh)`` and ``weight_hh_grad(dx, h_prev,
    saved) -> dW_hh`` over all steps, each step's arrays stacked ``(T, B, ...)``.

    Activations are recomputed in the backward kernel from the saved
    pre-activations instead of being stored by the forward pass: inference
    writes only the new states, and recomputing is cheaper than the memory.

    ``gate_scale``: factors applied to each gate's rows of the weights and
    biases before the scan (and undone by autodiff on the way back).
    """

    name: str
    gates: int
    num_extra: int
    forward: Callable
    backward: Callable
    num_saved: int = 1  # arrays in ``saved``
    fused_input: bool = True
    bias_hh_in_step: bool = False  # GRU: b_hn sits inside r * (W_hn h + b_hn)
    gate_scale: tuple = ()
    num_params: int = 0
    params_grad: Callable | None = None
    step_forward: Callable | None = None
    step_backward: Callable | None = None
    weight_hh_grad: Callable | None = None


# --- Elman RNN: h' = act(xh + hh) --------------------------------------------


def _rnn_tanh_forward(z, hh, h_prev):
    y = act.tanh(z)
    return y, (), (y,)


def _rnn_tanh_backward(dy, d_extra, h_prev, extra_prev, extra_new, saved, params=()):
    (y,) = saved
    return dy * (1.0 - y * y), None, None, ()


def _rnn_relu_forward(z, hh, h_prev):
    y = mx.maximum(z, 0.0)
    return y, (), (y,)


def _rnn_relu_backward(dy, d_extra, h_prev, extra_prev, extra_new, saved, params=()):
    (y,) = saved
    return mx.where(y > 0, dy, 0.0), None, None, ()


# --- LSTM ---------------------------------------------------------------------
# z = W_ih x + b_ih + W_hh h + b_hh split as i, f, g, o (PyTorch's order)
# c' = f * c + i * g,  y = o * tanh(c')
# The g rows arrive scaled by 2 (gate_scale), so one sigmoid over the whole
# contiguous z serves all four gates: tanh(v) = 2 * sigmoid(2 v) - 1.


def _lstm_gates(z):
    i, f, g, o = mx.split(act.sigmoid(z), 4, axis=-1)
    return i, f, 2.0 * g - 1.0, o


def _lstm_forward(z, hh, h_prev, c_prev):
    i, f, g, o = _lstm_gates(z)
    c = f * c_prev + i * g
    return o * act.tanh(c), (c,), (z,)


def _lstm_backward(dy, d_extra, h_prev, extra_prev, extra_new, saved, params=()):
    (dc,) = d_extra
    (c_prev,), (c,), (z,) = extra_prev, extra_new, saved
    i, f, g, o = _lstm_gates(z)
    tc = act.tanh(c)
    dc = dc + dy * o * (1.0 - tc * tc)
    di = dc * g * i * (1.0 - i)
    df = dc * c_prev * f * (1.0 - f)
    dg = dc * i * 0.5 * (1.0 - g * g)  # g = 2 sigmoid(z) - 1: dg/dz = (1 - g^2) / 2
    do = dy * tc * o * (1.0 - o)
    dz = mx.concatenate([di, df, dg, do], axis=-1)
    return dz, None, None, (dc * f,)


# --- GRU ----------------------------------------------------------------------
# r = s(x_r + h_r), z = s(x_z + h_z), n = tanh(x_n + r * h_n), h' = (1 - z) n + z h
# with h_* = W_h* h + b_h*: the reset gate multiplies the recurrent bias too.


def _gru_gates(xh, hh):
    x_r, x_z, x_n = mx.split(xh, 3, axis=-1)
    h_r, h_z, h_n = mx.split(hh, 3, axis=-1)
    r = act.sigmoid(x_r + h_r)
    z = act.sigmoid(x_z + h_z)
    n = act.tanh(x_n + r * h_n)
    return r, z, n, h_n


def _gru_forward(xh, hh, h_prev):
    r, z, n, _ = _gru_gates(xh, hh)
    return n + z * (h_prev - n), (), (xh, hh)


def _gru_backward(dy, d_extra, h_prev, extra_prev, extra_new, saved, params=()):
    r, z, n, h_n = _gru_gates(*saved)
    dn = dy * (1.0 - z) * (1.0 - n * n)
    dr = dn * h_n * r * (1.0 - r)
    dz = dy * (h_prev - n) * z * (1.0 - z)
    dxh = mx.concatenate([dr, dz, dn], axis=-1)
    dhh = mx.concatenate([dr, dz, dn * r], axis=-1)
    return dxh, dhh, dy * z, ()


# --- LSTM with peephole connections (Gers & Schmidhuber 2000; ONNX's P) --------
# i = s(z_i + p_i * c_{t-1}),  f = s(z_f + p_f * c_{t-1}),  g = tanh(z_g)
# c' = f * c + i * g,  o = s(z_o + p_o * c'),  y = o * tanh(c')
# p (3H,) holds p_i, p_f, p_o; z as for the LSTM above (g rows scaled by 2).


def _peephole_gates(z, c_prev, p, c=None):
    """Gates and new cell state (``c`` recomputed unless given)."""
    z_i, z_f, z_g, z_o = mx.split(z, 4, axis=-1)
    p_i, p_f, p_o = mx.split(p, 3, axis=-1)
    i = act.sigmoid(z_i + p_i * c_prev)
    f = act.sigmoid(z_f + p_f * c_prev)
    g = 2.0 * act.sigmoid(z_g) - 1.0
    if c is None:
        c = f * c_prev + i * g
    o = act.sigmoid(z_o + p_o * c)
    return i, f, g, o, c


def _peephole_forward(z, hh, h_prev, c_prev, p):
    _, _, _, o, c = _peephole_gates(z, c_prev, p)
    return o * act.tanh(c), (c,), (z,)


def _peephole_backward(dy, d_extra, h_prev, extra_prev, extra_new, saved, params):
    (dc,) = d_extra
    (c_prev,), (c,), (z,), (p,) = extra_prev, extra_new, saved, params
    p_i, p_f, p_o = mx.split(p, 3, axis=-1)
    i, f, g, o, _ = _peephole_gates(z, c_prev, p, c)
    tc = act.tanh(c)
    do = dy * tc * o * (1.0 - o)
    dc = dc + dy * o * (1.0 - tc * tc) + do * p_o  # o reads c' through p_o
    di = dc * g * i * (1.0 - i)
    df = dc * c_prev * f * (1.0 - f)
    dg = dc * i * 0.5 * (1.0 - g * g)
    dz = mx.concatenate([di, df, dg, do], axis=-1)
    return dz, None, None, (dc * f + di * p_i + df * p_f,)


def _peephole_params_grad(d_pre, extra_prev, extra_new, params):
    """dp_i = sum_t,b dz_i * c_{t-1}, dp_f likewise, dp_o = sum_t,b dz_o * c_t; each (H,)."""
    (c_prev,), (c,) = extra_prev, extra_new  # (T, B, H)
    d_i, d_f, _, d_o = mx.split(d_pre, 4, axis=-1)
    return (mx.concatenate([(d_i * c_prev).sum(axis=(0, 1)), (d_f * c_prev).sum(axis=(0, 1)),
                            (d_o * c).sum(axis=(0, 1))]),)


# --- GRU with the reset gate before the recurrent product (Cho et al. 2014) ---
# Keras's reset_after=False, ONNX's linear_before_reset=0:
# r = s(x_r + W_hr h),  z = s(x_z + W_hz h),  n = tanh(x_n + W_hn (r * h)),  h' = (1 - z) n + z h
# No bias sits inside a product, so both ride in x. Each step has two matmuls,
# the second on r * h, so the cell brings its whole step.


def _cho_reset_update(x_rz, hh_rz, h):
    r, z = mx.split(act.sigmoid(x_rz + hh_rz), 2, axis=-1)
    return r, z, r * h


def _cho_candidate(x_n, hn, h, z):
    n = act.tanh(x_n + hn)
    return n + z * (h - n), n


def _cho_candidate_grad(dy, h_prev, z, n):
    dn = dy * (1.0 - z) * (1.0 - n * n)  # d a_n
    dz = dy * (h_prev - n) * z * (1.0 - z)  # d a_z
    return dn, dz


def _cho_reset_grad(ds, dy, h_prev, r, z, dz):
    dr = ds * h_prev * r * (1.0 - r)  # d a_r, with s = r * h
    return mx.concatenate([dr, dz], axis=-1), dy * z + ds * r


_cho_kernels = {}


def _cho_kernel(fn):
    if fn not in _cho_kernels:
        _cho_kernels[fn] = mx.compile(fn)
    return _cho_kernels[fn]


def _cho_step_forward(x, h, w_hh_t):
    H = h.shape[-1]  # x (B, 3H), h (B, H), w_hh_t (H, 3H)
    r, z, s = _cho_kernel(_cho_reset_update)(x[:, : 2 * H], product(h, w_hh_t[:, : 2 * H]), h)  # (B, H) each
    y, n = _cho_kernel(_cho_candidate)(x[:, 2 * H :], product(s, w_hh_t[:, 2 * H :]), h, z)
    return y, (), (r, z, n)


def _cho_step_backward(dy, h_prev, saved, w_hh):
    r, z, n = saved
    H = h_prev.shape[-1]
    dn, dz = _cho_kernel(_cho_candidate_grad)(dy, h_prev, z, n)
    ds = dn @ w_hh[2 * H :]  # (B, H): through W_hn into s = r * h
    d_rz, dh_direct = _cho_kernel(_cho_reset_grad)(ds, dy, h_prev, r, z, dz)
    dh = mx.addmm(dh_direct, d_rz, w_hh[: 2 * H])
    return mx.concatenate([d_rz, dn], axis=-1), dh


def _cho_weight_hh_grad(dx, h_prev, saved):
    """dW_{h[rz]} = sum_t da_rz^T h_{t-1};  dW_hn = sum_t da_n^T (r_t * h_{t-1})."""
    r = saved[0]
    H = h_prev.shape[-1]
    dx = dx.reshape(-1, 3 * H)
    h_prev, s = h_prev.reshape(-1, H), (r * h_prev).reshape(-1, H)
    return mx.concatenate([dx[:, : 2 * H].T @ h_prev, dx[:, 2 * H :].T @ s], axis=0)


RNN_TANH = GateMath("rnn_tanh", 1, 0, _rnn_tanh_forward, _rnn_tanh_backward)
RNN_RELU = GateMath("rnn_relu", 1, 0, _rnn_relu_forward, _rnn_relu_backward)
LSTM = GateMath("lstm", 4, 1, _lstm_forward, _lstm_backward, gate_scale=(1.0, 1.0, 2.0, 1.0))
GRU = GateMath("gru", 3, 0, _gru_forward, _gru_backward, num_saved=2, fused_input=False, bias_hh_in_step=True)

LSTM_PEEPHOLE = GateMath("lstm_peephole", 4, 1, _peephole_forward, _peephole_backward,
                         gate_scale=(1.0, 1.0, 2.0, 1.0), num_params=1, params_grad=_peephole_params_grad)
GRU_RESET_BEFORE = GateMath("gru_reset_before", 3, 0, None, None, num_saved=3, fused_input=False,
                            step_forward=_cho_step_forward, step_backward=_cho_step_backward,
                            weight_hh_grad=_cho_weight_hh_grad)

GATE_MATH = {g.name: g for g in (RNN_TANH, RNN_RELU, LSTM, GRU, LSTM_PEEPHOLE, GRU_RESET_BEFORE)}
