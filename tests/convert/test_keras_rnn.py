"""Keras 3 models saved by Keras itself (.keras): each recurrent layer converted and compared with Keras."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest
from typer.testing import CliRunner

import mlxseq
from mlxseq.cli import app

pytest.importorskip("h5py", reason='Keras import is an optional extra: pip install "mlxseq[keras]"')
if importlib.util.find_spec("keras") is None:  # not imported here: Keras picks its backend at import
    pytest.skip("Keras makes the files and the reference outputs: pip install keras", allow_module_level=True)

# Keras runs in its own process (its backend is chosen at import: torch, the one installed).
MAKE = """
import sys
import numpy as np
import keras

folder = sys.argv[1]
keras.utils.set_random_seed(0)
inputs = keras.Input((6, 3))
layers = {
    "bi": keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True), name="bi"),
    "gru": keras.layers.GRU(4, return_sequences=True, name="gru"),
    "srnn": keras.layers.SimpleRNN(5, return_sequences=True, activation="relu", name="srnn"),
    "plain": keras.layers.LSTM(3, return_sequences=True, use_bias=False, name="plain"),
    "cho": keras.layers.Bidirectional(keras.layers.GRU(4, reset_after=False, return_sequences=True), name="cho"),
    "cho_plain": keras.layers.GRU(3, reset_after=False, use_bias=False, return_sequences=True, name="cho_plain"),
}
x = inputs
outputs = {}
for name, layer in layers.items():
    x = layer(x)
    outputs[name] = x
model = keras.Model(inputs, x)
model.save(f"{folder}/model.keras")
data = np.random.default_rng(1).standard_normal((2, 6, 3)).astype("float32")
results = {"x": data}
seen = data
for name in layers:  # each layer's own output on its own input
    results[f"{name}_in"] = seen
    seen = keras.ops.convert_to_numpy(keras.Model(inputs, outputs[name])(data))
    results[name] = seen
np.savez(f"{folder}/reference.npz", **results)
"""


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keras")
    env = dict(os.environ, KERAS_BACKEND="torch")
    done = subprocess.run([sys.executable, "-c", MAKE, str(folder)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder, dict(np.load(folder / "reference.npz"))


LAYERS = ["bi", "gru", "srnn", "plain", "cho", "cho_plain"]


@pytest.mark.parametrize("name", LAYERS)
def test_each_keras_layer_converts_to_keras_outputs(saved, tmp_path, name):
    folder, reference = saved
    result = CliRunner().invoke(app, ["convert", str(folder / "model.keras"), str(tmp_path / name), "--prefix", f"{name}."])
    assert result.exit_code == 0, result.output
    model = mlxseq.load(tmp_path / name)
    got = model(mx.array(reference[f"{name}_in"]))[0]
    np.testing.assert_allclose(np.array(got), reference[name], atol=1e-5)


def test_the_original_gru_becomes_a_gru_with_the_reset_gate_before_its_product(saved, tmp_path):
    folder, _ = saved
    result = CliRunner().invoke(app, ["convert", str(folder / "model.keras"), str(tmp_path / "out"), "--prefix", "cho."])
    assert result.exit_code == 0, result.output
    assert "bidirectional=True, proj_size=0, reset_after=False)" in result.output
    layer = mlxseq.load(tmp_path / "out")
    assert isinstance(layer, mlxseq.GRU) and layer.reset_after is False


def _keras2_h5(keras_file, out):
    """A Keras 2 (TensorFlow 2 era) .h5 holding the arrays of a Keras 3 file: model_config, and per layer
    its arrays under the names Keras 2 gave them, listed in the weight_names attribute."""
    import json
    import zipfile

    import h5py

    with zipfile.ZipFile(keras_file) as archive:
        config = json.loads(archive.read("config.json"))
        archive.extract("model.weights.h5", out.parent)
    cells = {"LSTM": "lstm_cell", "GRU": "gru_cell", "SimpleRNN": "simple_rnn_cell"}
    with h5py.File(out.parent / "model.weights.h5", "r") as source, h5py.File(out, "w") as target:
        target.attrs["model_config"] = json.dumps(config).encode()
        target.attrs["keras_version"] = b"2.15.0"
        weights = target.create_group("model_weights")
        groups = {"Bidirectional": "layers/bidirectional", "GRU": "layers/gru", "SimpleRNN": "layers/simple_rnn",
                  "LSTM": "layers/lstm"}
        seen = {}
        for layer in config["config"]["layers"]:
            kind, name = layer["class_name"], layer["config"]["name"]
            if kind not in groups:
                continue
            count = seen[kind] = seen.get(kind, -1) + 1
            group_path = groups[kind] + (f"_{count}" if count else "")
            sources = ([f"{group_path}/forward_layer", f"{group_path}/backward_layer"] if kind == "Bidirectional"
                       else [group_path])
            inner = layer["config"]["layer"]["class_name"] if kind == "Bidirectional" else kind
            group, names = weights.create_group(name), []
            for direction, src in zip(("forward_", "backward_"), sources):
                prefix = f"{name}/{direction + inner.lower() if kind == 'Bidirectional' else ''}"
                for i, var in enumerate(("kernel", "recurrent_kernel", "bias")):
                    if str(i) in source[f"{src}/cell/vars"]:
                        path = f"{prefix.rstrip('/')}/{cells[inner]}/{var}:0"
                        group.create_dataset(path, data=source[f"{src}/cell/vars/{i}"][()])
                        names.append(path.encode())
            group.attrs["weight_names"] = names
    return out


@pytest.mark.parametrize("name", LAYERS)
def test_a_keras_2_h5_file_converts_to_the_same_outputs(saved, tmp_path, name):
    folder, reference = saved
    h5 = _keras2_h5(folder / "model.keras", tmp_path / "model.h5")
    result = CliRunner().invoke(app, ["convert", str(h5), str(tmp_path / name), "--prefix", f"{name}."])
    assert result.exit_code == 0, result.output
    got = mlxseq.load(tmp_path / name)(mx.array(reference[f"{name}_in"]))[0]
    np.testing.assert_allclose(np.array(got), reference[name], atol=1e-5)


def test_a_weights_only_h5_is_named(tmp_path):
    import h5py

    with h5py.File(tmp_path / "w.h5", "w") as out:
        out.create_dataset("dense/kernel:0", data=np.zeros((2, 2)))
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "w.h5"), str(tmp_path / "out")])
    assert result.exit_code == 1 and "no model_config attribute: not a Keras 2 .h5 model" in result.output
