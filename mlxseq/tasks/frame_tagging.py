"""``task: tagging`` with ``data.features``: sequences of feature vectors, one tag per frame.

``data.train`` and ``data.valid`` are TSVs of ``file<TAB>tags``: a WAV (``data.features:
audio``, normalised log-mel frames of ``data.audio``) or an array of ``(frames, features)``
(``arrays``: .npy, .npz or .csv) relative to the TSV's folder, and the tags of its frames,
space-separated, exactly one per frame (aligned many-to-many: activity per sensor reading,
speech/non-speech per audio frame). Every example is read once, at load time; the training
frames fit a per-feature standardisation (``normaliser.json``); training sequences longer than
``data.max_length`` frames are dropped. The model projects each frame to ``embed_size``
(``ModelArgs.num_features``); the rest (recurrent encoder, softmax or CRF head, loss) is the
word tagger's. Validation scores the model as ``mlxseq evaluate`` does
(:class:`mlxseq.pipelines.frame_tagger.FrameTagger`): ``loss``, ``accuracy`` (every frame), and
``entity_f1`` where the tags are BIO.
"""

from __future__ import annotations

from dataclasses import asdict

import mlx.core as mx
import numpy as np

from mlxseq import checkpoint
from mlxseq.data import BatchSampler, DataError, pad_frames, standardise
from mlxseq.layers import count_parameters
from mlxseq.models import model_module
from mlxseq.pipelines.classifier import TextSettings
from mlxseq.pipelines.frame_classifier import FrameSettings
from mlxseq.pipelines.frame_tagger import FrameTagger, read_frame_tags
from mlxseq.tasks import TaskParts
from mlxseq.tasks.batches import SamplerBatches
from mlxseq.tasks.config_paths import from_config_key
from mlxseq.tasks.model_card import card_heading, scores_table, training_section
from mlxseq.training.progress import LossUnits


def _read(config, key: str, settings: FrameSettings, limit: int):
    """``(frames, tags)`` of the examples of the TSV at ``data.<key>`` (the first ``limit``; 0: all)."""
    with from_config_key(f"data.{key}"):
        return read_frame_tags(getattr(config.data, key), settings.frames, limit)


class FrameTagBatches(SamplerBatches):
    """Training batches ``(frames (B, T, F), lengths (B,), tags (B, T))`` in BatchSampler order."""

    def __init__(self, frames: list[np.ndarray], tags: list[list[int]], sampler: BatchSampler, multiple: int):
        super().__init__(sampler)
        self.frames, self.tags, self.multiple = frames, tags, multiple

    def __iter__(self):
        for indices in self.sampler:
            frames, lengths = pad_frames([self.frames[i] for i in indices], self.multiple)
            tags = np.zeros(frames.shape[:2], dtype=np.int32)
            for row, i in enumerate(indices):
                tags[row, : len(self.tags[i])] = self.tags[i]
            yield frames, lengths, mx.array(tags)


def prepare_frames(config, command: str, make_loss) -> TaskParts:
    """:func:`mlxseq.tasks.tagging.prepare` for ``data.features``; ``make_loss`` is the tagger's loss."""
    data, training, validation = config.data, config.training, config.validation
    frame_settings = FrameSettings(data.features, asdict(data.audio))
    train_frames, train_tags = _read(config, "train", frame_settings, data.max_train_sentences)
    valid_frames, valid_tags = _read(config, "valid", frame_settings, validation.max_sentences)
    kept = [i for i, f in enumerate(train_frames) if len(f) <= data.max_length]
    if not kept:
        raise DataError(f"no training sequence is within data.max_length={data.max_length} frames", data.train)
    dropped = len(train_frames) - len(kept)
    train_frames, train_tags = [train_frames[i] for i in kept], [train_tags[i] for i in kept]
    normaliser, train_frames, valid_frames = standardise(train_frames, valid_frames, data.train)
    width = len(normaliser.columns)
    names = sorted({t for row in train_tags for t in row})
    unknown = sorted({t for row in valid_tags for t in row} - set(names))
    if unknown:
        raise DataError(f"validation tag {unknown[0]!r} never occurs in the training data", data.valid)
    index = {t: i for i, t in enumerate(names)}
    settings = TextSettings(names)
    args = config.model.model_args(vocab_size=1, num_tags=len(names), char_vocab_size=0, pad_id=0, unk_id=0,
                                   num_features=width)
    model = model_module(config.model.model_type).build_model(args)
    sampler = BatchSampler([len(f) for f in train_frames], training.batch_tokens, multiple=data.bucket_multiple,
                           max_batch_size=training.max_batch_size or None, seed=training.seed)
    batches = FrameTagBatches(train_frames, [[index[t] for t in row] for row in train_tags], sampler,
                              data.bucket_multiple)
    scorer = FrameTagger(model, frame_settings, normaliser, settings)

    def validate(model) -> dict:
        scorer.model = model
        model.eval()
        return scorer.evaluate_frames(valid_frames, valid_tags, validation.batch_size)

    source = frame_settings.describe(width)
    facts = {"examples": len(train_frames), "frames": sum(len(f) for f in train_frames), "dropped": dropped,
             "tags": names, "source": source, "command": command, "parameters": count_parameters(model)}

    def save_model(folder, model, summary):
        checkpoint.save_model(folder, model, config.model.model_type, args, readme=_card(config, facts, summary))
        frame_settings.save_parts(folder, normaliser, settings)

    description = "\n".join([
        f"train: {len(train_frames)} sequences, {facts['frames']} frames ({dropped} over {data.max_length} frames "
        f"dropped), {len(names)} tags; valid: {len(valid_frames)} sequences",
        f"inputs: {source}, standardised per feature",
        f"model: {config.model.model_type}{' with CRF' if args.crf else ''}, {facts['parameters']:,} parameters",
        f"batches: {len(sampler)} per epoch in {len(sampler.shapes())} shapes, at most {training.batch_tokens} frames",
    ])
    units = LossUnits("frame", perplexity=False, loss_label="negative log-likelihood per frame" if args.crf
                      else "cross-entropy per frame")
    return TaskParts(model, batches, make_loss(training.label_smoothing), validate, save_model, description, units)


def _card(config, facts: dict, summary: dict) -> str:
    metrics = summary.get("metrics") or {}
    lines = card_heading(config, "tagger of feature-vector sequences (one tag per frame)", summary,
                         "audio-classification" if config.data.features == "audio" else "token-classification",
                         [config.data.train, config.data.valid])
    lines += scores_table(f"On {config.data.valid} ({metrics.get('settings', '')}):", metrics)
    lines += ["", "## Data", "", f"- training sequences: {config.data.train}: {facts['examples']} "
              f"({facts['frames']} frames; {facts['dropped']} longer than {config.data.max_length} frames dropped)",
              f"- inputs: {facts['source']}", f"- tags: {', '.join(facts['tags'])}"]
    lines += training_section(facts["command"], facts["parameters"])
    lines += ["```bash", "mlxseq predict --model path/to/this/folder example.npy", "```", ""]
    return "\n".join(lines)
