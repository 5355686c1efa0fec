"""Tests of mlxseq/tasks/speech.py: a recogniser of tone "digits" trained end to end, its folder,
``mlxseq transcribe`` and ``mlxseq evaluate`` on it, and the config checks."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mlxseq.cli import app
from mlxseq.config import ConfigError, load_config
from mlxseq.pipelines.transcriber import Transcriber
from mlxseq.runs.from_config import train_from_config
from mlxseq.speech.digits import (
    SynthesisArgs,
    load_recordings,
    sample_utterances,
    split_of,
    write_digit_list,
)
from mlxseq.speech.manifest import read_speech_list
from mlxseq.tasks.speech import prepare
from tests.speech.fake_fsdd import make_recordings, write_wav
from tests.support.configs import write_training_config


def write_config(folder, **data):
    recordings = make_recordings(folder)
    raw = {
        "version": 1, "task": "speech", "output_dir": str(folder / "run"),
        "model": {"model_type": "speech_ctc", "conv_channels": 32, "conv_stride": 2, "hidden_size": 48,
                  "num_layers": 1, "dropout": 0.0},
        "data": {"recordings": str(recordings), "train_utterances": 2000, "valid_utterances": 40, "max_digits": 2,
                 "labels": "words", "bucket_frames": [128, 224], "spec_augment": False, **data},
        "training": {"lr": 0.005, "max_steps": 300, "batch_tokens": 128 * 32, "eval_every": 100, "log_every": 100,
                     "metric": "wer"},
    }
    return write_training_config(folder, raw), recordings


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speech")
    config, recordings = write_config(folder)
    result = train_from_config(config, quiet=True)
    return folder, recordings, result


def test_a_tiny_recogniser_learns_tone_digits_and_writes_a_complete_folder(trained):
    folder, recordings, result = trained
    # 300 small steps leave CTC's all-blank start (WER 100) far behind; the real recogniser's
    # quality is checked on FSDD (tests/test_bundled_models.py).
    validations = [json.loads(line) for line in (folder / "run" / "metrics.jsonl").read_text().splitlines()
                   if '"validation"' in line]
    assert validations[-1]["wer"] < 30.0 and validations[-1]["loss"] < 0.5 * validations[0]["loss"], validations
    best = folder / "run" / "best"
    settings = json.loads((best / "speech.json").read_text())
    assert settings["labels"] == ["<blank>", *"0123456789"] and settings["unit"] == "words"
    assert json.loads((best / "config.json").read_text())["num_classes"] == 11
    card = (best / "README.md").read_text()
    assert "pipeline_tag: automatic-speech-recognition" in card and "connected-digit utterances" in card


def test_transcribe_and_evaluate_on_the_trained_folder(trained, tmp_path):
    folder, recordings, _ = trained
    sources = load_recordings(recordings)
    drawn = sample_utterances([n for n in sources if split_of(n) == "test"], 30, 11, SynthesisArgs(max_digits=2))
    write_digit_list(tmp_path / "test.tsv", drawn)
    for k in range(3):
        write_wav(tmp_path / f"u{k}.wav", drawn[k].render(sources))
    runner = CliRunner()
    out = runner.invoke(app, ["transcribe", "--model", str(folder / "run" / "best"),
                              *(str(tmp_path / f"u{k}.wav") for k in range(3))])
    assert out.exit_code == 0, out.output
    lines = out.output.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(tmp_path / f"u{k}.wav") for k in range(3)]
    assert sum(line.split("\t")[1] == drawn[k].transcript for k, line in enumerate(lines)) >= 2

    out = runner.invoke(app, ["evaluate", "--model", str(folder / "run" / "best"), "--data", str(tmp_path / "test.tsv"),
                              "--recordings", str(recordings)])
    assert out.exit_code == 0, out.output
    wer = float(out.output.split("WER ")[1].split("%")[0])
    assert wer < 30.0 and "30 utterances, greedy decoding" in out.output
    transcriber = Transcriber.load(folder / "run" / "best")
    items = read_speech_list(tmp_path / "test.tsv", recordings)
    beam = transcriber.evaluate(items, beam_size=4)
    assert beam["wer"] <= wer + 5.0 and "prefix beam 4" in beam["settings"]

    out = runner.invoke(app, ["evaluate", "--model", str(folder / "run" / "best"), "--data", str(tmp_path / "test.tsv")])
    assert out.exit_code == 1 and "error:" in out.output and "rendered from FSDD recordings" in out.output
    out = runner.invoke(app, ["transcribe", "--model", str(folder / "run" / "best"), str(tmp_path / "none.wav")])
    assert out.exit_code == 1 and out.output.strip() == f"error: {tmp_path / 'none.wav'}: no such file"


def test_speed_perturbation_stretches_each_training_utterance_by_a_seeded_factor(tmp_path):
    def training_frames(**data):
        config = load_config(write_config(tmp_path, train_utterances=60, **data)[0])
        parts = prepare(config, tmp_path / "run", resuming=False, command="test")
        return [len(f) for f in parts.batches.features], parts.description

    plain, _ = training_frames()
    perturbed, description = training_frames(speed_perturbation=[0.8, 1.25])
    again, _ = training_frames(speed_perturbation=[0.8, 1.25])
    assert perturbed == again and perturbed != plain
    ratios = np.array(perturbed) / np.array(plain)  # frames scale as 1 / speed
    assert ratios.min() > 1 / 1.25 - 0.05 and ratios.max() < 1 / 0.8 + 0.05 and ratios.std() > 0.05
    assert "played at speeds 0.8-1.25" in description


@pytest.mark.parametrize("data, key", [
    ({"recordings": "", "train": "x.tsv"}, "data"),
    ({"bucket_frames": [96, 64]}, "data.bucket_frames"),
    ({"max_digits": 0}, "data.max_digits"),
    ({"edge_pause_ms": [300, 100]}, "data.edge_pause_ms"),
    ({"pause_ms": [50]}, "data.pause_ms"),
    ({"clean_fraction": 1.5}, "data.clean_fraction"),
    ({"isolated_fraction": -0.1}, "data.isolated_fraction"),
    ({"top_db": 0}, "data.top_db"),
    ({"time_fraction": 1.2}, "data.time_fraction"),
    ({"speed_perturbation": [1.1, 0.9]}, "data.speed_perturbation"),
    ({"speed_perturbation": [0.3, 1.0]}, "data.speed_perturbation"),
])
def test_clashing_settings_name_their_key(tmp_path, data, key):
    config, _ = write_config(tmp_path, **data)
    with pytest.raises(ConfigError, match=key):
        train_from_config(config, quiet=True)


def test_missing_recordings_name_their_key_and_where_to_get_fsdd(tmp_path):
    from mlxseq.data import MissingFileError

    config, _ = write_config(tmp_path, recordings=str(tmp_path / "fsdd" / "recordings.tar.gz"))
    with pytest.raises(MissingFileError, match=r"no such file \(from data.recordings; it is part of fsdd: get it from "
                                               r"GitHub Jakobovski/free-spoken-digit-dataset"):
        train_from_config(config, quiet=True)


@pytest.mark.parametrize("time_fraction, longest_mask", [(1.0, 20), (0.1, 3)])
def test_the_loss_masks_short_utterances_by_their_share_of_frames(time_fraction, longest_mask):
    import mlx.core as mx

    from mlxseq.tasks.speech import DataArgs, make_loss

    frames = mx.array(np.random.default_rng(0).standard_normal((32, 256, 4)).astype(np.float32) + 5)
    lengths = mx.array([30] * 32)  # 30 frames each in a batch padded to 256
    seen = []

    def model(features, lengths):  # hands the masked frames on and gives CTC a blank-only output
        seen.append(np.array(features))
        return mx.log(mx.full((32, 8, 3), 1 / 3)), mx.array([8] * 32)

    loss = make_loss(DataArgs(time_fraction=time_fraction, freq_masks=0, time_masks=1), blank=0)
    mx.random.seed(1)
    loss(model, (frames, lengths, mx.ones((32, 1), mx.int32), mx.ones((32,), mx.int32)))
    masked_rows = (seen[0][:, :30] == 0).all(axis=2).sum(axis=1)  # per utterance, within its 30 frames
    assert masked_rows.max() <= longest_mask
    in_padding = (seen[0][:, 30:] == 0).all(axis=2).any()
    if time_fraction < 1:
        assert not in_padding and masked_rows.max() == longest_mask  # within each utterance, up to its tenth
    else:
        assert in_padding  # drawn over the padded length, as ESPnet and torchaudio draw them
