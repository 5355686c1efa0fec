"""Tests of mlxseq/config/ (schema and strict reading): loading with file:line:key errors, overrides, versions, model args."""

import json
from pathlib import Path

import pytest
import yaml

from mlxseq.config import schema as config_module
from mlxseq.config import ConfigError, config_from_dict, dump_config, load_config, parse_override
from mlxseq.tasks import TASKS

REPO = Path(__file__).resolve().parents[2]

BASE = """\
version: 1
task: translation
output_dir: runs/test
model:
  model_type: seq2seq
  hidden_size: 64
data:
  train_src: train.de
  train_tgt: train.en
  valid_src: valid.de
  valid_tgt: valid.en
  sentencepiece:
    vocab_size: 500
training:
  lr: 1e-3
  max_steps: 10
"""


def write(tmp_path, text=BASE, name="config.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path, overrides=()):
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    return str(caught.value)


def test_a_valid_file_loads_with_defaults_for_what_it_leaves_out(tmp_path):
    config = load_config(write(tmp_path))
    assert config.task == "translation" and config.output_dir == "runs/test"
    assert config.model.model_type == "seq2seq" and config.model.args == {"hidden_size": 64}
    assert config.data.sentencepiece.vocab_size == 500 and config.data.sentencepiece.model_type == "bpe"
    assert config.training.lr == 0.001  # PyYAML reads 1e-3 as a string; a float field takes it
    assert config.training.max_steps == 10 and config.training.optimizer == "adam"
    assert config.validation.decode == "greedy"
    assert config.source == str(tmp_path / "config.yaml")


def test_an_unknown_nested_key_names_file_line_and_dotted_key(tmp_path):
    path = write(tmp_path, BASE.replace("    vocab_size: 500", "    vocab_size: 500\n    vocab_sise: 400"))
    assert error_of(path) == f"{path}:14: data.sentencepiece.vocab_sise: unknown key; did you mean 'vocab_size'?"
    path = write(tmp_path, BASE + "  warmup: 100\n")
    assert error_of(path).startswith(f"{path}:17: training.warmup: unknown key")
    path = write(tmp_path, BASE + "trainer: {}\n")
    assert error_of(path) == f"{path}:17: trainer: unknown key; did you mean 'training'?"


def test_wrong_types_are_named(tmp_path):
    path = write(tmp_path, BASE.replace("max_steps: 10", "max_steps: ten"))
    assert error_of(path) == f"{path}:16: training.max_steps: expected an integer, got str 'ten'"
    path = write(tmp_path, BASE.replace("max_steps: 10", "max_steps: true"))
    assert error_of(path).endswith("training.max_steps: expected an integer, got bool True")
    path = write(tmp_path, BASE.replace("lr: 1e-3", "lr: fast"))
    assert error_of(path).endswith("training.lr: expected a number, got str 'fast'")
    path = write(tmp_path, BASE + "  optimizer: sgd\n")
    assert error_of(path).endswith("training.optimizer: must be one of 'adam', 'adamw', got str 'sgd'")
    path = write(tmp_path, BASE + "  betas: [0.9]\n")
    assert error_of(path).endswith("training.betas: expected a list of 2 values, got 1")
    path = write(tmp_path, BASE.replace("  sentencepiece:\n    vocab_size: 500\n", "  sentencepiece: 500\n"))
    assert "data.sentencepiece: expected a section of SentencePieceConfig settings (a mapping), got int 500" in error_of(path)


def test_missing_required_keys_and_section_checks(tmp_path):
    path = write(tmp_path, BASE.replace("  valid_tgt: valid.en\n", ""))
    assert error_of(path) == f"{path}:7: data.valid_tgt: missing (required)"
    path = write(tmp_path, BASE.replace("max_steps: 10", "max_steps: 0"))
    assert error_of(path) == f"{path}:14: training: set max_steps or max_epochs (or both): training needs an end"
    path = write(tmp_path, BASE + "  batch_tokens: 64\n")  # shorter than one pair of max_length=100
    assert "training.batch_tokens: 64 cannot hold one pair of data.max_length=100 tokens" in error_of(path)


def test_model_args_are_checked_against_the_model_type(tmp_path):
    path = write(tmp_path, BASE.replace("hidden_size: 64", "hiden_size: 64"))
    assert error_of(path) == f"{path}:6: model.hiden_size: unknown key for model_type 'seq2seq'; did you mean 'hidden_size'?"
    path = write(tmp_path, BASE.replace("hidden_size: 64", "hidden_size: 63"))
    assert error_of(path) == f"{path}:4: model: a bidirectional encoder needs an even hidden_size, got 63"
    path = write(tmp_path, BASE.replace("hidden_size: 64", "rnn_type: 3"))
    assert error_of(path).endswith("model.rnn_type: expected a string, got int 3")
    path = write(tmp_path, BASE.replace("hidden_size: 64", "src_vocab_size: 100"))
    assert "model.src_vocab_size: set by the task from the source tokenizer" in error_of(path)
    path = write(tmp_path, BASE.replace("model_type: seq2seq", "model_type: recurrent"))
    assert error_of(path) == f"{path}:5: model.model_type: task 'translation' trains seq2seq, not 'recurrent'"


def test_overrides_follow_yaml_scalar_rules(tmp_path):
    assert parse_override("training.lr=2e-3") == (["training", "lr"], "2e-3")  # YAML 1.1; float fields take it
    assert parse_override("data.joint_vocab=false") == (["data", "joint_vocab"], False)
    assert parse_override("training.betas=[0.9, 0.98]") == (["training", "betas"], [0.9, 0.98])
    assert parse_override("output_dir=runs/a=b") == (["output_dir"], "runs/a=b")
    assert parse_override("model.attention='none'") == (["model", "attention"], "none")
    config = load_config(write(tmp_path), [
        "training.lr=2e-3", "training.max_steps=5", "data.sentencepiece.model_type=unigram",
        "validation.decode=beam", "training.betas=[0.9, 0.98]", "model.dropout=0",
    ])
    assert (config.training.lr, config.training.max_steps, config.training.betas) == (0.002, 5, (0.9, 0.98))
    assert config.data.sentencepiece.model_type == "unigram" and config.validation.decode == "beam"
    assert config.model.args == {"hidden_size": 64, "dropout": 0.0}


def test_override_errors_name_the_override(tmp_path):
    path = write(tmp_path)
    assert error_of(path, ["training.lrr=1"]) == "--set training.lrr=1: training.lrr: unknown key; did you mean 'lr'?"
    assert error_of(path, ["training.max_steps=1.5"]) == (
        "--set training.max_steps=1.5: training.max_steps: expected an integer, got float 1.5"
    )
    assert error_of(path, ["training.lr.peak=1"]) == "--set training.lr.peak=1: training.lr.peak: training.lr is a value, not a section"
    assert error_of(path, ["lr"]) == "--set lr: expected key.sub=value, e.g. training.lr=0.001"


def test_versions(tmp_path, monkeypatch):
    path = write(tmp_path, BASE.replace("version: 1\n", ""))
    assert error_of(path) == f"{path}: version: missing: the config format version (this mlxseq writes 1)"
    path = write(tmp_path, BASE.replace("version: 1", "version: 7"))
    assert error_of(path) == f"{path}:1: version: format version 7 is newer than this mlxseq reads (up to 1); upgrade mlxseq"
    path = write(tmp_path, BASE.replace("version: 1", "version: '1'"))
    assert error_of(path).endswith("version: expected an integer format version, got str '1'")
    # A future format 2 renamed training.lr to training.learning_rate: version-1 files keep loading.
    monkeypatch.setattr(config_module, "CONFIG_VERSION", 2)
    monkeypatch.setattr(config_module, "MIGRATIONS", {1: lambda raw: {**raw, "output_dir": raw["output_dir"] + "-v2"}})
    config = load_config(write(tmp_path))
    assert (config.version, config.output_dir) == (2, "runs/test-v2")
    path = write(tmp_path, BASE.replace("version: 1", "version: 0"))
    assert error_of(path).endswith("version: format version 0 is not supported (oldest readable: 1)")


def test_duplicate_keys_and_bad_yaml_are_errors_with_lines(tmp_path):
    path = write(tmp_path, BASE + "  max_steps: 20\n")
    assert error_of(path) == f"{path}:17: training.max_steps: duplicate key"
    path = write(tmp_path, BASE + "  lr: [1\n")
    assert error_of(path).startswith(f"{path}:18: not valid YAML")
    assert error_of(tmp_path / "absent.yaml") == f"{tmp_path / 'absent.yaml'}: no such config file"


def test_json_files_load_like_yaml(tmp_path):
    raw = yaml.safe_load(BASE)
    path = write(tmp_path, json.dumps(raw, indent=1), name="config.json")
    assert load_config(path) == load_config(write(tmp_path))
    path = write(tmp_path, json.dumps({**raw, "extra": 1}, indent=1), name="config.json")
    assert error_of(path).startswith(f"{path}:") and "extra: unknown key" in error_of(path)


def test_dumped_configs_load_back_equal(tmp_path):
    config = load_config(write(tmp_path), ["validation.bleu=false", "training.metric=ppl"])
    again = load_config(write(tmp_path, dump_config(config), name="again.yaml"))
    assert again == config


def test_the_task_registry_is_open(tmp_path, monkeypatch):
    path = write(tmp_path, BASE.replace("task: translation", "task: paraphrase"))
    assert error_of(path) == f"{path}:2: task: unknown task 'paraphrase'; known: {', '.join(sorted(TASKS))}"
    assert {"translation", "lm"} <= set(TASKS)
    monkeypatch.setitem(TASKS, "paraphrase", "mlxseq.tasks.translation")
    assert load_config(path).task == "paraphrase"


def test_the_example_config_loads(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLXSEQ_DATA", raising=False)
    config = load_config(REPO / "configs" / "multi30k_de_en.yaml")
    assert config.task == "translation" and config.model.args["hidden_size"] == 512
    assert config.data.train_src == str(tmp_path / "data" / "multi30k" / "raw" / "train.de.gz")  # ./data by default
    assert config.training.metric == "bleu" and config.validation.decode == "greedy"


def test_data_paths_start_at_the_data_root_unless_they_exist_as_written(monkeypatch, tmp_path):
    from mlxseq.config import config_from_dict, dump_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "here.txt").write_text("x\n")
    monkeypatch.setenv("MLXSEQ_DATA", str(tmp_path / "env-root"))
    raw = {"version": 1, "task": "lm", "output_dir": "run", "model": {"model_type": "lm"},
           "data": {"train": ["here.txt", "corpus/a.txt", str(tmp_path / "abs.txt")], "valid_fraction": 0.1},
           "training": {"max_steps": 1}}
    assert config_from_dict(raw).data.train == ["here.txt", str(tmp_path / "env-root" / "corpus" / "a.txt"),
                                                str(tmp_path / "abs.txt")]
    raw["data"]["root"] = "mine"  # data.root wins over MLXSEQ_DATA
    config = config_from_dict(raw)
    assert config.data.train[1] == str(tmp_path / "mine" / "corpus" / "a.txt")
    assert yaml.safe_load(dump_config(config))["data"]["train"] == config.data.train  # a saved config reads back


def test_a_missing_corpus_file_says_where_to_get_it(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from mlxseq.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLXSEQ_DATA", str(tmp_path / "corpora"))
    result = CliRunner().invoke(app, ["train", str(REPO / "configs" / "tinyshakespeare_char.yaml")])
    assert result.exit_code == 1
    missing = tmp_path / "corpora" / "tinyshakespeare" / "input.txt"
    assert result.output.strip() == (
        f"error: {missing}: no such file (from data.train; it is part of tinyshakespeare: get it from GitHub "
        f"karpathy/char-rnn, data/tinyshakespeare/input.txt (public domain text, MIT repository) and put it at "
        f"{missing} (relative data paths start at the data root: data.root, MLXSEQ_DATA or ./data))")


def test_dict_configs_say_where_they_came_from():
    with pytest.raises(ConfigError, match=r"^<dict>: task: missing \(required\)$"):
        config_from_dict({"version": 1})


HUB_DATA_SCRIPT = """
import sys
from mlxseq.config import ConfigError, config_from_dict
raw = {"version": 1, "task": "lm", "output_dir": "run", "model": {"model_type": "lm"}, "training": {"max_steps": 1},
       "data": {"train": [sys.argv[1]], "valid_fraction": 0.1}}
try:
    path = config_from_dict(raw).data.train[0]
    print("file", open(path).read())
except ConfigError as error:
    print("error", error)
"""


def _resolve_in_subprocess(url, env):
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", HUB_DATA_SCRIPT, url], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **env))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_hub_data_files_are_fetched_once_then_read_offline_from_the_cache(tmp_path):
    from tests.support.hub_standin import HubStandIn

    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "train.txt").write_text("to be or not to be")
    env = {"HF_HUB_CACHE": str(tmp_path / "cache"), "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "0"}
    with HubStandIn({"someone/texts": tmp_path / "repo"}) as hub:
        env["HF_ENDPOINT"] = hub.url
        assert _resolve_in_subprocess("hf://datasets/someone/texts/train.txt", env) == "file to be or not to be"
        assert any(path.startswith("/datasets/someone/texts/resolve/") for path in hub.requests)
        missing = _resolve_in_subprocess("hf://datasets/someone/texts/other.txt", env)
        assert missing.startswith("error <dict>: data.train: could not get other.txt of dataset 'someone/texts' from "
                                  "the Hugging Face Hub"), missing
    env["HF_HUB_OFFLINE"] = "1"  # the stand-in is gone: the cache serves the file
    assert _resolve_in_subprocess("hf://datasets/someone/texts/train.txt", env) == "file to be or not to be"
    offline = _resolve_in_subprocess("hf://datasets/someone/other/train.txt", env)
    assert offline.startswith("error <dict>: data.train: could not get train.txt of dataset 'someone/other'") and \
        "Offline?" in offline, offline


def test_a_training_technique_a_task_does_not_have_is_named(tmp_path):
    from tests.support.configs import write_training_config

    raw = {"version": 1, "task": "lm", "output_dir": str(tmp_path / "run"), "model": {"model_type": "lm"},
           "data": {"train": [__file__], "valid": [__file__]}, "training": {"max_steps": 1, "adversarial": 0.5}}
    with pytest.raises(ConfigError, match="training.adversarial: task 'lm' has no adversarial training"):
        load_config(write_training_config(tmp_path, raw))
