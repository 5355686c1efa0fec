"""Keras 3 ``.keras`` files' LSTM, GRU, SimpleRNN and Bidirectional layers as PyTorch-named weights.

A ``.keras`` file is a zip of ``config.json`` (the layers and their settings) and
``model.weights.h5`` (read with ``h5py``: ``pip install "mlxseq[keras]"``), whose groups are
named after each layer's class in order (``layers/lstm``, ``layers/lstm_1``, ...,
``layers/bidirectional/forward_layer``). Keras stores ``kernel`` ``(D, gates * H)`` and
``recurrent_kernel`` ``(H, gates * H)``, transposed against PyTorch, with gate orders LSTM
``i, f, c, o`` (PyTorch's) and GRU ``z, r, h`` (PyTorch: ``r, z, n``); an LSTM's or
SimpleRNN's one bias becomes ``bias_ih`` with a zero ``bias_hh``, a GRU's two
(``reset_after=True``) are PyTorch's two. A GRU with ``reset_after=False`` (Cho et al.'s
original, one bias) becomes ``mlxseq.GRU(..., reset_after=False)``. :func:`read_keras_recurrent`
gives a flat state dict ``{"<layer name>.weight_ih_l0": ...}`` for the torch-rnn conversion.

Refused by name: activations other than tanh/sigmoid (a SimpleRNN's relu is read as
``nonlinearity: relu``), ``go_backwards`` alone,
and Bidirectional merge modes other than ``concat``. Nothing in the file is executed: the
config is JSON, the weights are arrays.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from .errors import CheckpointError
from .torch_checkpoint import _member_size

_GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}
_TORCH_ORDER = {"LSTM": (0, 1, 2, 3), "GRU": (1, 0, 2), "SimpleRNN": (0,)}
_MAX_CONFIG_BYTES = 64 << 20


def read_keras_recurrent(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``(state dict, layer options by prefix)`` of every recurrent layer of a ``.keras`` model.

    The options are what the weights cannot tell: ``{"nonlinearity": "relu"}`` for a SimpleRNN,
    ``{"reset_after": False}`` for a GRU in Cho et al.'s form."""
    try:
        import h5py
    except ImportError:
        raise CheckpointError('reading Keras files needs h5py: pip install "mlxseq[keras]"') from None
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        raise CheckpointError(f"not a .keras archive ({error})", str(path)) from None
    with archive:
        infos = {info.filename: info for info in archive.infolist()}
        for name in ("config.json", "model.weights.h5"):
            if name not in infos:
                raise CheckpointError(f"not a Keras 3 model: {name} is missing", str(path))
        if _member_size(infos["config.json"]) > _MAX_CONFIG_BYTES:
            raise CheckpointError("config.json is too large for a model description", str(path))
        _member_size(infos["model.weights.h5"])
        try:
            config = json.loads(archive.read("config.json"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CheckpointError(f"config.json is not valid JSON ({error})", str(path)) from None
        weights = io.BytesIO(archive.read("model.weights.h5"))
    try:
        with h5py.File(weights, "r") as h5:
            return _layers(config, h5, str(path))
    except OSError as error:
        raise CheckpointError(f"model.weights.h5 is not readable HDF5 ({error})", str(path)) from None


def read_keras2_h5(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The same for a Keras 2 ``.h5`` model (``model.save("model.h5")``, TensorFlow 2 era).

    Its root attribute ``model_config`` is the model's JSON; group ``model_weights/<layer>``
    lists its arrays in order in the attribute ``weight_names`` (``lstm/lstm_cell/kernel:0``,
    recurrent kernel, bias; a Bidirectional layer's forward ones, then its backward ones).
    """
    try:
        import h5py
    except ImportError:
        raise CheckpointError('reading Keras files needs h5py: pip install "mlxseq[keras]"') from None
    path = Path(path)
    try:
        with h5py.File(path, "r") as h5:
            raw = h5.attrs.get("model_config")
            if raw is None:
                raise CheckpointError("no model_config attribute: not a Keras 2 .h5 model (weights only?)", str(path))
            config = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
            weights = h5["model_weights"] if "model_weights" in h5 else h5
            return _keras2_layers(config, weights, str(path))
    except OSError as error:
        raise CheckpointError(f"not readable HDF5 ({error})", str(path)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"model_config is not valid JSON ({error})", str(path)) from None


class _ListedVariables:
    """A Keras 2 layer's arrays in ``weight_names`` order, looked up like Keras 3's ``cell/vars``."""

    def __init__(self, arrays: list):
        self._arrays = arrays

    def __len__(self) -> int:
        return len(self._arrays)

    def __getitem__(self, index: str):
        return self._arrays[int(index)]


def _keras2_layers(config: dict, weights, path: str):
    layers = (config.get("config") or {}).get("layers") if isinstance(config, dict) else None
    if isinstance(config.get("config"), list):  # Keras 2 Sequential: config is the list of layers
        layers = config["config"]
    if not isinstance(layers, list):
        raise CheckpointError("model_config lists no layers", path)
    state, options = {}, {}
    for layer in layers:
        kind, settings = layer.get("class_name"), layer.get("config") or {}
        if kind not in _GATES and kind != "Bidirectional":
            continue
        name = str(settings.get("name"))
        group = weights.get(name)
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("weight_names", [])] \
            if group is not None else []
        arrays = [np.asarray(group[n], dtype=np.float32) for n in names]
        try:
            if kind == "Bidirectional":
                if settings.get("merge_mode", "concat") != "concat":
                    raise CheckpointError(f"merge_mode {settings.get('merge_mode')!r} is not supported (only concat)")
                inner = settings.get("layer") or {}
                half = len(arrays) // 2
                found, layer_options = _recurrent(inner.get("class_name"), inner.get("config") or {},
                                               {"g/cell/vars": _ListedVariables(arrays[:half])}, "g", "")
                backward, _ = _recurrent(inner.get("class_name"), inner.get("config") or {},
                                         {"g/cell/vars": _ListedVariables(arrays[half:])}, "g", "_reverse",
                                         reversed_ok=True)
                found.update(backward)
            else:
                found, layer_options = _recurrent(kind, settings, {"g/cell/vars": _ListedVariables(arrays)}, "g", "")
        except CheckpointError as error:
            raise CheckpointError(f"layer {name!r} ({kind}): {error.message}", path) from None
        key = re.sub(r"[^\w]", "_", name)
        state.update({f"{key}.{k}": v for k, v in found.items()})
        options[f"{key}."] = layer_options
    if not state:
        raise CheckpointError("no LSTM, GRU, SimpleRNN or Bidirectional layer with weights", path)
    return state, options


def _layers(config: dict, h5, path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    layers = (config.get("config") or {}).get("layers") if isinstance(config, dict) else None
    if not isinstance(layers, list):
        raise CheckpointError("config.json lists no layers (only Sequential and Functional models are read)", path)
    seen: dict[str, int] = {}
    state, options = {}, {}
    for layer in layers:
        kind, settings = layer.get("class_name"), layer.get("config") or {}
        group = _snake_case(kind)
        count = seen.get(group, 0)
        seen[group] = count + 1
        group = f"layers/{group}" + (f"_{count}" if count else "")
        if kind not in _GATES and kind != "Bidirectional":
            continue
        name = re.sub(r"[^\w]", "_", str(settings.get("name") or group))
        try:
            if kind == "Bidirectional":
                if settings.get("merge_mode", "concat") != "concat":
                    raise CheckpointError(f"merge_mode {settings.get('merge_mode')!r} is not supported (only concat)")
                inner = settings.get("layer") or {}
                weights, layer_options = _recurrent(inner.get("class_name"), inner.get("config") or {},
                                                 h5, f"{group}/forward_layer", "")
                backward, _ = _recurrent(inner.get("class_name"), inner.get("config") or {},
                                         h5, f"{group}/backward_layer", "_reverse", reversed_ok=True)
                weights.update(backward)
            else:
                weights, layer_options = _recurrent(kind, settings, h5, group, "")
        except CheckpointError as error:
            raise CheckpointError(f"layer {settings.get('name')!r} ({kind}): {error.message}", path) from None
        state.update({f"{name}.{key}": value for key, value in weights.items()})
        options[f"{name}."] = layer_options
    if not state:
        kinds = sorted({str(layer.get("class_name")) for layer in layers})
        raise CheckpointError(f"no LSTM, GRU, SimpleRNN or Bidirectional layer (layers: {', '.join(kinds)})", path)
    return state, options


def _recurrent(kind, settings: dict, h5, group: str, suffix: str, reversed_ok: bool = False):
    if kind not in _GATES:
        raise CheckpointError(f"{kind} is not a recurrent layer mlxseq reads")
    if settings.get("go_backwards") and not reversed_ok:
        raise CheckpointError("go_backwards=True alone has no mlxseq layer (use Bidirectional)")
    options = {"reset_after": False} if kind == "GRU" and not settings.get("reset_after", True) else {}
    activation = settings.get("activation", "tanh")
    if kind == "SimpleRNN" and activation == "relu":
        options["nonlinearity"] = "relu"
    elif activation != "tanh":
        raise CheckpointError(f"activation {activation!r} is not supported (tanh)")
    if kind != "SimpleRNN" and settings.get("recurrent_activation", "sigmoid") != "sigmoid":
        # Keras before 2.3 defaulted to hard_sigmoid: a different function
        raise CheckpointError(f"recurrent_activation {settings.get('recurrent_activation')!r} is not supported (sigmoid)")
    variables = h5.get(f"{group}/cell/vars")
    if variables is None:
        raise CheckpointError(f"no weights at {group}/cell/vars in model.weights.h5")
    arrays = [np.asarray(variables[str(i)], dtype=np.float32) for i in range(len(variables))]
    if len(arrays) not in (2, 3):
        raise CheckpointError(f"expected kernel, recurrent kernel and bias, found {len(arrays)} arrays")
    kernel, recurrent = arrays[0], arrays[1]
    gates, order = _GATES[kind], _TORCH_ORDER[kind]
    hidden = recurrent.shape[0] if recurrent.ndim == 2 else -1
    if kernel.ndim != 2 or recurrent.shape != (hidden, gates * hidden) or kernel.shape[1] != gates * hidden:
        raise CheckpointError(f"kernel {kernel.shape} and recurrent kernel {recurrent.shape} do not fit a {kind}")

    def torch_rows(matrix: np.ndarray) -> np.ndarray:  # (gates * H, ...) in PyTorch's gate order
        blocks = matrix.reshape((gates, hidden) + matrix.shape[1:])
        return np.ascontiguousarray(np.concatenate([blocks[i] for i in order], axis=0))

    weights = {f"weight_ih_l0{suffix}": torch_rows(kernel.T), f"weight_hh_l0{suffix}": torch_rows(recurrent.T)}
    if len(arrays) == 3:
        bias = arrays[2]
        if kind == "GRU" and options.get("reset_after", True):
            if bias.shape != (2, gates * hidden):
                raise CheckpointError(f"GRU bias {bias.shape}: expected (2, {gates * hidden}) (reset_after=True)")
            input_bias, recurrent_bias = bias[0], bias[1]
        elif bias.shape != (gates * hidden,):
            raise CheckpointError(f"bias {bias.shape} does not fit a {kind} of {hidden} units (expected ({gates * hidden},))")
        else:
            input_bias, recurrent_bias = bias, np.zeros_like(bias)
        weights[f"bias_ih_l0{suffix}"] = torch_rows(input_bias)
        weights[f"bias_hh_l0{suffix}"] = torch_rows(recurrent_bias)
    return weights, options


def _snake_case(name) -> str:
    """Keras's group name of a class: ``SimpleRNN`` -> ``simple_rnn``, ``LSTM`` -> ``lstm``."""
    name = re.sub(r"\W+", "", str(name))
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
