"""ONNX LSTM/GRU/RNN nodes, built with onnx.helper and run by onnxruntime, converted and compared."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from typer.testing import CliRunner

import mlxseq
from mlxseq.cli import app

onnx = pytest.importorskip("onnx", reason='ONNX import is an optional extra: pip install "mlxseq[onnx]"')
ort = pytest.importorskip("onnxruntime", reason="onnxruntime runs the reference")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

T, B, D, H = 6, 2, 3, 4
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def build(path, kind, direction="forward", bias=True, peepholes=False, **attributes):
    """A one-node model Y = KIND(X) with random stored weights, saved to ``path``; returns it."""
    rng = np.random.default_rng(0)
    dirs = 2 if direction == "bidirectional" else 1
    g = GATES[kind]
    inits = [numpy_helper.from_array((rng.standard_normal((dirs, g * H, D)) * 0.5).astype(np.float32), "W"),
             numpy_helper.from_array((rng.standard_normal((dirs, g * H, H)) * 0.5).astype(np.float32), "R")]
    inputs = ["X", "W", "R"]
    if bias:
        inits.append(numpy_helper.from_array((rng.standard_normal((dirs, 2 * g * H)) * 0.5).astype(np.float32), "B"))
        inputs.append("B")
    if peepholes:  # P (dirs, 3H) is input 7, after sequence_lens, initial_h and initial_c
        inits.append(numpy_helper.from_array((rng.standard_normal((dirs, 3 * H)) * 0.5).astype(np.float32), "P"))
        inputs = (inputs + [""] * 7)[:7] + ["P"]
    node = helper.make_node(kind, inputs, ["Y"], name="rnn", hidden_size=H, direction=direction, **attributes)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, D])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.save(model, str(path))
    return path


def reference(path, x):
    """onnxruntime's Y (T, dirs, B, H) as mlxseq's batch-first output (B, T, dirs * H)."""
    y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]
    return y.transpose(2, 0, 1, 3).reshape(B, T, -1)


@pytest.mark.parametrize("kind, options", [
    ("LSTM", dict(direction="bidirectional")),
    ("LSTM", dict(bias=False)),
    ("GRU", dict(direction="bidirectional", linear_before_reset=1)),
    ("GRU", dict(direction="bidirectional", linear_before_reset=0)),
    ("GRU", dict(linear_before_reset=0, bias=False)),
    ("LSTM", dict(direction="bidirectional", peepholes=True)),
    ("LSTM", dict(peepholes=True, bias=False)),
    ("RNN", dict()),
    ("RNN", dict(direction="bidirectional", activations=["Relu", "Relu"])),
])
def test_a_converted_onnx_node_gives_onnxruntimes_outputs(tmp_path, kind, options):
    path = build(tmp_path / "model.onnx", kind, **options)
    result = CliRunner().invoke(app, ["convert", str(path), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    x = np.random.default_rng(1).standard_normal((T, B, D)).astype(np.float32)
    model = mlxseq.load(tmp_path / "out")
    np.testing.assert_allclose(np.array(model(mx.array(x.transpose(1, 0, 2)))[0]), reference(path, x), atol=1e-5)


@pytest.mark.parametrize("kind, options, message", [
    ("LSTM", dict(direction="reverse"), "direction 'reverse' alone has no mlxseq layer"),
    ("LSTM", dict(clip=3.0), "clip is not supported"),
    ("LSTM", dict(activations=["Sigmoid", "Relu", "Tanh"]), "activations ['Sigmoid', 'Relu', 'Tanh'] are not supported"),
])
def test_what_mlxseq_computes_differently_is_refused_by_name(tmp_path, kind, options, message):
    path = build(tmp_path / "model.onnx", kind, **options)
    result = CliRunner().invoke(app, ["convert", str(path), str(tmp_path / "out")])
    assert result.exit_code == 1 and message in result.output and "node 'rnn'" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_external_data_outside_the_models_folder_is_refused(tmp_path):
    path = build(tmp_path / "model.onnx", "LSTM")
    model = onnx.load(str(path))
    for tensor in model.graph.initializer:
        tensor.data_location = TensorProto.EXTERNAL
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", "../../etc/passwd"
        tensor.ClearField("raw_data")
    onnx.save(model, str(tmp_path / "escape.onnx"))
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "escape.onnx"), str(tmp_path / "out")])
    assert result.exit_code == 1 and "points outside the model's folder ('../../etc/passwd'): refused" in result.output


def test_a_truncated_onnx_file_is_one_line(tmp_path):
    path = build(tmp_path / "model.onnx", "GRU", linear_before_reset=1)
    (tmp_path / "cut.onnx").write_bytes(path.read_bytes()[:100])
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "cut.onnx"), str(tmp_path / "out")])
    assert result.exit_code == 1 and result.output.startswith(f"error: {tmp_path / 'cut.onnx'}: ")
    assert len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.parametrize("layer", ["lstm", "gru", "rnn_relu"])
def test_a_stack_exported_by_torch_onnx_export_converts_to_one_layer_with_torchs_outputs(tmp_path, layer):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = {"lstm": lambda: torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True),
              "gru": lambda: torch.nn.GRU(3, 5, num_layers=2),
              "rnn_relu": lambda: torch.nn.RNN(3, 5, num_layers=3, nonlinearity="relu")}[layer]().eval()
    x = torch.randn(7, 2, 3)
    torch.onnx.export(module, (x,), str(tmp_path / "model.onnx"), dynamo=False)
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "model.onnx"), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    expected = module(x)[0].detach().numpy().transpose(1, 0, 2)
    got = mlxseq.load(tmp_path / "out")(mx.array(x.numpy().transpose(1, 0, 2)))[0]
    np.testing.assert_allclose(np.array(got), expected, atol=1e-5)
