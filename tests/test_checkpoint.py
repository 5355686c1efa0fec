"""Model folders: save/load round trip, atomic writes, strict configs, clear errors, Hub cache."""

import json
import re
import os

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

import mlxseq
from mlxseq import checkpoint
from mlxseq.checkpoint import ModelFolderError, save_model
from mlxseq.models.recurrent import ModelArgs, build_model


def _saved_lstm(folder):
    mx.random.seed(0)
    args = ModelArgs(kind="lstm", input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    model = build_model(args)
    save_model(folder, model, "recurrent", args, readme="# test\n")
    return model


def test_round_trip_gives_the_same_outputs(tmp_path):
    model = _saved_lstm(tmp_path / "m")
    loaded = mlxseq.load(tmp_path / "m")
    x = mx.random.normal((2, 5, 3))
    assert mx.array_equal(model(x)[0], loaded(x)[0])
    assert not loaded.training
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model_type"] == "recurrent" and config["format_version"] == 1
    assert sorted(os.listdir(tmp_path / "m")) == ["README.md", "config.json", "model.safetensors"]


def test_failed_save_keeps_the_previous_weights(tmp_path, monkeypatch):
    model = _saved_lstm(tmp_path / "m")
    before = (tmp_path / "m" / "model.safetensors").read_bytes()

    def crash(path, weights):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(mx, "save_safetensors", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_weights(tmp_path / "m" / "model.safetensors", model)
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
    assert sorted(os.listdir(tmp_path / "m")) == ["README.md", "config.json", "model.safetensors"]
    mlxseq.load(tmp_path / "m")


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda f: (f / "config.json").unlink(), "config.json is missing"),
        (lambda f: (f / "model.safetensors").unlink(), "model.safetensors is missing"),
        (lambda f: (f / "config.json").write_text("{"), "not valid JSON"),
        (lambda f: _edit(f, model_type="transformer"), "unknown model_type 'transformer'"),
        (lambda f: _edit(f, hidden_sise=4), "unknown key 'hidden_sise'"),
        (lambda f: _edit(f, format_version=99), "format_version 99 is newer"),
        (lambda f: _edit(f, hidden_size=5), r"weight \w+ has shape .* expects"),
        (lambda f: _edit(f, num_layers=3), "missing"),
        (lambda f: _edit(f, kind="transformer"), "kind must be one of"),
        (lambda f: (f / "model.safetensors").write_bytes(b"garbage"), "not a safetensors file"),
        # Counts and sizes the weights cannot hold are refused before a model is built.
        (lambda f: _edit(f, num_layers=10**6), "num_layers 1000000 needs more tensors than model.safetensors holds"),
        (lambda f: _edit(f, hidden_size=10**9), "hidden_size 1000000000 exceeds the"),
        # Values of the wrong type or range: one line naming the key.
        (lambda f: _edit(f, num_layers="2"), "num_layers must be int, got '2'"),
        (lambda f: _edit(f, bidirectional="yes"), "bidirectional must be bool, got 'yes'"),
        (lambda f: _edit(f, model_type=["recurrent"]), r"model_type must be a string, got \['recurrent'\]"),
        (lambda f: _edit(f, input_size=-3), "input_size must be >= 0, got -3"),
        (lambda f: _edit(f, hidden_size=0), "cannot build the model"),
    ],
)
def test_broken_folders_give_clear_errors(tmp_path, damage, message):
    _saved_lstm(tmp_path / "m")
    damage(tmp_path / "m")
    with pytest.raises(ModelFolderError, match=message):
        mlxseq.load(tmp_path / "m")


def test_token_ids_outside_the_vocabulary_are_refused(tmp_path):
    from mlxseq.models import seq2seq

    args = seq2seq.ModelArgs(12, 12, embed_size=4, hidden_size=4, dropout=0.0)
    save_model(tmp_path / "m", seq2seq.build_model(args), "seq2seq", args)
    _edit(tmp_path / "m", eos_id=12)
    with pytest.raises(ModelFolderError, match=r"eos_id 12 lies outside the vocabulary \(src_vocab_size 12\)"):
        mlxseq.load(tmp_path / "m")


def _edit(folder, **changes):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_missing_path_and_file_instead_of_folder(tmp_path):
    with pytest.raises(ModelFolderError, match="no model folder at"):
        mlxseq.load(str(tmp_path / "nope" / "deeper"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelFolderError, match="is a file"):
        mlxseq.load(tmp_path / "file")


def test_hub_repo_offline_without_cache_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelFolderError, match="could not get 'someone/missing-model' from the Hugging Face Hub") as err:
        mlxseq.load("someone/missing-model")
    assert "\n" not in str(err.value)


def test_hub_repo_from_a_prepared_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--someone--tiny-lstm"
    model = _saved_lstm(repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    loaded = mlxseq.load("someone/tiny-lstm")
    x = mx.random.normal((1, 4, 3))
    np.testing.assert_array_equal(np.array(model(x)[0]), np.array(loaded(x)[0]))


HUB_SCRIPT = """
import sys
import mlxseq
from mlxseq.checkpoint import ModelFolderError
try:
    model = mlxseq.load(sys.argv[1])
    print("loaded", type(model).__name__)
except ModelFolderError as error:
    print("error", error)
"""


def _load_in_subprocess(repo, env):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", HUB_SCRIPT, repo], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_hub_download_through_an_http_stand_in_then_offline_from_cache(tmp_path):
    from tests.support.hub_standin import HubStandIn

    _saved_lstm(tmp_path / "repo")
    (tmp_path / "repo" / "optimizer.bin").write_bytes(b"not part of a model folder")
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "cache"), HF_HUB_DISABLE_PROGRESS_BARS="1")
    env.pop("HF_HUB_OFFLINE", None)
    with HubStandIn({"someone/tiny-lstm": tmp_path / "repo"}) as hub:
        env["HF_ENDPOINT"] = hub.url
        assert _load_in_subprocess("someone/tiny-lstm", env) == "loaded LSTM"
        assert not any("optimizer.bin" in path for path in hub.requests)  # only model-folder files are fetched
        missing = _load_in_subprocess("someone/other", env)
        assert missing.startswith("error could not get 'someone/other' from the Hugging Face Hub")
    # the stand-in is gone: the cache serves the repo offline
    env["HF_HUB_OFFLINE"] = "1"
    assert _load_in_subprocess("someone/tiny-lstm", env) == "loaded LSTM"


def test_upload_publishes_only_model_folder_files(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mlxseq.cli import app

    calls = []

    class FakeApi:
        def create_repo(self, repo_id, private, exist_ok):
            calls.append(("create_repo", repo_id, private, exist_ok))
            return f"https://hub.example/{repo_id}"

        def upload_folder(self, folder_path, repo_id, allow_patterns, commit_message):
            calls.append(("upload_folder", folder_path, repo_id, tuple(allow_patterns), commit_message))

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    _saved_lstm(tmp_path / "m")
    result = CliRunner().invoke(app, ["upload", str(tmp_path / "m"), "someone/tiny-lstm"])
    assert result.exit_code == 0, result.output
    assert calls[0] == ("create_repo", "someone/tiny-lstm", False, True)
    assert calls[1][1:3] == (str(tmp_path / "m"), "someone/tiny-lstm")
    assert set(calls[1][3]) == set(checkpoint.HUB_PATTERNS)
    assert calls[1][4] == "Upload mlxseq recurrent model"

    (tmp_path / "m" / "model.safetensors").unlink()
    result = CliRunner().invoke(app, ["upload", str(tmp_path / "m"), "someone/tiny-lstm"])
    assert result.exit_code == 1 and "model.safetensors is missing" in result.output
    assert len(calls) == 2


def test_a_half_precision_folder_loads_and_computes_in_float32(tmp_path):
    from mlxseq.bundle import bundle_folder

    model = _saved_lstm(tmp_path / "m")
    bundle_folder(tmp_path / "m", tmp_path / "half")
    stored = mx.load(str(tmp_path / "half" / "model.safetensors"))
    assert {v.dtype for v in stored.values()} == {mx.float16}
    assert sorted(os.listdir(tmp_path / "half")) == ["README.md", "config.json", "model.safetensors"]
    full = mx.load(str(tmp_path / "m" / "model.safetensors"))
    assert 2 * sum(v.nbytes for v in stored.values()) == sum(v.nbytes for v in full.values())
    loaded = mlxseq.load(tmp_path / "half")
    params = dict(tree_flatten(loaded.parameters()))
    assert {v.dtype for v in params.values()} == {mx.float32}
    for name, value in tree_flatten(model.parameters()):
        assert mx.array_equal(params[name], value.astype(mx.float16).astype(mx.float32))
    x = mx.random.normal((2, 5, 3))
    assert loaded(x)[0].dtype == mx.float32 and mx.allclose(model(x)[0], loaded(x)[0], atol=1e-2)


@pytest.mark.parametrize("bits", [8, 4])
def test_a_quantized_folder_is_smaller_loads_like_any_folder_and_stays_close(tmp_path, bits):
    from typer.testing import CliRunner

    from mlxseq.cli import app
    from mlxseq.pipelines.translator import BUNDLED_MODEL, Translator

    result = CliRunner().invoke(app, ["quantize", str(BUNDLED_MODEL), str(tmp_path / "q"), "--bits", str(bits)])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "q" / "config.json").read_text())
    assert config["quantization"] == {"bits": bits, "group_size": 64, "recurrent": True}
    size = (tmp_path / "q" / "model.safetensors").stat().st_size
    assert size < (0.65 if bits == 8 else 0.47) * (BUNDLED_MODEL / "model.safetensors").stat().st_size
    for name in ("tokenizer.model", "generation_config.json"):
        assert (tmp_path / "q" / name).is_file()
    assert "## Quantization" in (tmp_path / "q" / "README.md").read_text()
    sentences = ["Ein Mann fährt mit dem Fahrrad.", "Zwei Hunde spielen im Schnee."]
    original = [h[0].text for h in Translator.load(BUNDLED_MODEL).translate(sentences)]
    quantized = [h[0].text for h in Translator.load(tmp_path / "q").translate(sentences)]
    # Close, not equal: a quantized weight may tip one beam choice on another machine's kernels.
    assert all(q.split()[:2] == o.split()[:2] for q, o in zip(quantized, original)), (quantized, original)
    again = CliRunner().invoke(app, ["quantize", str(tmp_path / "q"), str(tmp_path / "qq")])
    assert again.exit_code == 1 and "is quantized already" in again.output


def test_recurrent_matrices_are_stored_quantized_and_load_as_their_dequantized_values(tmp_path):
    from mlxseq.checkpoint import quantize_folder
    from mlxseq.models import language_model

    mx.random.seed(1)
    args = language_model.ModelArgs(vocab_size=40, embed_size=64, hidden_size=128, num_layers=2)
    model = language_model.build_model(args)
    model.eval()
    save_model(tmp_path / "lm", model, "lm", args)
    quantize_folder(tmp_path / "lm", tmp_path / "q", bits=8)
    quantize_folder(tmp_path / "lm", tmp_path / "q-float-rnn", bits=8, recurrent=False)
    stored = mx.load(str(tmp_path / "q" / "model.safetensors"))
    recurrent = [n for n in stored if re.search(r"weight_(ih|hh)_l\d$", n)]
    assert len(recurrent) == 4 and all(stored[n].dtype == mx.uint32 for n in recurrent)
    loaded = dict(tree_flatten(mlxseq.load(tmp_path / "q").parameters()))
    for name in recurrent:  # exactly the quantized values, in float32
        w = dict(tree_flatten(model.parameters()))[name]
        expected = mx.dequantize(*mx.quantize(w, group_size=64, bits=8), group_size=64, bits=8)
        assert loaded[name].dtype == mx.float32 and mx.array_equal(loaded[name], expected), name
        assert float(mx.abs(loaded[name] - w).max()) < 0.01 * float(mx.abs(w).max())
    sizes = {k: (tmp_path / k / "model.safetensors").stat().st_size for k in ("lm", "q", "q-float-rnn")}
    assert sizes["q"] < 0.33 * sizes["lm"] and sizes["q-float-rnn"] > 0.8 * sizes["lm"], sizes
    tokens = mx.array([[3, 7, 11, 5, 2]])
    a, b = model(tokens, None)[0], mlxseq.load(tmp_path / "q")(tokens, None)[0]
    assert float(mx.abs(a - b).max() / mx.abs(a).max()) < 0.02
    # a folder missing a quantized matrix's scales is named, not loaded
    del stored[recurrent[0] + ".scales"]
    mx.save_safetensors(str(tmp_path / "q" / "model.safetensors"), stored)
    with pytest.raises(ModelFolderError, match=re.escape(recurrent[0])):
        mlxseq.load(tmp_path / "q")


def test_a_quantized_folder_can_keep_its_recurrent_matrices_quantized(tmp_path, monkeypatch):
    from mlxseq.checkpoint import quantize_folder
    from mlxseq.layers.quantized import QuantizedMatrix
    from mlxseq.models import language_model

    mx.random.seed(2)
    args = language_model.ModelArgs(vocab_size=40, embed_size=64, hidden_size=128, num_layers=2)
    save_model(tmp_path / "lm", language_model.build_model(args), "lm", args)
    quantize_folder(tmp_path / "lm", tmp_path / "q", bits=4)
    tokens = mx.array([[3, 7, 11, 5, 2], [9, 9, 1, 0, 4]])
    monkeypatch.setenv("MLXSEQ_QUANTIZED_RECURRENCE", "0")  # the CPU's default: float matrices
    dequantized = mlxseq.load(tmp_path / "q")
    monkeypatch.setenv("MLXSEQ_QUANTIZED_RECURRENCE", "1")  # a GPU's default: mx.quantized_matmul per step
    kept = mlxseq.load(tmp_path / "q")
    assert isinstance(kept.rnn.weight_hh_l1, QuantizedMatrix) and kept.rnn.weight_hh_l1.bits == 4
    assert not any("weight_hh" in name for name, _ in tree_flatten(kept.parameters()))
    a, b = dequantized(tokens, None)[0], kept(tokens, None)[0]
    assert mx.allclose(a, b, atol=1e-4), float(mx.abs(a - b).max())
    monkeypatch.setenv("MLXSEQ_QUANTIZED_RECURRENCE", "yes")
    with pytest.raises(ValueError, match="MLXSEQ_QUANTIZED_RECURRENCE must be 0 or 1"):
        mlxseq.load(tmp_path / "q")


def test_quantization_settings_are_checked(tmp_path):
    from mlxseq.checkpoint import quantize_folder

    _saved_lstm(tmp_path / "m")
    with pytest.raises(ModelFolderError, match="bits must be 4 or 8"):
        quantize_folder(tmp_path / "m", tmp_path / "q", bits=3)
    before = (tmp_path / "m" / "model.safetensors").read_bytes()
    with pytest.raises(ModelFolderError, match="must be another folder than the source"):
        quantize_folder(tmp_path / "m", tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
    _edit(tmp_path / "m", quantization={"bits": 2, "group_size": 64})
    with pytest.raises(ModelFolderError, match="quantization bits 2 / group_size 64"):
        mlxseq.load(tmp_path / "m")


def test_a_language_model_with_tied_embeddings_quantizes(tmp_path):
    from mlxseq.checkpoint import quantize_folder
    from mlxseq.models import language_model

    mx.random.seed(0)
    args = language_model.ModelArgs(vocab_size=40, embed_size=64, hidden_size=64, num_layers=1, tie_embeddings=True)
    model = language_model.build_model(args)
    model.eval()
    save_model(tmp_path / "lm", model, "lm", args)
    quantize_folder(tmp_path / "lm", tmp_path / "q", bits=8)
    tokens = mx.array([[3, 7, 11, 5, 2]])
    a, b = model(tokens, None)[0], mlxseq.load(tmp_path / "q")(tokens, None)[0]
    assert float(mx.abs(a - b).max() / mx.abs(a).max()) < 0.02
