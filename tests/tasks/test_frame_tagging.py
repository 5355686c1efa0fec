"""Tests of mlxseq/tasks/frame_tagging.py: a tagger over sequences of feature vectors (one tag per
frame) learned end to end, its folder through ``mlxseq predict``/``evaluate`` and FrameTagger, and
bad inputs named."""

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mlxseq.cli import app
from mlxseq.data import DataError
from mlxseq.pipelines.frame_tagger import FrameTagger
from mlxseq.runs.from_config import train_from_config
from tests.support.configs import write_training_config


def write_tagged_sequences(folder: Path, count: int, seed: int, name: str) -> Path:
    """Sequences of 10-40 frames of 4 noisy features: frames inside a burst (feature 1 raised, 3-8
    frames long, 1-3 per sequence) are tagged B-burst / I-burst, the others O; the raised level
    alone does not tell B from I, the frame before does."""
    rng = np.random.default_rng(seed)
    (folder / name).mkdir()
    lines = []
    for k in range(count):
        T = int(rng.integers(10, 41))
        frames = rng.normal(0.0, 0.4, (T, 4)) + 5.0
        tags = ["O"] * T
        for _ in range(int(rng.integers(1, 4))):
            start, length = int(rng.integers(0, T - 3)), int(rng.integers(3, 9))
            end = min(T, start + length)
            if any(t != "O" for t in tags[max(0, start - 1) : end + 1]):
                continue  # keep bursts apart
            frames[start:end, 1] += 3.0
            tags[start:end] = ["B-burst"] + ["I-burst"] * (end - start - 1)
        np.save(folder / name / f"{k}.npy", frames.astype(np.float32))
        lines.append(f"{name}/{k}.npy\t{' '.join(tags)}")
    (folder / f"{name}.tsv").write_text("\n".join(lines) + "\n")
    return folder / f"{name}.tsv"


def config(folder: Path, train: Path, valid: Path, **model) -> Path:
    raw = {
        "version": 1, "task": "tagging", "output_dir": str(folder / "run"),
        "model": {"model_type": "tagger", "embed_size": 16, "hidden_size": 24, "num_layers": 1, "rnn_type": "lstm",
                  "dropout": 0.0, **model},
        "data": {"train": str(train), "valid": str(valid), "features": "arrays", "max_length": 48,
                 "bucket_multiple": 16},
        "training": {"lr": 0.02, "max_steps": 150, "batch_tokens": 48 * 16, "eval_every": 150, "log_every": 75,
                     "metric": "accuracy"},
    }
    return write_training_config(folder, raw)


@pytest.mark.parametrize("crf", [False, True])
def test_a_frame_tagger_learns_bursts_and_its_folder_tags_and_evaluates(tmp_path, crf):
    train = write_tagged_sequences(tmp_path, 240, 0, "train")
    valid = write_tagged_sequences(tmp_path, 60, 1, "valid")
    result = train_from_config(config(tmp_path, train, valid, crf=crf), quiet=True)
    assert result.metrics["accuracy"] >= 95.0 and result.metrics["entity_f1"] >= 80.0, result.metrics
    best = tmp_path / "run" / "best"
    assert {"frames.json", "normaliser.json", "labels.json"} <= {p.name for p in best.iterdir()}
    runner = CliRunner()
    out = runner.invoke(app, ["evaluate", "--model", str(best), "--data", str(valid)])
    assert out.exit_code == 0, out.output
    assert float(out.output.split("frame accuracy ")[1].split()[0]) == pytest.approx(result.metrics["accuracy"],
                                                                                      abs=0.01)
    files = [str(tmp_path / "valid" / f"{k}.npy") for k in range(3)]
    out = runner.invoke(app, ["predict", "--model", str(best), *files])
    assert out.exit_code == 0, out.output
    rows = [line.split("\t") for line in out.output.strip().splitlines()]
    gold = [line.split("\t")[1].split() for line in valid.read_text().splitlines()[:3]]
    assert [r[0] for r in rows] == files
    assert [len(r[1].split()) for r in rows] == [len(g) for g in gold]  # one tag per frame
    assert sum(a == b for r, g in zip(rows, gold) for a, b in zip(r[1].split(), g)) >= 0.9 * sum(map(len, gold))
    tagger = FrameTagger.load(best)
    assert tagger.tag_files(files) == [r[1].split() for r in rows]
    short = tmp_path / "short.tsv"  # one tag fewer than frames on line 2; a missing file on line 3
    first, second = valid.read_text().splitlines()[:2]
    short.write_text(f"{first}\n{second.rsplit(' ', 1)[0]}\nvalid/none.npy\tO\n")
    out = runner.invoke(app, ["evaluate", "--model", str(best), "--data", str(short)])
    assert out.exit_code == 1 and out.output.startswith(f"error: {short}:2: valid/1.npy has "), out.output
    short.write_text(f"{first}\nvalid/none.npy\tO\n")
    out = runner.invoke(app, ["evaluate", "--model", str(best), "--data", str(short)])
    assert out.exit_code == 1 and "none.npy: no such file" in out.output and out.output.count("\n") == 1, out.output


def test_tags_that_do_not_match_the_frames_are_named_by_line(tmp_path):
    train = write_tagged_sequences(tmp_path, 20, 0, "train")
    valid = write_tagged_sequences(tmp_path, 5, 1, "valid")
    lines = train.read_text().splitlines()
    lines[3] = lines[3].rsplit(" ", 1)[0]  # one tag fewer than frames
    train.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train\.tsv:4: train/3\.npy has \d+ frames but \d+ tags \(one tag per frame\)"):
        train_from_config(config(tmp_path, train, valid), quiet=True)
