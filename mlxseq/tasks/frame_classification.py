"""``task: classification`` with ``data.features``: sequences of feature vectors to a ``classifier``.

The TSVs' first column names a file per example instead of holding its text: a WAV
(``data.features: audio``: normalised log-mel frames of ``data.audio``) or an array of
``(frames, features)`` (``arrays``: .npy, .npz or .csv), relative to the TSV's folder. Every
example is read once, at load time; the training frames fit a per-feature standardisation
(``normaliser.json``, applied to every input); frames past ``data.max_length`` are cut. The
model projects each frame to ``embed_size`` instead of embedding a token
(``ModelArgs.num_features``); the rest (recurrent encoder, pooling, head, loss, label
smoothing, adversarial training) is the text classifier's. Validation scores the model as
``mlxseq evaluate`` does (:class:`mlxseq.pipelines.frame_classifier.FrameClassifier`).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import mlx.core as mx
import numpy as np

from mlxseq import checkpoint
from mlxseq.data import BatchSampler, DataError, pad_frames, standardise
from mlxseq.layers import count_parameters
from mlxseq.models import model_module
from mlxseq.pipelines.classifier import TextSettings
from mlxseq.pipelines.frame_classifier import FrameClassifier, FrameSettings
from mlxseq.speech.features import AudioError, Masking
from mlxseq.tasks import TaskParts
from mlxseq.tasks.batches import SamplerBatches
from mlxseq.tasks.classification_loss import label_array, make_loss
from mlxseq.tasks.model_card import card_heading, scores_table, training_section
from mlxseq.training.progress import LossUnits


def frame_problems(config) -> list[tuple[str, str]]:
    """Settings that text classification has and feature vectors cannot use."""
    data, training = config.data, config.training
    problems = []
    if data.nested_spans or data.char_encoder:
        problems.append(("data.features", "feature vectors have no words: nested_spans and char_encoder need text"))
    if training.teachers:
        problems.append(("training.teachers", "distillation reads texts; it is not available with data.features"))
    return problems


def read_examples(corpus, settings: FrameSettings, tsv: str) -> list[np.ndarray]:
    """The frames of every example of a labelled TSV, its first column a path relative to the TSV."""
    folder = Path(tsv).parent
    frames = []
    for line, name in enumerate(corpus.texts, start=1):
        path = Path(name.strip()).expanduser()
        try:
            frames.append(settings.frames(path if path.is_absolute() else folder / path))
        except AudioError as error:
            raise DataError(f"example {line}: {error}", tsv) from None
    return frames


class FrameBatches(SamplerBatches):
    """Training batches ``(frames (B, T, F), lengths (B,), labels)`` in BatchSampler order; with
    ``masking`` each example's frames get SpecAugment's masks (drawn from MLX's random state, so
    training resumes exactly)."""

    def __init__(self, frames: list[np.ndarray], labels: np.ndarray, sampler: BatchSampler, multiple: int,
                 masking: Masking | None = None):
        super().__init__(sampler)
        self.frames, self.labels, self.multiple, self.masking = frames, labels, multiple, masking

    def __iter__(self):
        for indices in self.sampler:
            frames, lengths = pad_frames([self.frames[i] for i in indices], self.multiple)
            if self.masking is not None:
                frames = self.masking.apply(frames, lengths)
            yield frames, lengths, mx.array(self.labels[indices])


def prepare_frames(config, train, valid, command: str) -> TaskParts:
    """:func:`mlxseq.tasks.classification.prepare` for ``data.features``: ``train`` and ``valid`` are the
    labelled TSVs as read (their texts are the example files)."""
    data, training, validation = config.data, config.training, config.validation
    frame_settings = FrameSettings(data.features, asdict(data.audio))
    keep = data.max_train_examples or len(train)
    train_frames = [f[: data.max_length] for f in read_examples(train, frame_settings, data.train)[:keep]]
    cap = validation.max_examples or len(valid)
    valid_frames = [f[: data.max_length] for f in read_examples(valid, frame_settings, data.valid)[:cap]]
    normaliser, train_frames, valid_frames = standardise(train_frames, valid_frames, data.train)
    width = len(normaliser.columns)
    names = sorted({label for labels in train.labels[:keep] for label in labels})
    multi = bool(data.label_separator)
    if len(names) < (1 if multi else 2):
        raise DataError(f"the training data have {len(names)} label(s); a classifier needs two", data.train)
    settings = TextSettings(names, max_length=data.max_length)
    args = config.model.model_args(vocab_size=1, num_classes=len(names), multi_label=multi, pad_id=0, unk_id=0,
                                   char_vocab_size=0, num_features=width)
    model = model_module(config.model.model_type).build_model(args)
    sampler = BatchSampler([len(f) for f in train_frames], training.batch_tokens, multiple=data.bucket_multiple,
                           max_batch_size=training.max_batch_size or None, seed=training.seed)
    masking = Masking.of(data) if data.spec_augment else None
    batches = FrameBatches(train_frames, label_array(train.labels[:keep], names, multi), sampler, data.bucket_multiple,
                           masking)
    scorer = FrameClassifier(model, frame_settings, normaliser, settings)
    valid_labels = valid.labels[:cap]

    def validate(model) -> dict:
        scorer.model = model
        model.eval()
        p = scorer.probabilities_of_frames(valid_frames, validation.batch_size)
        return scorer.score(p, valid_labels, validation.threshold)

    source = frame_settings.describe(width)
    facts = {"examples": len(train_frames), "labels": names, "command": command, "source": source,
             "frames": sum(len(f) for f in train_frames), "parameters": count_parameters(model)}

    def save_model(folder, model, summary):
        checkpoint.save_model(folder, model, config.model.model_type, args, readme=_card(config, facts, summary))
        frame_settings.save_parts(folder, normaliser, settings)

    description = "\n".join([
        f"train: {len(train_frames)} examples, {facts['frames']} frames, {len(names)} labels; "
        f"valid: {len(valid_frames)} examples",
        f"inputs: {source}, standardised per feature, at most {data.max_length} frames"
        + (f"; SpecAugment: {masking}" if masking else ""),
        f"model: {config.model.model_type}, {facts['parameters']:,} parameters",
        f"batches: {len(sampler)} per epoch in {len(sampler.shapes())} shapes, at most {training.batch_tokens} frames",
    ])
    loss = make_loss(training.label_smoothing, training.adversarial, training.adversarial_per_token)
    units = LossUnits("example", perplexity=False, loss_label=f"{'binary ' if multi else ''}cross-entropy per example",
                      training_note="adversarial" if training.adversarial > 0 else "")
    return TaskParts(model, batches, loss, validate, save_model, description, units)


def _card(config, facts: dict, summary: dict) -> str:
    metrics = summary.get("metrics") or {}
    lines = card_heading(config, "classifier of feature-vector sequences", summary,
                         "audio-classification" if config.data.features == "audio" else "other",
                         [config.data.train, config.data.valid])
    lines += scores_table(f"On {config.data.valid} ({metrics.get('settings', '')}):", metrics)
    lines += ["", "## Data", "", f"- training examples: {config.data.train}: {facts['examples']} ({facts['frames']} frames)",
              f"- inputs: {facts['source']}", f"- labels: {', '.join(facts['labels'])}"]
    lines += training_section(facts["command"], facts["parameters"])
    lines += ["```bash", "mlxseq predict --model path/to/this/folder example.wav", "```", ""]
    return "\n".join(lines)
