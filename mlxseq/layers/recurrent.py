"""Multi-layer, optionally bidirectional RNN, GRU and LSTM with PyTorch's parameters.

Parameters carry torch.nn's names, shapes, gate order and initialisation
(``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``,
``weight_hr_l{k}``, each with ``_reverse`` for the backward direction), so a
PyTorch state dict loads by name and gives PyTorch's numbers::

    lstm.load_weights([(k, mx.array(v.numpy())) for k, v in torch_lstm.state_dict().items()])

Inputs are batch-first ``(B, T, D)`` (MLX's convention) or unbatched ``(T, D)``.
Internally every layer runs time-major through :func:`mlxseq.layers.scan.layer_scan`:
one matmul projects the inputs of all steps, then the recurrence runs (the native
primitive, where it runs, makes the projections itself a chunk of steps at a time).
"""

import math
import os
import warnings

import mlx.core as mx
import mlx.nn as nn

from mlxseq.layers import gates as gate_math
from mlxseq.layers.scan import layer_scan
from mlxseq.layers.validation import check_input, check_lengths, check_state

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar")


class _Recurrent(nn.Module):
    """Shared body of :class:`RNN`, :class:`GRU` and :class:`LSTM`."""

    _math: gate_math.GateMath

    def __init__(self, input_size, hidden_size, num_layers, bias, dropout, bidirectional, proj_size=0,
                 batch_first=True, learn_initial_state=False):
        super().__init__()
        for name, value in (("batch_first", batch_first), ("learn_initial_state", learn_initial_state)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False, got {value!r}")
        if not isinstance(hidden_size, int) or hidden_size < 1:
            raise ValueError(f"hidden_size must be a positive integer, got {hidden_size!r}")
        if not isinstance(input_size, int) or input_size < 1:
            raise ValueError(f"input_size must be a positive integer, got {input_size!r}")
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError(f"dropout must be a number in [0, 1], got {dropout!r}")
        if proj_size < 0 or proj_size >= hidden_size:
            raise ValueError(f"proj_size must be in [0, hidden_size={hidden_size}), got {proj_size}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                f"dropout={dropout} has no effect with num_layers=1: dropout applies between layers",
                stacklevel=3,
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        self.batch_first = batch_first
        self.learn_initial_state = learn_initial_state

        gates = self._math.gates * hidden_size
        out_size = proj_size or hidden_size
        scale = 1.0 / math.sqrt(hidden_size)
        for k in range(num_layers):
            layer_in = input_size if k == 0 else out_size * self.num_directions
            for suffix in self._suffixes():
                shapes = {"weight_ih": (gates, layer_in), "weight_hh": (gates, out_size)}
                if bias:
                    shapes.update(bias_ih=(gates,), bias_hh=(gates,))
                if proj_size:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                if self._math.num_params:
                    shapes["weight_ph"] = (3 * hidden_size,)  # peepholes p_i, p_f, p_o
                for name, shape in shapes.items():
                    setattr(self, f"{name}_l{k}{suffix}", mx.random.uniform(-scale, scale, shape))
                if learn_initial_state:
                    setattr(self, f"initial_h_l{k}{suffix}", mx.zeros((out_size,)))
                    if self._math.num_extra:
                        setattr(self, f"initial_c_l{k}{suffix}", mx.zeros((hidden_size,)))

    def load_weights(self, file_or_weights, strict: bool = True):
        """``nn.Module.load_weights``, with a pointer to the way in for a PyTorch checkpoint file."""
        if isinstance(file_or_weights, (str, os.PathLike)) and str(file_or_weights).endswith(TORCH_SUFFIXES):
            raise ValueError(
                f"{file_or_weights} is a PyTorch checkpoint: read it without torch with "
                "mlxseq.convert.load_torch_checkpoint(path) and pass [(name, mx.array(value)) for name, value in "
                "state_dict.items()], or turn it into a model folder with `mlxseq convert`")
        return super().load_weights(file_or_weights, strict=strict)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _suffixes(self):
        return ("", "_reverse") if self.bidirectional else ("",)

    def _extra_repr(self):
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"bias={self.bias}, dropout={self.dropout}, bidirectional={self.bidirectional}"
        )

    def _run(self, x, states, lengths):
        """Shared forward. ``states`` is a tuple of ``(L * dirs, B, ·)`` arrays or None."""
        time_major = not self.batch_first and isinstance(x, mx.array) and x.ndim == 3
        if time_major:
            x = x.transpose(1, 0, 2)  # (T, B, D) -> (B, T, D)
        x, batched = check_input(x, self.input_size)
        B, T = x.shape[0], x.shape[1]
        out_size = self.proj_size or self.hidden_size
        state_shapes = [(self.num_layers * self.num_directions, B, out_size)]
        if self._math.num_extra:
            state_shapes.append((self.num_layers * self.num_directions, B, self.hidden_size))
        states = check_state(states, state_shapes, batched)
        mask = None
        if lengths is not None:
            if not batched:
                raise ValueError("lengths requires batched input of shape (B, T, D), got unbatched (T, D)")
            lengths = check_lengths(lengths, B, T)
            mask = (mx.arange(T)[:, None] < lengths[None, :])[..., None]  # (T, B, 1)

        layer_input = x.transpose(1, 0, 2)  # (T, B, D)
        if self.bidirectional:  # one time-major copy for both directions (each would make its own)
            layer_input = mx.contiguous(layer_input)
        finals = [[] for _ in states] if states is not None else [[] for _ in state_shapes]
        for k in range(self.num_layers):
            outputs = []
            for d, suffix in enumerate(self._suffixes()):
                index = k * self.num_directions + d
                init = [s[index] for s in states] if states is not None else None
                out, last = self._direction(layer_input, k, suffix, init, mask, B, reverse=d == 1)
                outputs.append(out)
                for f, s in zip(finals, last):
                    f.append(s)
            layer_input = outputs[0] if len(outputs) == 1 else mx.concatenate(outputs, axis=-1)
            if self.training and self.dropout > 0 and k < self.num_layers - 1:
                keep = mx.random.bernoulli(1.0 - self.dropout, layer_input.shape)
                layer_input = mx.where(keep, layer_input / (1.0 - self.dropout), 0.0)

        output = layer_input if time_major else layer_input.transpose(1, 0, 2)  # (B, T, dirs * P) or (T, B, ·)
        finals = [mx.stack(f) for f in finals]  # (L * dirs, B, ·)
        if not batched:
            output = output[0]
            finals = [f[:, 0] for f in finals]
        return output, finals

    def _direction(self, layer_input, k, suffix, init, mask, B, reverse):
        """One layer and direction over time; returns ``(out (T, B, P), final states)``."""
        p = f"_l{k}{suffix}"
        b_ih, b_hh = (self[f"bias_ih{p}"], self[f"bias_hh{p}"]) if self.bias else (None, None)
        # getattr also finds matrices kept quantized (mlxseq.quantization)
        w_ih, w_hh = getattr(self, f"weight_ih{p}"), getattr(self, f"weight_hh{p}")
        w_hr = getattr(self, f"weight_hr{p}") if self.proj_size else None
        params = (self[f"weight_ph{p}"],) if self._math.num_params else ()
        dtype = mx.result_type(layer_input.dtype, w_ih.dtype)  # the projections' dtype, as before the scan
        if init is not None:
            h0, extra0 = init[0], tuple(init[1:])
        elif self.learn_initial_state:  # one learned state for every sequence
            h0 = mx.broadcast_to(self[f"initial_h{p}"], (B, self[f"initial_h{p}"].shape[0])).astype(dtype)
            extra0 = tuple(mx.broadcast_to(self[f"initial_c{p}"], (B, self.hidden_size)).astype(dtype)
                           for _ in range(self._math.num_extra))
        else:
            out_size = self.proj_size or self.hidden_size
            h0 = mx.zeros((B, out_size), dtype=dtype)
            extra0 = tuple(mx.zeros((B, self.hidden_size), dtype=dtype) for _ in range(self._math.num_extra))
        out, h_n, extra_n = layer_scan(self._math, layer_input, w_ih, w_hh, b_ih, b_hh, h0, extra0, w_hr, mask,
                                       reverse, params)  # out (T, B, P)
        return out, (h_n, *extra_n)


class RNN(_Recurrent):
    r"""Elman RNN: :math:`h_t = \sigma(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})`.

    Args:
        input_size (int): features D of the input.
        hidden_size (int): features H of the hidden state.
        num_layers (int): stacked layers. Default: ``1``.
        nonlinearity (str): ``"tanh"`` or ``"relu"``. Default: ``"tanh"``.
        bias (bool): use ``bias_ih`` and ``bias_hh``. Default: ``True``.
        dropout (float): dropout on the outputs of each layer but the last,
            in training mode. Default: ``0``.
        bidirectional (bool): also run each layer backwards in time. Default: ``False``.
        batch_first (bool): ``True``: input and output ``(B, T, ·)``, MLX's layout;
            ``False``: time-major ``(T, B, ·)``, PyTorch's default. States are
            ``(num_layers * dirs, B, H)`` either way. Default: ``True``.
        learn_initial_state (bool): learn the initial state of each layer and
            direction (``initial_h_l{k}``, LSTM also ``initial_c_l{k}``, zeros at
            first) instead of starting from zeros; a ``state`` passed in the
            call replaces it. Default: ``False``.

    Call: ``output, h_n = rnn(x, state=None, lengths=None)`` with ``x`` of shape
    ``(B, T, D)`` or ``(T, D)``; ``output`` ``(B, T, dirs * H)``, ``h_n``
    ``(num_layers * dirs, B, H)``; ``state`` an initial ``h_0`` of ``h_n``'s
    shape; ``lengths`` ``(B,)`` valid steps of each sequence (outputs past a
    sequence's length are 0 and its final state is taken at its last valid step).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
        batch_first: bool = True,
        learn_initial_state: bool = False,
    ):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self._math = gate_math.GATE_MATH[f"rnn_{nonlinearity}"]
        super().__init__(input_size, hidden_size, num_layers, bias, dropout, bidirectional, batch_first=batch_first,
                         learn_initial_state=learn_initial_state)
        self.nonlinearity = nonlinearity

    def __call__(self, x, state=None, lengths=None):
        output, (h_n,) = self._run(x, None if state is None else (state,), lengths)
        return output, h_n


class GRU(_Recurrent):
    r"""Gated recurrent unit, PyTorch's formulation and gate order (r, z, n):

    .. math::
        r_t = \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
        z_t = \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})) \\
        h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}

    Arguments and call as :class:`RNN` (without ``nonlinearity``), plus
    ``reset_after`` (bool): ``True`` (default) is PyTorch's formulation above;
    ``False`` is Cho et al.'s original (Keras ``reset_after=False``, ONNX
    ``linear_before_reset=0``), the reset gate applied before the recurrent
    product and both biases outside it:
    :math:`n_t = \tanh(W_{in} x_t + b_{in} + W_{hn} (r_t \odot h_{t-1}) + b_{hn})`.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
        batch_first: bool = True,
        learn_initial_state: bool = False,
        reset_after: bool = True,
    ):
        if not isinstance(reset_after, bool):
            raise ValueError(f"reset_after must be True or False, got {reset_after!r}")
        self._math = gate_math.GRU if reset_after else gate_math.GRU_RESET_BEFORE
        super().__init__(input_size, hidden_size, num_layers, bias, dropout, bidirectional, batch_first=batch_first,
                         learn_initial_state=learn_initial_state)
        self.reset_after = reset_after

    def __call__(self, x, state=None, lengths=None):
        output, (h_n,) = self._run(x, None if state is None else (state,), lengths)
        return output, h_n


class LSTM(_Recurrent):
    r"""Long short-term memory, PyTorch's formulation and gate order (i, f, g, o):

    .. math::
        i_t = \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) \\
        f_t = \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
        g_t = \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
        o_t = \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) \\
        c_t = f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t = o_t \odot \tanh(c_t) \quad (\text{then } h_t = W_{hr} h_t \text{ if proj\_size} > 0)

    Args: as :class:`RNN` (without ``nonlinearity``), plus ``proj_size`` (int):
    if > 0, the hidden state is projected to this size by ``weight_hr_l{k}``
    (``h_n`` and ``output`` then have P = proj_size features). Default: ``0``.
    ``peephole`` (bool): gates also read the cell state through the weights
    ``weight_ph_l{k}`` ``(3H,)`` = ``(p_i, p_f, p_o)`` (Gers & Schmidhuber 2000,
    ONNX's ``P``): :math:`i_t = \sigma(\ldots + p_i \odot c_{t-1})`,
    :math:`f_t = \sigma(\ldots + p_f \odot c_{t-1})`,
    :math:`o_t = \sigma(\ldots + p_o \odot c_t)`. Default: ``False``.

    Call: ``output, (h_n, c_n) = lstm(x, state=None, lengths=None)`` with
    ``c_n`` of shape ``(num_layers * dirs, B, H)``; ``state`` is ``(h_0, c_0)``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        batch_first: bool = True,
        learn_initial_state: bool = False,
        peephole: bool = False,
    ):
        if not isinstance(peephole, bool):
            raise ValueError(f"peephole must be True or False, got {peephole!r}")
        self._math = gate_math.LSTM_PEEPHOLE if peephole else gate_math.LSTM
        super().__init__(input_size, hidden_size, num_layers, bias, dropout, bidirectional, proj_size, batch_first,
                         learn_initial_state)
        self.peephole = peephole

    def __call__(self, x, state=None, lengths=None):
        if state is not None and (not isinstance(state, (tuple, list)) or len(state) != 2):
            raise ValueError("LSTM state must be a tuple (h_0, c_0)")
        output, (h_n, c_n) = self._run(x, None if state is None else tuple(state), lengths)
        return output, (h_n, c_n)
