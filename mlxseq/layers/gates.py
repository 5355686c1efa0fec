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

    ``backward(dy, d_extra, h_prev, extra_prev, saved) -> (dxh, dhh, dh_direct, d_extra_prev)``:
    gradients with respect to ``xh``, ``hh`` (``None`` when equal to ``dxh``),
    the part of ``h_prev``'s gradient that does not pass through ``W_hh``
    (``None`` when there is none), and the previous extra states.
    """

    name: str
    gates: int
    num_extra: int
    forward: Callable
    backward: Callable
    bias_hh_in_step: bool = False  # GRU: b_hn sits inside r * (W_hn h + b_hn)


# --- Elman RNN: h' = act(xh + hh) --------------------------------------------


def _rnn_tanh_forward(xh, hh, h_prev):
    y = act.tanh(xh + hh)
    return y, (), (y,)


def _rnn_tanh_backward(dy, d_extra, h_prev, extra_prev, saved):
    (y,) = saved
    return dy * (1.0 - y * y), None, None, ()


def _rnn_relu_forward(xh, hh, h_prev):
    y = mx.maximum(xh + hh, 0.0)
    return y, (), (y,)


def _rnn_relu_backward(dy, d_extra, h_prev, extra_prev, saved):
    (y,) = saved
    return mx.where(y > 0, dy, 0.0), None, None, ()


# --- LSTM ---------------------------------------------------------------------
# z = xh + hh split as i, f, g, o (PyTorch's order)
# c' = f * c + i * g,  y = o * tanh(c')


def _lstm_forward(xh, hh, h_prev, c_prev):
    i, f, g, o = mx.split(xh + hh, 4, axis=-1)
    i, f, o = act.sigmoid(i), act.sigmoid(f), act.sigmoid(o)
    g = act.tanh(g)
    c = f * c_prev + i * g
    tc = act.tanh(c)
    return o * tc, (c,), (i, f, g, o, tc)


def _lstm_backward(dy, d_extra, h_prev, extra_prev, saved):
    (dc,) = d_extra
    (c_prev,) = extra_prev
    i, f, g, o, tc = saved
    dc = dc + dy * o * (1.0 - tc * tc)
    di = dc * g * i * (1.0 - i)
    df = dc * c_prev * f * (1.0 - f)
    dg = dc * i * (1.0 - g * g)
    do = dy * tc * o * (1.0 - o)
    dz = mx.concatenate([di, df, dg, do], axis=-1)
    return dz, None, None, (dc * f,)


# --- GRU ----------------------------------------------------------------------
# r = s(x_r + h_r), z = s(x_z + h_z), n = tanh(x_n + r * h_n), h' = (1 - z) n + z h
# with h_* = W_h* h + b_h*: the reset gate multiplies the recurrent bias too.


def _gru_forward(xh, hh, h_prev):
    x_r, x_z, x_n = mx.split(xh, 3, axis=-1)
    h_r, h_z, h_n = mx.split(hh, 3, axis=-1)
    r = act.sigmoid(x_r + h_r)
    z = act.sigmoid(x_z + h_z)
    n = act.tanh(x_n + r * h_n)
    y = n + z * (h_prev - n)
    return y, (), (r, z, n, h_n)


def _gru_backward(dy, d_extra, h_prev, extra_prev, saved):
    r, z, n, h_n = saved
    dn = dy * (1.0 - z) * (1.0 - n * n)
    dr = dn * h_n * r * (1.0 - r)
    dz = dy * (h_prev - n) * z * (1.0 - z)
    dxh = mx.concatenate([dr, dz, dn], axis=-1)
    dhh = mx.concatenate([dr, dz, dn * r], axis=-1)
    return dxh, dhh, dy * z, ()


RNN_TANH = GateMath("rnn_tanh", 1, 0, _rnn_tanh_forward, _rnn_tanh_backward)
RNN_RELU = GateMath("rnn_relu", 1, 0, _rnn_relu_forward, _rnn_relu_backward)
LSTM = GateMath("lstm", 4, 1, _lstm_forward, _lstm_backward)
GRU = GateMath("gru", 3, 0, _gru_forward, _gru_backward, bias_hh_in_step=True)

GATE_MATH = {g.name: g for g in (RNN_TANH, RNN_RELU, LSTM, GRU)}
