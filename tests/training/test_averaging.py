"""Checkpoint averaging (mlxseq/training/averaging.py and `mlxseq average`): the mean, its dtype, the folder, errors."""

import json

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten
from typer.testing import CliRunner

import mlxseq
from mlxseq.training.averaging import average_folders
from mlxseq.bundle import bundle_folder
from mlxseq.checkpoint import ModelFolderError, save_model
from mlxseq.cli import app
from mlxseq.models.recurrent import ModelArgs, build_model


def _saved_gru(folder, seed, hidden_size=4):
    mx.random.seed(seed)
    args = ModelArgs(kind="gru", input_size=3, hidden_size=hidden_size, num_layers=2, bidirectional=True)
    model = build_model(args)
    save_model(folder, model, "recurrent", args, readme=f"# checkpoint {seed}\n")
    (folder / "tokenizer.model").write_bytes(b"tokenizer of the run")
    return dict(tree_flatten(model.parameters()))


@pytest.fixture
def three(tmp_path):
    folders = [tmp_path / f"step-{i}" for i in range(3)]
    weights = [_saved_gru(folder, seed) for seed, folder in enumerate(folders)]
    return folders, weights


def test_the_average_is_the_element_wise_mean_and_loads(three, tmp_path):
    folders, weights = three
    out = average_folders(folders, tmp_path / "averaged")
    loaded = mlxseq.load(out)
    got = dict(tree_flatten(loaded.parameters()))
    assert got.keys() == weights[0].keys()
    for key in got:
        expected = np.mean([np.array(w[key]) for w in weights], axis=0)
        np.testing.assert_allclose(np.array(got[key]), expected, rtol=1e-6, atol=1e-7, err_msg=key)
    assert (out / "tokenizer.model").read_bytes() == b"tokenizer of the run"
    card = (out / "README.md").read_text()
    assert card.startswith("# checkpoint 0") and "mean of the 3 model folders" in card and str(folders[2]) in card
    assert json.loads((out / "config.json").read_text()) == json.loads((folders[0] / "config.json").read_text())


def test_one_folder_averages_to_itself(three, tmp_path):
    folders, weights = three
    out = average_folders(folders[:1], tmp_path / "same")
    stored = mx.load(str(out / "model.safetensors"))
    for key, value in weights[0].items():
        assert mx.array_equal(stored[key], value).item(), key


def test_half_precision_folders_are_summed_in_float32_and_stay_half(three, tmp_path):
    folders, weights = three
    halves = [bundle_folder(folder, tmp_path / f"half-{i}") for i, folder in enumerate(folders)]
    out = average_folders(halves, tmp_path / "averaged")
    stored = mx.load(str(out / "model.safetensors"))
    for key, value in stored.items():
        assert value.dtype == mx.float16, key
        halves_mean = np.mean([np.array(w[key].astype(mx.float16).astype(mx.float32)) for w in weights], axis=0)
        np.testing.assert_allclose(np.array(value.astype(mx.float32)), halves_mean, rtol=1e-3, atol=1e-3, err_msg=key)


def test_folders_of_different_models_are_refused_by_key(three, tmp_path):
    folders, _ = three
    _saved_gru(tmp_path / "wider", 5, hidden_size=6)
    with pytest.raises(ModelFolderError, match=r"not the same model as .*step-0: config.json key 'hidden_size' is 6"):
        average_folders([folders[0], tmp_path / "wider"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_parameter_of_another_shape_is_named(three, tmp_path):
    folders, _ = three
    path = folders[1] / "model.safetensors"
    weights = mx.load(str(path))
    key = sorted(weights)[0]
    weights[key] = mx.zeros((7,))
    mx.save_safetensors(str(path), weights)
    with pytest.raises(ModelFolderError, match=rf"parameter '{key}' has shape \(7,\), expected"):
        average_folders(folders, tmp_path / "out")


def test_missing_folders_and_an_output_among_the_inputs_are_refused(three, tmp_path):
    folders, _ = three
    with pytest.raises(ModelFolderError, match="nothing to average"):
        average_folders([], tmp_path / "out")
    with pytest.raises(ModelFolderError, match="nope is not a model folder: it needs config.json"):
        average_folders([folders[0], tmp_path / "nope"], tmp_path / "out")
    with pytest.raises(ModelFolderError, match="is also an input"):
        average_folders(folders, folders[1])


def test_cli_average(three, tmp_path):
    folders, weights = three
    runner = CliRunner()
    result = runner.invoke(app, ["average", *map(str, folders), "--output", str(tmp_path / "avg")])
    assert result.exit_code == 0, result.output
    assert "averaged 3 model folders into" in result.output
    stored = mx.load(str(tmp_path / "avg" / "model.safetensors"))
    key = sorted(stored)[0]
    np.testing.assert_allclose(np.array(stored[key]), np.mean([np.array(w[key]) for w in weights], axis=0), rtol=1e-6)
    result = runner.invoke(app, ["average", str(folders[0]), str(tmp_path / "nope"), "-o", str(tmp_path / "x")])
    assert result.exit_code == 1 and "error:" in result.output and "is not a model folder" in result.output
