"""``task: speech``: audio with transcripts to a trained ``speech_ctc`` recogniser folder.

:func:`prepare` (1) reads the training and validation utterances: speech lists
(``audio<TAB>transcript`` TSVs, :mod:`mlxseq.speech.manifest`), or connected digits drawn
(seeded) from FSDD recordings (``data.recordings``; training utterances from recordings
10-49, validation from 5-9, :mod:`mlxseq.speech.digits`); (2) turns each into normalised
log-mel frames once, at load time; (3) makes the label set from the training transcripts
(characters, or whitespace-separated words; label 0 is the CTC blank); (4) batches
utterances of similar length under a frame budget (``training.batch_tokens`` frames).

The loss is the CTC loss (:func:`mlxseq.losses.ctc_loss`) per reference label, of frames
masked by SpecAugment (drawn from MLX's random state, so training resumes exactly).
Validation transcribes greedily as ``mlxseq evaluate`` does
(:class:`mlxseq.pipelines.transcriber.Transcriber`): ``loss``, ``wer``, ``cer`` (percent).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from mlxseq import checkpoint
from mlxseq.data import BatchSampler, DataError, MissingFileError, pad_batch, pad_frames
from mlxseq.layers import count_parameters
from mlxseq.losses import ctc_loss
from mlxseq.models import model_module
from mlxseq.pipelines.transcriber import (
    BLANK,
    SpeechSettings,
    Transcriber,
    audio_features,
)
from mlxseq.speech.digits import (
    SynthesisArgs,
    load_recordings,
    sample_utterances,
    split_of,
)
from mlxseq.speech.features import AudioError, FeatureArgs, Masking, change_speed
from mlxseq.speech.manifest import digit_items, read_speech_list
from mlxseq.tasks import TaskParts, metric_problems
from mlxseq.tasks.batches import SamplerBatches
from mlxseq.tasks.config_paths import from_config_key
from mlxseq.tasks.model_card import card_heading, scores_table, training_section
from mlxseq.training.progress import LossUnits

NAME = "speech"
MODEL_TYPES = ("speech_ctc",)
FILLED_MODEL_FIELDS = {
    "num_features": "set by the task: data.n_mels",
    "num_classes": "set by the task: the labels found in the training transcripts, plus the blank",
}
METRICS = ("loss", "wer", "cer")


@dataclass
class DataArgs:
    train: str = ""  # speech list (audio<TAB>transcript, or a digit list); "" = connected digits from data.recordings
    valid: str = ""  # the same for validation; "" = connected digits from data.recordings
    recordings: str = ""  # FSDD recordings (folder or .tar.gz): renders digit lists, draws utterances
    train_utterances: int = 8000  # connected-digit utterances drawn from recordings 10-49 when data.train is ""
    valid_utterances: int = 500  # drawn from recordings 5-9 when data.valid is ""
    min_digits: int = 1  # digits per drawn utterance
    max_digits: int = 7
    pause_ms: list[int] = field(default_factory=lambda: list(SynthesisArgs.pause_ms))  # drawn utterances: [shortest,
    #                                                                   longest] pause between digits, in ms
    edge_pause_ms: list[int] = field(default_factory=list)  # and before the first and after the last; [] = pause_ms
    clean_fraction: float = 0.0  # the share of drawn utterances without added noise (pauses of digital silence)
    isolated_fraction: float = 0.0  # the share of drawn utterances that are one recording as stored
    speed_perturbation: list[float] = field(default_factory=list)  # [slowest, fastest]: each training utterance
    #                          played at a speed drawn uniformly from this range, e.g. [0.9, 1.1]; [] = as recorded
    labels: Literal["characters", "words"] = "characters"  # what one output label stands for
    sample_rate: int = 8000  # audio is resampled to this rate
    n_fft: int = 256  # samples per analysis frame
    hop_length: int = 80  # samples between frames (10 ms at 8 kHz)
    n_mels: int = 40  # mel bins: the model's input features
    top_db: float | None = FeatureArgs.top_db  # log-mel values more than this many dB below the peak are raised
    spec_augment: bool = True  # mask training frames (SpecAugment): time_masks spans, freq_masks bands
    time_masks: int = Masking.time_masks
    time_width: int = Masking.time_width  # frames per time mask, at most
    freq_masks: int = Masking.freq_masks
    freq_width: int = Masking.freq_width  # mel bins per frequency mask, at most
    time_fraction: float = Masking.time_fraction  # below 1: a time mask lies within the utterance's frames and
    #                       spans at most this share of them; 1: masks are drawn over the batch's padded length
    max_seconds: float = 30.0  # drop longer training utterances
    bucket_multiple: int = 32  # pad frame counts up to a multiple of this: fewer shapes, fewer compiled traces
    bucket_frames: list[int] = field(default_factory=list)  # or up to these (increasing): fewer shapes still;
    #                                                         longer training utterances are dropped


@dataclass
class ValidationArgs:
    batch_size: int = 32  # utterances transcribed at once


def check_config(config) -> list[tuple[str, str]]:
    """Settings that clash across sections, as (dotted key, message)."""
    data, training = config.data, config.training
    problems = metric_problems(training, METRICS, "error rates and the loss are minimised")
    if not data.recordings and not (data.train and data.valid):
        problems.append(("data", "give data.train and data.valid (speech lists), or data.recordings (FSDD) to draw "
                                 "connected-digit utterances from"))
    if min(data.train_utterances, data.valid_utterances, data.bucket_multiple, data.n_mels, data.hop_length) < 1:
        problems.append(("data", "train_utterances, valid_utterances, bucket_multiple, n_mels and hop_length must "
                                 "be >= 1"))
    if not 1 <= data.min_digits <= data.max_digits <= 50:
        problems.append(("data.max_digits", "need 1 <= min_digits <= max_digits <= 50"))
    for key in ("pause_ms", "edge_pause_ms"):
        pauses = getattr(data, key)
        if key == "edge_pause_ms" and not pauses:
            continue
        if len(pauses) != 2 or not 0 <= pauses[0] <= pauses[1] <= 10_000:
            problems.append((f"data.{key}", "need [shortest, longest] with 0 <= shortest <= longest <= 10000"))
    for key in ("clean_fraction", "isolated_fraction", "time_fraction"):
        if not 0 <= getattr(data, key) <= 1:
            problems.append((f"data.{key}", "must be between 0 and 1"))
    speeds = data.speed_perturbation
    if speeds and (len(speeds) != 2 or not 0.5 <= speeds[0] <= speeds[1] <= 2.0):
        problems.append(("data.speed_perturbation", "need [slowest, fastest] with 0.5 <= slowest <= fastest <= 2.0 "
                                                    "(or []: as recorded)"))
    if data.top_db is not None and not data.top_db > 0:
        problems.append(("data.top_db", "must be > 0 (or null: no floor relative to the peak)"))
    if data.bucket_frames and (min(data.bucket_frames) < 1 or sorted(set(data.bucket_frames)) != data.bucket_frames):
        problems.append(("data.bucket_frames", "must be increasing frame counts >= 1"))
    if data.n_fft < 2 or data.sample_rate < 1000 or data.max_seconds <= 0:
        problems.append(("data", "n_fft must be >= 2, sample_rate >= 1000 and max_seconds > 0"))
    if config.validation.batch_size < 1:
        problems.append(("validation.batch_size", "must be >= 1"))
    if config.model.args.get("blank_id", 0) != 0:
        problems.append(("model.blank_id", "the task puts the blank at label 0; leave blank_id at 0"))
    return problems


@dataclass
class Utterances:
    """Utterances as frames: normalised log-mel ``(frames, n_mels)`` each, and transcripts."""

    features: list[np.ndarray]
    transcripts: list[str]
    source: str  # where they came from, for the log and the card


def _utterances(config, split: str, sources: dict | None, log) -> Utterances:
    data = config.data
    args = feature_args(data)
    path = getattr(data, split)
    if path:
        items = read_speech_list(path, sources)
        source = f"{path} ({len(items)} utterances)"
    else:
        names = [n for n in sources if split_of(n) == split]
        count = data.train_utterances if split == "train" else data.valid_utterances
        seed = config.training.seed + (0 if split == "train" else 1)
        synthesis = SynthesisArgs(data.min_digits, data.max_digits, tuple(data.pause_ms),
                                  tuple(data.edge_pause_ms) if data.edge_pause_ms else None,
                                  clean_fraction=data.clean_fraction, isolated_fraction=data.isolated_fraction)
        drawn = sample_utterances(names, count, seed, synthesis)
        items = digit_items(drawn, sources, [f"{split} utterance {k}" for k in range(count)])
        source = (f"{count} connected-digit utterances ({data.min_digits}-{data.max_digits} digits) drawn from "
                  f"{len(names)} {split} recordings of {data.recordings}")
    if log:
        log(f"{split}: computing log-mel frames of {source}")
    speeds = np.ones(len(items))
    if split == "train" and data.speed_perturbation:
        speeds = np.random.default_rng(config.training.seed + 2).uniform(*data.speed_perturbation, len(items))
        source += f", played at speeds {data.speed_perturbation[0]}-{data.speed_perturbation[1]}"
    features = [audio_features(change_speed(item.samples(args.sample_rate), speed), args)
                for item, speed in zip(items, speeds)]
    return Utterances(features, [item.transcript for item in items], source)


def feature_args(data) -> FeatureArgs:
    return FeatureArgs(sample_rate=data.sample_rate, n_fft=data.n_fft, hop_length=data.hop_length, n_mels=data.n_mels,
                       top_db=data.top_db)


class FrameBatches(SamplerBatches):
    """Training batches ``(frames (B, T, F), lengths (B,), targets (B, S), target lengths (B,))``."""

    def __init__(self, features, targets, sampler: BatchSampler, multiple: int, boundaries: list[int] | None):
        super().__init__(sampler)
        self.features, self.targets, self.multiple, self.boundaries = features, targets, multiple, boundaries

    def __iter__(self):
        for indices in self.sampler:
            frames, lengths = pad_frames([self.features[i] for i in indices], self.multiple, boundaries=self.boundaries)
            targets, target_lengths = pad_batch([self.targets[i] for i in indices], multiple=8)
            yield frames, lengths, targets, target_lengths


def make_loss(data, blank: int):
    """loss(model, batch) -> (summed CTC loss, reference labels), SpecAugment on the frames if enabled."""

    masking = Masking.of(data) if data.spec_augment else None

    def loss(model, batch):
        frames, lengths, targets, target_lengths = batch
        if masking is not None:
            frames = masking.apply(frames, lengths)
        log_probs, out_lengths = model(frames, lengths)  # (B, T', C), (B,)
        total = ctc_loss(log_probs.transpose(1, 0, 2), targets, out_lengths, target_lengths, blank=blank,
                         reduction="sum", zero_infinity=True)
        return total, target_lengths.sum()

    return loss


def model_card(config, facts: dict, summary: dict) -> str:
    metrics = {k: v for k, v in (summary.get("metrics") or {}).items() if k in METRICS}
    lines = card_heading(config, f"CTC speech recogniser ({facts['labels']} {config.data.labels})", summary,
                         "automatic-speech-recognition", [config.data.train, config.data.valid, config.data.recordings])
    lines += scores_table("Validation (greedy decoding; error rates in percent):", metrics)
    lines += ["", "## Data", "", f"- train: {facts['train']}", f"- valid: {facts['valid']}",
              f"- features: {facts['features']}", f"- labels: {facts['label_list']}"]
    return "\n".join(lines + training_section(facts["command"], facts["parameters"]))


def prepare(config, run_dir, *, resuming: bool, command: str, log=None) -> TaskParts:
    """The model, batches, loss, validation and model-folder writer for ``config``."""
    data, training = config.data, config.training
    for key in ("recordings", "train", "valid"):  # missing files name their key and, for FSDD, where to get it
        path = getattr(data, key)
        if path and not Path(path).exists():
            with from_config_key(f"data.{key}"):
                raise MissingFileError("no such file", path)
    try:
        sources = load_recordings(data.recordings) if data.recordings else None
        train = _utterances(config, "train", sources, log)
        valid = _utterances(config, "valid", sources, log)
    except AudioError as error:
        raise DataError(str(error)) from None
    args = feature_args(data)
    max_frames = int(data.max_seconds * data.sample_rate) // data.hop_length + 1
    if data.bucket_frames:
        max_frames = min(max_frames, data.bucket_frames[-1])
    units = sorted({u for t in train.transcripts for u in SpeechSettings([BLANK], data.labels).units(t)})
    settings = SpeechSettings([BLANK, *units], data.labels, asdict(args))
    kept = [i for i, f in enumerate(train.features)
            if len(f) <= max_frames and settings.encode(train.transcripts[i])]
    if not kept:
        raise DataError(f"no training utterance has a transcript and at most {max_frames} frames of audio "
                        "(data.max_seconds, data.bucket_frames)")
    features = [train.features[i] for i in kept]
    targets = [settings.encode(train.transcripts[i]) for i in kept]
    model_args = config.model.model_args(num_features=data.n_mels, num_classes=len(settings.labels))
    model = model_module(config.model.model_type).build_model(model_args)
    boundaries = data.bucket_frames or None
    sampler = BatchSampler([len(f) for f in features], training.batch_tokens, multiple=data.bucket_multiple,
                           boundaries=boundaries, max_batch_size=training.max_batch_size or None, seed=training.seed)
    transcriber = Transcriber(model, settings)

    def validate(model) -> dict:
        transcriber.model = model
        scores = transcriber.evaluate_features(valid.features, valid.transcripts, config.validation.batch_size)
        scores.pop("hypotheses")
        scores["settings"] = f"{len(valid.features)} validation utterances, greedy decoding"
        return scores

    facts = {"train": f"{train.source}; {len(kept)} kept", "valid": valid.source, "labels": len(units),
             "label_list": " ".join(repr(u) for u in units), "command": command,
             "features": (f"{data.n_mels} log-mel bins, {data.n_fft}-sample frames every {data.hop_length} samples at "
                          f"{data.sample_rate} Hz, at most {data.top_db} dB below the peak, normalised per utterance"),
             "parameters": count_parameters(model)}

    def save_model(folder, model, summary):
        checkpoint.save_model(folder, model, config.model.model_type, model_args,
                              readme=model_card(config, facts, summary))
        settings.save(folder)

    seconds = sum(len(f) for f in features) * data.hop_length / data.sample_rate
    description = "\n".join([
        f"train: {facts['train']}, {seconds / 3600:.2f} hours; valid: {valid.source}",
        f"labels: {len(units)} {data.labels} + blank; features: {facts['features']}",
        f"model: {config.model.model_type}, {facts['parameters']:,} parameters",
        f"batches: {len(sampler)} per epoch in {len(sampler.shapes())} shapes, at most {training.batch_tokens} frames",
    ])
    losses = LossUnits("label", perplexity=False, loss_label="CTC loss per reference label")
    return TaskParts(model, FrameBatches(features, targets, sampler, data.bucket_multiple, boundaries), make_loss(data, 0),
                     validate, save_model, description, losses)
