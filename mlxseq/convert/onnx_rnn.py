"""ONNX ``LSTM``, ``GRU`` and ``RNN`` nodes as PyTorch-named weights (``pip install "mlxseq[onnx]"``).

ONNX stores a recurrent node's weights as initializers ``W`` ``(dirs, gates * H, D)``,
``R`` ``(dirs, gates * H, H)`` and ``B`` ``(dirs, 2 * gates * H)`` (input then recurrent
biases), in its own gate orders: LSTM ``i, o, f, c``, GRU ``z, r, h``. PyTorch's are
``i, f, g, o`` and ``r, z, n``. :func:`read_onnx_recurrent` reorders them into a flat state
dict ``{"<node>.weight_ih_l0": ..., "<node>.weight_hh_l0_reverse": ...}`` that the torch-rnn
conversion reads like any checkpoint, one layer per node (an exported stack is one node per
layer: choose with ``--prefix``).

A GRU with ``linear_before_reset=0`` (the reset gate applied before the recurrent matmul,
Cho et al. 2014) becomes ``mlxseq.GRU(..., reset_after=False)``, an LSTM with peepholes ``P``
``(dirs, 3H)`` in ONNX's order ``i, o, f`` becomes ``mlxseq.LSTM(..., peephole=True)`` with
``weight_ph_l0`` in mlxseq's order ``i, f, o``. What mlxseq computes differently is refused by
name: ``clip``, ``input_forget``, activations other than the defaults (an RNN's ``Relu`` is
read as ``nonlinearity: relu``), and a ``reverse``-only node. The ONNX file is read with the
``onnx`` package; nothing in it is executed, and external data must stay inside the model's
folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import CheckpointError

# ONNX gate blocks, in PyTorch's order.
_TORCH_ORDER = {"LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2), "RNN": (0,)}
_DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}


def read_onnx_recurrent(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``(state dict, layer options by prefix)`` of every LSTM/GRU/RNN node of an ONNX model.

    The options are what the weights cannot tell: ``{"nonlinearity": "relu"}``, ``{"reset_after": False}``."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise CheckpointError('reading ONNX files needs the onnx package: pip install "mlxseq[onnx]"') from None
    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # a corrupt protobuf surfaces as several exception types
        raise CheckpointError(f"not a readable ONNX model ({type(error).__name__}: {str(error)[:200]})", str(path)) from None
    _check_external_data(model, path)
    try:
        onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
    except Exception as error:
        raise CheckpointError(f"cannot read the model's external data ({str(error)[:200]})", str(path)) from None
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    nodes = [node for node in model.graph.node if node.op_type in _TORCH_ORDER]
    if not nodes:
        ops = sorted({node.op_type for node in model.graph.node})
        raise CheckpointError(f"no LSTM, GRU or RNN node in the ONNX graph (its ops: {', '.join(ops[:20])})", str(path))
    layers = []
    for index, node in enumerate(nodes):
        name = (node.name or f"{node.op_type.lower()}_{index}").replace(".", "_").strip("/") or f"node_{index}"
        try:
            weights, layer_options = _node_weights(node, initializers, numpy_helper)
        except CheckpointError as error:
            raise CheckpointError(f"node {node.name or index!r} ({node.op_type}): {error}", str(path)) from None
        layers.append((name, node.op_type, weights, layer_options))
    state, options = {}, {}
    if _is_one_stack(layers):  # torch.onnx.export writes a num_layers stack as one node per layer
        name = layers[0][0]
        for k, (_, _, weights, _) in enumerate(layers):
            state.update({f"{name}.{key.replace('_l0', f'_l{k}')}": value for key, value in weights.items()})
        options[f"{name}."] = layers[0][3]
        return state, options
    for name, _, weights, layer_options in layers:
        state.update({f"{name}.{key}": value for key, value in weights.items()})
        options[f"{name}."] = layer_options
    return state, options


def _is_one_stack(layers) -> bool:
    """Several nodes of one kind, size, direction and activation, each reading the one before's output."""
    if len(layers) < 2:
        return False
    first = layers[0]
    hidden = first[2]["weight_hh_l0"].shape[1]
    directions = 2 if "weight_ih_l0_reverse" in first[2] else 1
    for name, kind, weights, activation in layers[1:]:
        if (kind, activation, "weight_ih_l0_reverse" in weights, "bias_ih_l0" in weights) != \
                (first[1], first[3], directions == 2, "bias_ih_l0" in first[2]):
            return False
        if weights["weight_hh_l0"].shape[1] != hidden or weights["weight_ih_l0"].shape[1] != directions * hidden:
            return False
    return True


def _check_external_data(model, path: Path) -> None:
    folder = path.parent.resolve()
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                target = (folder / entry.value).resolve()
                if folder != target and folder not in target.parents:
                    raise CheckpointError(
                        f"initializer {tensor.name!r} points outside the model's folder ({entry.value!r}): refused",
                        str(path))


def _attributes(node) -> dict:
    from onnx import helper

    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


def _node_weights(node, initializers, numpy_helper) -> tuple[dict[str, np.ndarray], str]:
    kind = node.op_type
    attributes = _attributes(node)
    direction = attributes.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction not in ("forward", "bidirectional"):
        raise CheckpointError(f"direction {direction!r} alone has no mlxseq layer (forward or bidirectional only)")
    if attributes.get("clip") is not None:
        raise CheckpointError("clip is not supported (mlxseq's cells do not clip their pre-activations)")
    if attributes.get("input_forget", 0):
        raise CheckpointError("input_forget=1 (coupled input and forget gates) is not supported")
    options = {"reset_after": False} if kind == "GRU" and attributes.get("linear_before_reset", 0) != 1 else {}
    directions = 2 if direction == "bidirectional" else 1
    activations = [a.decode() if isinstance(a, bytes) else a for a in attributes.get("activations", [])]
    default = _DEFAULT_ACTIVATIONS[kind] * directions
    if activations and activations != default:
        if kind == "RNN" and activations == ["Relu"] * directions:
            options["nonlinearity"] = "relu"
        else:
            raise CheckpointError(f"activations {activations} are not supported (only {default})")
    inputs = list(node.input) + [""] * 8
    arrays = {}
    for slot, name in (("W", inputs[1]), ("R", inputs[2]), ("B", inputs[3]), ("P", inputs[7] if kind == "LSTM" else "")):
        if not name:
            continue
        if name not in initializers:
            raise CheckpointError(f"{slot} ({name!r}) is computed in the graph, not stored: it cannot be read")
        arrays[slot] = numpy_helper.to_array(initializers[name]).astype(np.float32)
    if "W" not in arrays or "R" not in arrays:
        raise CheckpointError("W and R must be stored weights")
    order = _TORCH_ORDER[kind]
    gates = len(order)
    W, R = arrays["W"], arrays["R"]
    if W.ndim != 3 or R.ndim != 3 or W.shape[0] != directions or R.shape[:2] != W.shape[:2] \
            or W.shape[1] % gates or R.shape[2] * gates != R.shape[1]:
        raise CheckpointError(f"W {W.shape} and R {R.shape} do not fit a {direction} {kind}")
    hidden = R.shape[2]
    if "hidden_size" in attributes and attributes["hidden_size"] != hidden:
        raise CheckpointError(f"hidden_size {attributes['hidden_size']} does not match R {R.shape}")

    def torch_rows(matrix: np.ndarray) -> np.ndarray:
        blocks = matrix.reshape((gates, hidden) + matrix.shape[1:])
        return np.concatenate([blocks[i] for i in order], axis=0)

    weights = {}
    for d, suffix in enumerate(["", "_reverse"][:directions]):
        weights[f"weight_ih_l0{suffix}"] = torch_rows(W[d])
        weights[f"weight_hh_l0{suffix}"] = torch_rows(R[d])
        if "B" in arrays:
            bias = arrays["B"]
            if bias.shape != (directions, 2 * gates * hidden):
                raise CheckpointError(f"B {bias.shape} does not fit W {W.shape}")
            weights[f"bias_ih_l0{suffix}"] = torch_rows(bias[d, : gates * hidden])
            weights[f"bias_hh_l0{suffix}"] = torch_rows(bias[d, gates * hidden:])
        if "P" in arrays:
            peepholes = arrays["P"]
            if peepholes.shape != (directions, 3 * hidden):
                raise CheckpointError(f"P {peepholes.shape} does not fit W {W.shape} (expected ({directions}, {3 * hidden}))")
            p_i, p_o, p_f = np.split(peepholes[d], 3)  # ONNX's order
            weights[f"weight_ph_l0{suffix}"] = np.concatenate([p_i, p_f, p_o])
    return weights, options
