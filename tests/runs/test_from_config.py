"""Tests of mlxseq/train.py and its command, ``mlxseq train``: one call from a config, errors in one line."""

import json
import os

import yaml
from typer.testing import CliRunner

import mlxseq
from mlxseq.cli import app
from mlxseq.runs.from_config import train_from_config
from tests.tasks.test_translation import write_config

runner = CliRunner()
TINY = {"max_steps": 6, "eval_every": 3, "log_every": 3, "metric": "loss"}


def test_the_train_command_trains_a_tiny_config(tmp_path):
    config = write_config(tmp_path, training=TINY, validation={"max_sentences": 10})
    result = runner.invoke(app, ["train", str(config), "--set", "training.max_steps=4", "--quiet"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "run"
    assert result.output.strip().startswith("trained to step 4 (max_steps); best loss ")
    assert result.output.strip().endswith(f": {out}")
    assert mlxseq.load(out / "last").args.hidden_size == 64 and mlxseq.load(out / "best") is not None
    assert yaml.safe_load((out / "config.yaml").read_text())["training"]["max_steps"] == 4
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [3, 3, 4, 4]  # a train window and a validation at 3, and at the end
    # Again with the same output_dir: it resumes, sees it is done, and says so.
    again = runner.invoke(app, ["train", str(config), "--set", "training.max_steps=4", "--quiet"])
    assert again.exit_code == 0 and "trained to step 4" in again.output


def test_a_bad_config_is_one_line_and_exit_1(tmp_path):
    config = write_config(tmp_path, training={**TINY, "warmup": 10})
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 1
    number = config.read_text().splitlines().index("  warmup: 10") + 1
    line = f"error: {config}:{number}: training.warmup: unknown key; did you mean 'warmup_steps'?"
    assert result.output.strip() == line, result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["train", str(config), "--set", "training.warmup"])
    assert result.output.strip() == "error: --set training.warmup: expected key.sub=value, e.g. training.lr=0.001"


def test_data_and_resume_problems_are_one_line_and_exit_1(tmp_path):
    config = write_config(tmp_path, training=TINY)
    result = runner.invoke(app, ["train", str(config), "--set", "data.valid_tgt=missing.en"])
    assert result.exit_code == 1
    assert result.output.strip().endswith("missing.en: no such file (from data.valid_tgt; relative data paths start at the "
                                          f"data root (data.root, MLXSEQ_DATA or ./data) unless they exist from {os.getcwd()})")
    assert len(result.output.strip().splitlines()) == 1
    result = runner.invoke(app, ["train", str(config), "--resume"])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {tmp_path / 'run' / 'resume'}: no resume checkpoint to continue from"
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_resuming_with_changed_settings_logs_each_change(tmp_path, capsys):
    config = write_config(tmp_path, training=TINY, validation={"bleu": False})
    train_from_config(config, ["training.max_steps=2"], progress=False)
    capsys.readouterr()
    result = train_from_config(config, ["training.max_steps=3", "training.lr=0.02"], progress=False)
    messages = capsys.readouterr().err
    assert "resuming with a changed setting: training.lr: 0.01 -> 0.02" in messages
    assert "resuming with a changed setting: training.max_steps: 2 -> 3" in messages
    assert "resuming from step 2 (epoch 0)" in messages and result.step == 3
