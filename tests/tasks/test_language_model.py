"""Tests of mlxseq/tasks/language_model.py: state carried across batches, a text memorised, exact resume."""

import json
import math
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

import mlxseq
from mlxseq.config import ConfigError, load_config
from mlxseq.data import CharTokenizer, StreamBatcher
from mlxseq.pipelines.generator import GenerationOptions, Generator
from mlxseq.losses import label_smoothed_cross_entropy
from mlxseq.models import language_model
from mlxseq.tasks import language_model as lm_task
from mlxseq.runs.from_config import train_from_config
from tests.support.configs import write_training_config
from tests.support.runs import train_stopped_and_resumed

REPO = Path(__file__).resolve().parents[2]
VERSE = "the quick brown fox jumps over the lazy dog\n"


def write_config(folder: Path, text: str = VERSE * 40, **sections) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text(text)
    raw = {
        "version": 1, "task": "lm", "output_dir": str(folder / "run"),
        "model": {"model_type": "lm", "embed_size": 16, "hidden_size": 48, "num_layers": 1, "rnn_type": "lstm",
                  "dropout": 0.0},
        "data": {"train": [str(folder / "train.txt")], "valid_fraction": 0.1, "batch_size": 4, "seq_len": 16},
        "training": {"lr": 0.01, "max_steps": 200, "eval_every": 100, "log_every": 20, "label_smoothing": 0.0,
                     "metric": "loss"},
        "validation": {"batch_size": 2, "seq_len": 32},
    }
    return write_training_config(folder, raw, sections)


def parameters(folder) -> dict:
    return dict(tree_flatten(mlxseq.load(folder).parameters()))


def test_the_carried_state_makes_batches_equal_to_one_pass_over_each_stream():
    mx.random.seed(0)
    lm = language_model.build_model(language_model.ModelArgs(vocab_size=11, embed_size=8, hidden_size=12,
                                                             num_layers=2, rnn_type="gru", dropout=0.0))
    tokens = np.random.default_rng(0).integers(4, 11, size=3 * 41)
    batcher = StreamBatcher(tokens, batch_size=3, seq_len=10)
    model, loss = lm_task.CarriedStateLM(lm, 3), lm_task.make_stream_loss()
    total = count = 0.0
    for batch in lm_task.StreamBatches(batcher):
        s, n = loss(model, batch)
        total, count = total + s.item(), count + n.item()
    # The same 40 steps of each stream at once, from a zero state.
    streams = mx.array(tokens.reshape(3, 41))
    logits, _ = lm(streams[:, :40])
    s, n = label_smoothed_cross_entropy(logits, streams[:, 1:41], -1)
    assert count == n.item() == 120
    assert math.isclose(total, s.item(), rel_tol=1e-5)


def test_the_state_restarts_at_each_epoch_and_the_gradient_stops_at_the_batch():
    lm = language_model.build_model(language_model.ModelArgs(vocab_size=9, embed_size=4, hidden_size=6, num_layers=1))
    batches = lm_task.StreamBatches(StreamBatcher(np.arange(4, 9).repeat(8) % 9, batch_size=2, seq_len=4))
    keeps = [batch[2].item() for _ in range(2) for batch in batches]
    assert keeps == [0.0, 1.0, 1.0, 1.0] * 2  # 4 batches per epoch
    model = lm_task.CarriedStateLM(lm, 2)
    assert "carry" not in dict(tree_flatten(model.trainable_parameters()))
    assert {k for k, _ in tree_flatten(model.parameters()) if k.startswith("carry")} == {"carry.h", "carry.c"}


def test_a_tiny_lm_memorises_a_text_and_generates_it(tmp_path):
    result = train_from_config(write_config(tmp_path), quiet=True)
    assert result.metrics["loss"] < 0.1 and result.metrics["bits"] == pytest.approx(result.metrics["loss"] / math.log(2))
    folder = tmp_path / "run" / "best"
    assert "recurrent language model" in (folder / "README.md").read_text()
    generator = Generator.load(folder)
    text = generator.generate("the quick", GenerationOptions(max_tokens=len(VERSE) + 10, temp=0.0))[0]
    assert text.startswith(" brown fox jumps over the lazy dog\nthe quick")


def test_lines_mode_learns_each_line_from_its_start(tmp_path):
    lines = ["abc", "abd", "xyz"] * 30
    path = write_config(tmp_path, text="\n".join(lines) + "\n", data={"mode": "lines", "bucket_multiple": 4, "max_length": 8},
                        training={"max_steps": 150, "batch_tokens": 64, "eval_every": 0})
    result = train_from_config(path, quiet=True)
    assert result.metrics["loss"] < 0.75  # the first letter of a line is a coin toss between "a" and "x"
    generator = Generator.load(tmp_path / "run" / "last")
    assert generator.generate("x", GenerationOptions(max_tokens=5, temp=0.0))[0] == "yz"


def test_a_stream_run_stopped_and_resumed_ends_bit_identical_to_a_straight_run(tmp_path):
    sections = dict(model={"dropout": 0.2}, training={"max_steps": 30, "eval_every": 10, "save_every": 4})
    # 40 verses = 1800 characters, 4 streams of 16 steps: 25 batches per epoch, so the run crosses an epoch.
    straight = write_config(tmp_path / "a", **sections)
    train_from_config(straight, quiet=True)
    stopped = write_config(tmp_path / "b", **sections)

    train_stopped_and_resumed(stopped, stop_step=27)
    a, b = parameters(tmp_path / "a" / "run" / "last"), parameters(tmp_path / "b" / "run" / "last")
    assert a.keys() == b.keys() and all(mx.array_equal(a[k], b[k]).item() for k in a)
    records = [json.loads(x) for x in (tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "validation"] == [10, 20, 30]


def test_the_validation_split_is_the_last_fraction_by_character_offset(tmp_path):
    # Tiny Shakespeare's length: its conventional split leaves 111,540 characters for validation.
    text = "".join(chr(97 + i % 26) if i % 40 else "\n" for i in range(1_115_394))
    (tmp_path / "input.txt").write_text(text)
    data = lm_task.DataArgs(train=[str(tmp_path / "input.txt")], valid_fraction=0.1)
    train, valid = lm_task.split_texts(data)
    n = int(0.9 * len(text))
    assert train == text[:n] and valid == text[n:] and len(valid) == 111540


def test_words_and_subwords_end_each_line_with_eos_in_a_stream():
    tokenizer = mlxseq.data.WordTokenizer.build(["a b", "c"])
    ids = lm_task.encode_stream(tokenizer, "a b\n\nc\n")
    assert ids == tokenizer.encode("a b") + [mlxseq.data.EOS_ID] + tokenizer.encode("c") + [mlxseq.data.EOS_ID]
    chars = CharTokenizer.build("ab\n")
    assert lm_task.encode_stream(chars, "ab\nb") == chars.encode("ab\nb")


@pytest.mark.parametrize(
    "data, message",
    [
        ({"valid_fraction": 0.0}, "data.valid_fraction: without data.valid files it must be in (0, 1)"),
        ({"valid": ["x.txt"]}, "set either data.valid (files) or data.valid_fraction"),
        ({"seq_len": 0}, "must be >= 1"),
    ],
)
def test_bad_data_settings_are_config_errors(tmp_path, data, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(write_config(tmp_path, data=data))


def test_a_metric_the_task_does_not_report_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="training.metric: must be one of loss, ppl, bits here, got 'bleu'"):
        load_config(write_config(tmp_path, training={"metric": "bleu"}))


def test_a_text_too_short_for_one_batch_names_the_file(tmp_path):
    path = write_config(tmp_path, text="tiny text\n" * 2)
    with pytest.raises(mlxseq.data.DataError, match=r"train.txt: the training text is too short"):
        train_from_config(path, quiet=True)


def test_the_example_shakespeare_config_loads():
    config = load_config(REPO / "configs" / "tinyshakespeare_char.yaml")
    assert config.task == "lm" and config.data.tokenizer == "char" and config.data.valid_fraction == 0.1
    assert config.training.label_smoothing == 0.0 and config.training.metric == "loss"
    assert config.data.train[0].endswith("tinyshakespeare/input.txt")


def test_a_missing_text_file_names_its_config_key(tmp_path):
    path = write_config(tmp_path, data={"train": [str(tmp_path / "train.txt"), str(tmp_path / "more.txt")]})
    with pytest.raises(mlxseq.data.MissingFileError, match=r"more.txt: no such file \(from data.train; relative data paths"):
        train_from_config(path, quiet=True)


def test_a_full_disk_at_a_save_is_one_line_and_the_run_resumes_bit_identical(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mlxseq.cli import app

    sections = dict(training={"max_steps": 30, "eval_every": 10, "save_every": 4})
    straight = write_config(tmp_path / "a", **sections)
    train_from_config(straight, quiet=True)
    full = write_config(tmp_path / "b", **sections)
    save = mx.save_safetensors
    steps = []

    def disk_full_after_step_20(path, arrays, *args, **kwargs):
        if steps and steps[-1] > 20:
            with open(path, "wb") as handle:  # what a full disk leaves: part of the file
                handle.write(b"\x00" * 100)
            raise RuntimeError("[write] Unable to write 4096 bytes to file.")
        return save(path, arrays, *args, **kwargs)

    monkeypatch.setattr(mx, "save_safetensors", disk_full_after_step_20)
    from mlxseq.training import loop

    monkeypatch.setattr(loop._Loop, "after_update", _recording(loop._Loop.after_update, steps))
    result = CliRunner().invoke(app, ["train", str(full), "--quiet"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: could not write the resume checkpoint in {tmp_path / 'b' / 'run'} ([write] Unable to write 4096 "
        "bytes to file.); is the disk full? its resume checkpoint of step 20 is whole: free space and run the "
        "same command to resume"]
    monkeypatch.setattr(mx, "save_safetensors", save)
    train_from_config(full, resume=True, quiet=True)
    a, b = parameters(tmp_path / "a" / "run" / "last"), parameters(tmp_path / "b" / "run" / "last")
    assert a.keys() == b.keys() and all(mx.array_equal(a[k], b[k]).item() for k in a)


def _recording(after_update, steps):
    def record_step(self, interrupted):
        steps.append(self.step)
        return after_update(self, interrupted)

    return record_step
