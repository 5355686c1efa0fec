"""Recognise torch ``nn.RNN/GRU/LSTM`` (and cell) weights and build the mlxseq layer.

torch names recurrent weights ``weight_ih_l{k}[_reverse]``, ``weight_hh_l{k}``,
``bias_ih_l{k}``, ``bias_hh_l{k}`` and, for projected LSTMs, ``weight_hr_l{k}``;
cells use ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``. The shapes
tell the rest::

    weight_ih_l0  (G * H, D)     G gates: 1 RNN, 3 GRU, 4 LSTM
    weight_hh_l0  (G * H, R)     R = P if projected else H
    weight_hr_l0  (P, H)         LSTM with proj_size P
    weight_ih_lk  (G * H, dirs * R) for k > 0
    weight_ph_l0  (3 * H,)       LSTM with peepholes (mlxseq's name; torch has none)
    initial_h_l0  (R,)           learned initial states (mlxseq's names), LSTM also initial_c_l0 (H,)

mlxseq layers use the same names, so the weights load by name unchanged. Matrices stored
the other way round, ``(in, out)`` (``weight_hh_l0`` of shape ``(H, G * H)``), are transposed. AWD-LSTM's
``WeightDrop`` (DropConnect on the recurrent weights, used by its language models and
ULMFiT) renames a parameter ``weight_hh_l0_raw``: the raw weight is the one used at inference,
and is read as ``weight_hh_l0`` unless that name is stored as well.
A plain RNN cannot say whether it used tanh or relu, nor a GRU where its reset gate
sits (``reset_after``); the caller passes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np

_KEY = re.compile(
    r"^(?P<name>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr|weight_ph|initial_h|initial_c)"
    r"(?:_l(?P<layer>\d+))?(?P<reverse>_reverse)?(?P<raw>_raw)?$"
)
_FIRST_KEY = re.compile(r"^(?P<prefix>(?:.*\.)?)weight_ih(?:_l0)?(?:_raw)?$")
_KIND_BY_GATES = {1: "rnn", 3: "gru", 4: "lstm"}
_GATES_BY_KIND = {kind: gates for gates, kind in _KIND_BY_GATES.items()}


@dataclass(frozen=True)
class TorchRNNConfig:
    """The constructor arguments of a torch recurrent layer, read off its weights.

    Attributes:
        kind: ``"rnn"``, ``"gru"`` or ``"lstm"`` (an RNN's nonlinearity is unknown).
        input_size: features D of the input.
        hidden_size: features H of the hidden state.
        num_layers: stacked layers (1 for a cell).
        bias: whether ``bias_ih``/``bias_hh`` exist.
        bidirectional: whether ``_reverse`` weights exist.
        proj_size: P of an LSTM's ``weight_hr``, 0 if none.
        cell: a single-step cell (``nn.LSTMCell`` ...) rather than a layer.
        prefix: the key prefix the weights were found under, e.g. ``"encoder.rnn."``.
        peephole: an LSTM with ``weight_ph`` peephole weights.
        learn_initial_state: ``initial_h`` (and ``initial_c``) weights exist.
        reset_after: a GRU's reset gate after the recurrent product (PyTorch's); not in the weights.
    """

    kind: str
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    bidirectional: bool = False
    proj_size: int = 0
    cell: bool = False
    prefix: str = ""
    peephole: bool = False
    learn_initial_state: bool = False
    reset_after: bool = True


def find_torch_rnn_prefixes(state_dict: Mapping[str, Any]) -> list[str]:
    """Every prefix under which a recurrent layer or cell's weights start, in key order.

    ``{"encoder.rnn.weight_ih_l0": ..., "decoder.cell.weight_ih": ...}`` gives
    ``["encoder.rnn.", "decoder.cell."]``; a bare layer's state dict gives ``[""]``.
    """
    prefixes = []
    for key in state_dict:
        match = _FIRST_KEY.match(key)
        if match and match["prefix"] not in prefixes:
            prefixes.append(match["prefix"])
    return prefixes


def torch_rnn_config(state_dict: Mapping[str, Any], prefix: str = "", *,
                     reset_after: bool = True) -> tuple[TorchRNNConfig, dict[str, Any]]:
    """Read a recurrent layer's configuration from its weights under ``prefix``.

    Args:
        state_dict: name -> array-like with ``.shape`` (numpy, MLX or torch).
        prefix: where the layer sits, e.g. ``"encoder.rnn."`` (with the dot).
        reset_after: for a GRU, where its reset gate sits (the weights cannot tell).

    Returns:
        ``(config, weights)``: the :class:`TorchRNNConfig` and the layer's own
        entries with ``prefix`` stripped, ready for ``layer.load_weights``.

    Raises:
        ValueError: no recurrent weights under ``prefix``, or names and shapes
            that do not form one torch layer (the message says what is off).
    """
    sources = layer_source_keys(state_dict, prefix)
    weights = {name: state_dict[key] for name, key in sources.items()}
    if not weights:
        found = find_torch_rnn_prefixes(state_dict)
        raise ValueError(f"no RNN/GRU/LSTM weights under prefix {prefix!r}; prefixes found: {found}")
    if _stored_in_out(weights):
        weights = {name: _transposed(value) if name.startswith("weight_") else value for name, value in weights.items()}
    parsed = {key: _KEY.match(key) for key in weights}
    cells = [key for key, match in parsed.items() if match["layer"] is None]
    if cells and len(cells) != len(parsed):
        raise ValueError(f"weights under {prefix!r} mix cell names and layer names: {sorted(weights)}")
    if cells:
        config = _cell_config(weights, prefix)
    else:
        config = _layer_config(weights, parsed, prefix)
    if not reset_after and config.kind == "gru":
        config = replace(config, reset_after=False)
    _check_names_and_shapes(config, weights)
    return config, weights


def _stored_in_out(weights: dict[str, Any]) -> bool:
    """Whether the matrices are stored (in, out), as Keras and hand-written numpy layers keep them.

    torch's ``weight_hh`` is ``(G * H, R)`` with R <= H, never more columns than rows; stored the
    other way round it has more columns than rows. (An RNN's square ``weight_hh`` cannot tell,
    and is read as torch stores it.)"""
    shape = tuple(getattr(weights.get("weight_hh_l0", weights.get("weight_hh")), "shape", ()))
    return len(shape) == 2 and 0 < shape[0] < shape[1]


def _transposed(value: Any) -> Any:
    array = np.asarray(value)
    return np.ascontiguousarray(array.T) if array.ndim == 2 else array


def layer_source_keys(state_dict: Mapping[str, Any], prefix: str) -> dict[str, str]:
    """The recurrent weights under ``prefix``: torch name (``weight_hh_l0``) -> key in ``state_dict``
    (``rnns.0.module.weight_hh_l0_raw`` under WeightDrop, when the plain name is not there)."""
    sources: dict[str, str] = {}
    for key in state_dict:
        if not key.startswith(prefix):
            continue
        match = _KEY.match(key[len(prefix):])
        if match is None:
            continue
        name = key[len(prefix):].removesuffix("_raw") if match["raw"] else key[len(prefix):]
        if not match["raw"] or name not in sources:
            sources[name] = key
    return sources


def _shape(weights: dict[str, Any], key: str, prefix: str) -> tuple[int, ...]:
    if key not in weights:
        raise ValueError(f"missing {prefix}{key}")
    shape = tuple(int(n) for n in getattr(weights[key], "shape", ()))
    if len(shape) != 2:
        raise ValueError(f"{prefix}{key} has shape {shape}; a recurrent weight is a matrix (2 dimensions)")
    return shape


def _kind(gate_rows: int, hidden: int, prefix: str) -> str:
    gates, remainder = divmod(gate_rows, hidden) if hidden else (0, 1)
    if remainder or gates not in _KIND_BY_GATES:
        raise ValueError(
            f"weight_ih under {prefix!r} has {gate_rows} rows for hidden size {hidden}: "
            "not 1x (RNN), 3x (GRU) or 4x (LSTM)"
        )
    return _KIND_BY_GATES[gates]


def _cell_config(weights: dict[str, Any], prefix: str) -> TorchRNNConfig:
    rows, input_size = _shape(weights, "weight_ih", prefix)
    hidden = _shape(weights, "weight_hh", prefix)[1]
    return TorchRNNConfig(kind=_kind(rows, hidden, prefix), input_size=input_size, hidden_size=hidden,
                          bias="bias_ih" in weights, cell=True, prefix=prefix)


def _layer_config(weights: dict[str, Any], parsed: dict[str, re.Match], prefix: str) -> TorchRNNConfig:
    rows, input_size = _shape(weights, "weight_ih_l0", prefix)
    if "weight_hr_l0" in weights:
        proj_size, hidden = _shape(weights, "weight_hr_l0", prefix)
    else:
        proj_size, hidden = 0, _shape(weights, "weight_hh_l0", prefix)[1]
    kind = _kind(rows, hidden, prefix)
    if proj_size and kind != "lstm":
        raise ValueError(f"weight_hr (projection) under {prefix!r} belongs only to an LSTM, found a {kind}")
    if "weight_ph_l0" in weights and kind != "lstm":
        raise ValueError(f"weight_ph (peepholes) under {prefix!r} belongs only to an LSTM, found a {kind}")
    return TorchRNNConfig(
        kind=kind, input_size=input_size, hidden_size=hidden,
        num_layers=1 + max(int(match["layer"]) for match in parsed.values()),
        bias="bias_ih_l0" in weights,
        bidirectional=any(match["reverse"] for match in parsed.values()),
        proj_size=proj_size, prefix=prefix,
        peephole="weight_ph_l0" in weights,
        learn_initial_state="initial_h_l0" in weights,
    )


def expected_shapes(config: TorchRNNConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter torch creates for ``config``, with its shape."""
    gate_rows = _GATES_BY_KIND[config.kind] * config.hidden_size
    if config.cell:
        shapes = {"weight_ih": (gate_rows, config.input_size), "weight_hh": (gate_rows, config.hidden_size)}
        if config.bias:
            shapes.update(bias_ih=(gate_rows,), bias_hh=(gate_rows,))
        return shapes
    recurrent = config.proj_size or config.hidden_size
    directions = ["", "_reverse"] if config.bidirectional else [""]
    shapes = {}
    for layer in range(config.num_layers):
        layer_input = config.input_size if layer == 0 else recurrent * len(directions)
        for suffix in (f"_l{layer}{d}" for d in directions):
            shapes[f"weight_ih{suffix}"] = (gate_rows, layer_input)
            shapes[f"weight_hh{suffix}"] = (gate_rows, recurrent)
            if config.bias:
                shapes[f"bias_ih{suffix}"] = (gate_rows,)
                shapes[f"bias_hh{suffix}"] = (gate_rows,)
            if config.proj_size:
                shapes[f"weight_hr{suffix}"] = (config.proj_size, config.hidden_size)
            if config.peephole:
                shapes[f"weight_ph{suffix}"] = (3 * config.hidden_size,)
            if config.learn_initial_state:
                shapes[f"initial_h{suffix}"] = (recurrent,)
                if config.kind == "lstm":
                    shapes[f"initial_c{suffix}"] = (config.hidden_size,)
    return shapes


def _check_names_and_shapes(config: TorchRNNConfig, weights: dict[str, Any]) -> None:
    expected = expected_shapes(config)
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        raise ValueError(f"weights under {config.prefix!r} do not form a torch {config.kind} layer: "
                         f"missing {missing}, unexpected {extra}")
    for key, shape in expected.items():
        actual = tuple(int(n) for n in weights[key].shape)
        if actual != shape:
            raise ValueError(f"{config.prefix}{key} has shape {actual}, expected {shape} for {config}")


def recurrent_args(config: TorchRNNConfig, *, nonlinearity: str = "tanh", dropout: float = 0.0):
    """The ``model_type: recurrent`` arguments (:class:`mlxseq.models.recurrent.ModelArgs`) of ``config``."""
    from mlxseq.models.recurrent import ModelArgs  # needs MLX; the reader does not

    return ModelArgs(
        kind=config.kind,
        input_size=config.input_size,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        bias=config.bias,
        dropout=dropout,
        bidirectional=config.bidirectional,
        proj_size=config.proj_size,
        nonlinearity=nonlinearity,
        cell=config.cell,
        peephole=config.peephole,
        reset_after=config.reset_after,
        learn_initial_state=config.learn_initial_state,
    )


def build_torch_rnn(config: TorchRNNConfig, weights: Mapping[str, Any] | None = None, *,
                    nonlinearity: str = "tanh", dropout: float = 0.0) -> Any:
    """The mlxseq layer or cell matching ``config``, with ``weights`` loaded if given.

    Args:
        config: from :func:`torch_rnn_config`.
        weights: the stripped weights :func:`torch_rnn_config` returned
            (numpy arrays or anything ``numpy.asarray`` takes).
        nonlinearity: ``"tanh"`` or ``"relu"`` for an RNN (the weights cannot tell).
        dropout: between stacked layers in training mode (not stored in weights).
    """
    import mlx.core as mx

    from mlxseq.models.recurrent import build_model

    layer = build_model(recurrent_args(config, nonlinearity=nonlinearity, dropout=dropout))
    if weights is not None:
        layer.load_weights([(key, mx.array(np.asarray(value))) for key, value in weights.items()])
    return layer
