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


@dataclass(frozen=True)
class GateMath:
    """The element-wise half of a recurrent cell.

    ``forward(xh, hh, h_prev, *extra_prev) -> (y, extra_new, saved)``:
    ``y`` (B, H) is the new hidden state before any projection, ``extra_new``
    the other states (LSTM: ``(c,)``), ``saved`` what the backward step needs.
    When ``fused_input``, ``xh`` is the whole pre-activation ``xh + hh`` (the
    scan forms it with one ``addmm``) and ``hh`` is None.

    ``backward(dy, d_extra, h_prev, extra_prev, extra_new, saved) -> (dxh, dhh, dh_direct, d_extra_prev)``:
    gradients with respect to ``xh``, ``hh`` (``None`` when equal to ``dxh``),
    the part of ``h_prev``'s gradient that does not pass through ``W_hh``
    (``None`` when there is none), and the previous extra states.

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


# --- Elman RNN: h' = act(xh + hh) --------------------------------------------


def _rnn_tanh_forward(z, hh, h_prev):
    y = act.tanh(z)
    return y, (), (y,)


def _rnn_tanh_backward(dy, d_extra, h_prev, extra_prev, extra_new, saved):
    (y,) = saved
    return dy * (1.0 - y * y), None, None, ()


def _rnn_relu_forward(z, hh, h_prev):
    y = mx.maximum(z, 0.0)
    return y, (), (y,)


def _rnn_relu_backward(dy, d_extra, h_prev, extra_prev, extra_new, saved):
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


def _lstm_backward(dy, d_extra, h_prev, extra_prev, extra_new, saved):
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


def _gru_backward(dy, d_extra, h_prev, extra_prev, extra_new, saved):
    r, z, n, h_n = _gru_gates(*saved)
    dn = dy * (1.0 - z) * (1.0 - n * n)
    dr = dn * h_n * r * (1.0 - r)
    dz = dy * (h_prev - n) * z * (1.0 - z)
    dxh = mx.concatenate([dr, dz, dn], axis=-1)
    dhh = mx.concatenate([dr, dz, dn * r], axis=-1)
    return dxh, dhh, dy * z, ()


RNN_TANH = GateMath("rnn_tanh", 1, 0, _rnn_tanh_forward, _rnn_tanh_backward)
RNN_RELU = GateMath("rnn_relu", 1, 0, _rnn_relu_forward, _rnn_relu_backward)
LSTM = GateMath("lstm", 4, 1, _lstm_forward, _lstm_backward, gate_scale=(1.0, 1.0, 2.0, 1.0))
GRU = GateMath("gru", 3, 0, _gru_forward, _gru_backward, num_saved=2, fused_input=False, bias_hh_in_step=True)

GATE_MATH = {g.name: g for g in (RNN_TANH, RNN_RELU, LSTM, GRU)}
