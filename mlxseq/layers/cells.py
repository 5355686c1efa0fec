"""Single-step cells with PyTorch's parameters: RNNCell, GRUCell, LSTMCell.

A cell is one step of the matching layer and runs through the same
:func:`mlxseq.layers.scan.scan` (with T = 1), so cells and layers share one
implementation of the gate math and its backward pass.
"""

import math

import mlx.core as mx
import mlx.nn as nn

from mlxseq.layers import gates as gate_math
from mlxseq.layers.scan import layer_scan


def _check_cell_input(x, input_size):
    if not isinstance(x, mx.array):
        raise ValueError(f"input must be an mlx.core.array, got {type(x).__name__}")
    if x.ndim not in (1, 2) or x.shape[-1] != input_size:
        raise ValueError(
            f"cell input must have shape (B, {input_size}) or unbatched ({input_size},), got {tuple(x.shape)}"
        )
    if not mx.issubdtype(x.dtype, mx.floating):
        raise ValueError(f"input must be a floating-point array, got dtype {x.dtype}")
    return (x, True) if x.ndim == 2 else (x[None], False)


def _check_cell_state(state, name, batch, hidden_size, batched):
    expected = (batch, hidden_size) if batched else (hidden_size,)
    if not isinstance(state, mx.array) or tuple(state.shape) != expected:
        given = tuple(state.shape) if isinstance(state, mx.array) else type(state).__name__
        raise ValueError(f"cell state {name} must have shape {expected}, got {given}")
    return state if batched else state[None]


class _Cell(nn.Module):
    _math: gate_math.GateMath

    def __init__(self, input_size, hidden_size, bias):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        gates = self._math.gates * hidden_size
        scale = 1.0 / math.sqrt(hidden_size)
        shapes = {"weight_ih": (gates, input_size), "weight_hh": (gates, hidden_size)}
        if bias:
            shapes.update(bias_ih=(gates,), bias_hh=(gates,))
        for name, shape in shapes.items():
            setattr(self, name, mx.random.uniform(-scale, scale, shape))

    def _extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}"

    def _step(self, x, states):
        """Run one step; ``states`` is a tuple of (B, H) arrays or None."""
        x, batched = _check_cell_input(x, self.input_size)
        B = x.shape[0]
        names = ("h", "c")[: 1 + self._math.num_extra]
        if states is None:
            states = tuple(mx.zeros((B, self.hidden_size), dtype=x.dtype) for _ in names)
        else:
            states = tuple(
                _check_cell_state(s, n, B, self.hidden_size, batched) for s, n in zip(states, names)
            )
        _, h, extra = self._scan(x[None], states)  # one step
        new = (h, *extra)
        return new if batched else tuple(s[0] for s in new)

    def unroll(self, xs, states):
        """Run the cell over a whole sequence: one input projection and one scan.

        Args:
            xs: time-major inputs ``(T, B, D)``.
            states: tuple of initial states, each ``(B, H)`` (LSTM: ``(h, c)``).

        Returns:
            ``(outputs (T, B, H), final states tuple)``; the same numbers as calling
            the cell T times.
        """
        if xs.ndim != 3 or xs.shape[-1] != self.input_size:
            raise ValueError(f"unroll input must have shape (T, B, {self.input_size}), got {tuple(xs.shape)}")
        outputs, h, extra = self._scan(xs, states)
        return outputs, (h, *extra)

    def _scan(self, xs, states):
        """:func:`~mlxseq.layers.scan.layer_scan` over ``xs (T, B, D)`` from ``states``."""
        b_ih, b_hh = (self.bias_ih, self.bias_hh) if self.bias else (None, None)
        return layer_scan(self._math, xs, self.weight_ih, self.weight_hh, b_ih, b_hh, states[0], tuple(states[1:]))


class RNNCell(_Cell):
    r"""One Elman RNN step: :math:`h' = \sigma(W_{ih} x + b_{ih} + W_{hh} h + b_{hh})`.

    Args:
        input_size (int): features D of the input.
        hidden_size (int): features H of the state.
        bias (bool): use ``bias_ih`` and ``bias_hh``. Default: ``True``.
        nonlinearity (str): ``"tanh"`` (default) or ``"relu"``.

    Call: ``h' = cell(x, h=None)`` with ``x`` ``(B, D)`` or ``(D,)``, ``h`` ``(B, H)`` or ``(H,)``.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self._math = gate_math.GATE_MATH[f"rnn_{nonlinearity}"]
        super().__init__(input_size, hidden_size, bias)
        self.nonlinearity = nonlinearity

    def __call__(self, x, h=None):
        return self._step(x, None if h is None else (h,))[0]


class GRUCell(_Cell):
    """One GRU step, gates r, z, n as in :class:`mlxseq.GRU`. Call: ``h' = cell(x, h=None)``."""

    _math = gate_math.GRU

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__(input_size, hidden_size, bias)

    def __call__(self, x, h=None):
        return self._step(x, None if h is None else (h,))[0]


class LSTMCell(_Cell):
    """One LSTM step, gates i, f, g, o as in :class:`mlxseq.LSTM`. Call: ``h', c' = cell(x, (h, c)=None)``."""

    _math = gate_math.LSTM

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__(input_size, hidden_size, bias)

    def __call__(self, x, state=None):
        if state is not None and (not isinstance(state, (tuple, list)) or len(state) != 2):
            raise ValueError("LSTMCell state must be a tuple (h, c)")
        h, c = self._step(x, None if state is None else tuple(state))
        return h, c
