"""Tests of mlxseq/tasks/frame_classification.py: classifiers over sequences of feature vectors
(arrays and audio) learned end to end, their folders through ``mlxseq predict``/``evaluate``, and
bad inputs named."""

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mlxseq.cli import app
from mlxseq.config import ConfigError
from mlxseq.data import DataError, read_frames
from mlxseq.pipelines.frame_classifier import FrameClassifier
from mlxseq.runs.from_config import train_from_config
from tests.speech.fake_fsdd import make_recordings
from tests.support.configs import write_training_config


def write_array_examples(folder: Path, count: int, seed: int, name: str) -> Path:
    """Sequences of 5-20 frames of 3 features; label 'up' when feature 0 rises over time, else 'down'."""
    rng = np.random.default_rng(seed)
    (folder / name).mkdir()
    lines = []
    for k in range(count):
        up = k % 2 == 0
        frames = rng.normal(0.0, 0.3, (int(rng.integers(5, 21)), 3)) + 10.0
        frames[:, 0] += np.linspace(-1, 1, len(frames)) * (1 if up else -1)
        np.save(folder / name / f"{k}.npy", frames.astype(np.float32))
        lines.append(f"{name}/{k}.npy\t{'up' if up else 'down'}")
    (folder / f"{name}.tsv").write_text("\n".join(lines) + "\n")
    return folder / f"{name}.tsv"


def config(folder: Path, train: Path, valid: Path, features: str, **data) -> Path:
    raw = {
        "version": 1, "task": "classification", "output_dir": str(folder / "run"),
        "model": {"model_type": "classifier", "embed_size": 16, "hidden_size": 24, "rnn_type": "gru", "dropout": 0.0},
        "data": {"train": str(train), "valid": str(valid), "features": features, "max_length": 64, **data},
        "training": {"lr": 0.01, "max_steps": 120, "batch_tokens": 64 * 16, "eval_every": 120, "log_every": 60},
    }
    return write_training_config(folder, raw)


def test_a_classifier_of_array_sequences_learns_and_its_folder_predicts_and_evaluates(tmp_path):
    train = write_array_examples(tmp_path, 200, 0, "train")
    valid = write_array_examples(tmp_path, 60, 1, "valid")
    result = train_from_config(config(tmp_path, train, valid, "arrays"), quiet=True)
    assert result.metrics["accuracy"] >= 90.0, result.metrics
    best = tmp_path / "run" / "best"
    assert {"frames.json", "normaliser.json", "labels.json"} <= {p.name for p in best.iterdir()}
    runner = CliRunner()
    out = runner.invoke(app, ["evaluate", "--model", str(best), "--data", str(valid)])
    assert out.exit_code == 0, out.output
    assert float(out.output.split("accuracy ")[1].split()[0]) == pytest.approx(result.metrics["accuracy"], abs=0.01)
    out = runner.invoke(app, ["predict", "--model", str(best), str(tmp_path / "valid" / "0.npy"),
                              str(tmp_path / "valid" / "1.npy")])
    assert out.exit_code == 0, out.output
    assert [line.split("\t")[0] for line in out.output.strip().splitlines()] == ["up", "down"]


def test_an_isolated_digit_classifier_over_audio_frames(tmp_path):
    recordings = make_recordings(tmp_path)
    for split, indices in (("train", range(12, 50, 4)), ("valid", [8])):
        names = sorted(p.name for p in recordings.iterdir() if int(p.stem.split("_")[2]) in indices)
        (tmp_path / f"{split}.tsv").write_text("".join(f"recordings/{n}\t{n[0]}\n" for n in names))
    result = train_from_config(config(tmp_path, tmp_path / "train.tsv", tmp_path / "valid.tsv", "audio",
                                      max_length=32), quiet=True)
    assert result.metrics["accuracy"] >= 80.0, result.metrics
    classifier = FrameClassifier.load(tmp_path / "run" / "best")
    assert classifier.frames.kind == "audio" and classifier.frames.audio["n_mels"] == 40
    found = classifier.predict([str(recordings / "3_anna_8.wav"), str(recordings / "7_bert_8.wav")])
    assert [p.labels for p in found] == [["3"], ["7"]]


@pytest.mark.parametrize("problem, match", [
    ("missing", "valid/missing.npy: no such file"),
    ("nan", "holds NaN or infinite values"),
    ("width", "different numbers of features per frame"),
])
def test_bad_example_files_are_named(tmp_path, problem, match):
    train = write_array_examples(tmp_path, 20, 0, "train")
    valid = write_array_examples(tmp_path, 6, 1, "valid")
    if problem == "missing":
        valid.write_text(valid.read_text() + "valid/missing.npy\tup\n")
    elif problem == "nan":
        np.save(tmp_path / "valid" / "0.npy", np.full((4, 3), np.nan, dtype=np.float32))
    else:
        np.save(tmp_path / "valid" / "0.npy", np.zeros((4, 5), dtype=np.float32))
    with pytest.raises(DataError, match=match):
        train_from_config(config(tmp_path, train, valid, "arrays"), quiet=True)


def test_text_only_settings_are_refused_with_features(tmp_path):
    train = write_array_examples(tmp_path, 4, 0, "train")
    with pytest.raises(ConfigError, match="data.features"):
        train_from_config(config(tmp_path, train, train, "arrays", char_encoder=True), quiet=True)


def test_spec_augment_masks_training_frames_in_stripes_and_still_learns(tmp_path):
    import mlx.core as mx

    from mlxseq.data import BatchSampler
    from mlxseq.speech.features import Masking
    from mlxseq.tasks.frame_classification import FrameBatches

    frames = [np.ones((n, 6), dtype=np.float32) for n in (12, 16, 16, 9)]
    def sampler():  # one batch of all four: an epoch's position moves on as batches are drawn
        return BatchSampler([len(f) for f in frames], 4 * 16, multiple=16, seed=0)

    mx.random.seed(0)
    plain = next(iter(FrameBatches(frames, np.arange(4), sampler(), 16)))[0]
    masked, lengths, _ = next(iter(FrameBatches(frames, np.arange(4), sampler(), 16, Masking(1, 4, 1, 2))))
    assert float(plain.sum()) == float(lengths.sum()) * 6  # padding is 0, frames untouched
    for example, length in zip(np.array(masked), np.array(lengths)):
        valid = example[:length]
        zero_columns = (valid == 0).all(axis=0).sum()
        zero_rows = (valid == 0).all(axis=1).sum()
        assert zero_columns <= 2 and zero_rows <= 4  # one band of <= 2 features, one span of <= 4 frames
        assert ((valid == 0) == ((valid == 0).all(axis=0, keepdims=True) | (valid == 0).all(axis=1, keepdims=True))).all()
    assert (np.array(masked) == 0).sum() > (np.array(plain) == 0).sum()

    train = write_array_examples(tmp_path, 200, 0, "train")
    valid = write_array_examples(tmp_path, 60, 1, "valid")
    result = train_from_config(config(tmp_path, train, valid, "arrays", spec_augment=True, time_width=3,
                                      freq_masks=0), quiet=True)
    assert result.metrics["accuracy"] >= 85.0, result.metrics
    with pytest.raises(ConfigError, match="data.spec_augment"):
        raw_text = config(tmp_path, train, valid, "", spec_augment=True)
        train_from_config(raw_text, quiet=True)
    with pytest.raises(ConfigError, match="data.time_fraction"):
        train_from_config(config(tmp_path, train, valid, "arrays", spec_augment=True, time_fraction=-0.5), quiet=True)


def test_array_files_of_every_kind_read_back(tmp_path):
    values = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "a.npy", values)
    np.savez(tmp_path / "b.npz", frames=values, other=values[:1])
    (tmp_path / "c.csv").write_text("x,y,z\n" + "\n".join(",".join(str(v) for v in row) for row in values) + "\n")
    for name in ("a.npy", "b.npz", "c.csv"):
        np.testing.assert_array_equal(read_frames(tmp_path / name), values)
    np.save(tmp_path / "one.npy", np.arange(5.0))
    assert read_frames(tmp_path / "one.npy").shape == (5, 1)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="not a readable npy array"):
        read_frames(tmp_path / "objects.npy")
    (tmp_path / "bad.csv").write_text("1,2\n3\n")
    with pytest.raises(DataError, match=r"bad.csv:2: 1 values, the first frame has 2"):
        read_frames(tmp_path / "bad.csv")
    with pytest.raises(DataError, match="expected a feature file ending in"):
        read_frames(tmp_path / "x.txt")
    with open(tmp_path / "huge.npy", "wb") as file:  # a header claiming 2**34 values over 64 bytes of data
        np.lib.format.write_array_header_1_0(file, {"descr": "<f4", "fortran_order": False, "shape": (1 << 24, 1 << 10)})
        file.write(b"\0" * 64)
    with pytest.raises(DataError, match="huge.npy"):
        read_frames(tmp_path / "huge.npy")
