"""``task: tagging``: CoNLL-U files to a trained ``tagger`` model folder (UPOS or XPOS tags),
or, with ``data.features``, sequences of feature vectors with one tag per frame
(:mod:`mlxseq.tasks.frame_tagging`).

:func:`prepare` (1) reads the words and tags of the training and validation sentences
(multi-word token ranges and empty nodes skipped), (2) builds the word vocabulary (words
seen ``data.min_frequency`` times, lowercased if ``data.lowercase``) and, for a model that
spells words, the character vocabulary, into ``RUN/tokenizer/`` (reused when the settings
are the same), (3) builds the model with the vocabulary sizes and the tag set, (4) batches
sentences by length with :class:`mlxseq.data.BatchSampler`; every batch spells each of its
distinct words once, in ``data.max_word_chars`` characters, so shapes stay few.

The loss per word is the cross-entropy of its tag (softmax, with label smoothing) or the
CRF's negative log-likelihood of the whole tag sequence; padding never counts. Validation
scores the model as ``mlxseq evaluate`` does (:class:`mlxseq.pipelines.tagger.SequenceTagger`):
``loss``, ``accuracy`` (every word) and, where the tags are BIO, ``entity_f1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import mlx.core as mx
import numpy as np

from mlxseq.layers import count_parameters
from mlxseq import checkpoint
from mlxseq.pipelines.classifier import TextSettings
from mlxseq.data import PAD_ID, UNK_ID, BatchSampler, CharTokenizer, DataError, WordTokenizer, read_conllu
from mlxseq.layers.activations import log_softmax
from mlxseq.models import model_module
from mlxseq.pipelines.tagger import CHARS_NAME, SequenceTagger, WordEncoder, _read_vocabularies
from mlxseq.tasks.config_paths import from_config_key
from mlxseq.tasks import TaskParts
from mlxseq.training.progress import LossUnits
from mlxseq.tasks.batches import SamplerBatches
from mlxseq.tasks.model_card import card_heading, scores_table, training_section
from mlxseq.tasks.run_tokenizer import tokenizer_for_run
from mlxseq.speech.features import FeatureArgs
from mlxseq.tasks.frame_tagging import prepare_frames

NAME = "tagging"
MODEL_TYPES = ("tagger",)
FILLED_MODEL_FIELDS = {
    "vocab_size": "set by the task: the training words seen data.min_frequency times, plus the special tokens",
    "num_tags": "set by the task: the tags found in data.train",
    "char_vocab_size": "set by the task from the training characters when data.char_encoder is true",
    "pad_id": f"set by the task: the vocabulary's <pad> id ({PAD_ID})",
    "unk_id": f"set by the task: the vocabulary's <unk> id ({UNK_ID})",
}
METRICS = ("loss", "accuracy", "entity_f1")


@dataclass
class DataArgs:
    train: str  # CoNLL-U training file (UTF-8, plain or gzip); with data.features a TSV of file<TAB>tags
    valid: str  # CoNLL-U validation file (or, with data.features, a TSV of file<TAB>tags)
    tag_column: Literal["upos", "xpos"] = "upos"  # which tags to learn
    lowercase: bool = True  # the word vocabulary holds lowercased words (characters keep their case)
    min_frequency: int = 2  # rarer training words become <unk>; the character encoder still spells them
    char_encoder: bool = True  # spell each word with a character-level recurrent encoder
    max_word_chars: int = 16  # characters spelled per word: the first and last ones of longer words
    max_length: int = 128  # drop training sentences longer than this many words
    max_train_sentences: int = 0  # use only the first N training sentences; 0 = all
    bucket_multiple: int = 8  # pad lengths up to a multiple of this: fewer shapes, fewer compiled traces
    features: Literal["", "audio", "arrays"] = ""  # the TSVs' first column names a file of feature vectors: a WAV
    #   (audio) or a .npy/.npz/.csv (frames, features) array; the second holds one tag per frame, space-separated;
    #   max_length then counts frames, and the word settings (lowercase, min_frequency, char_encoder) are unused
    audio: FeatureArgs = field(default_factory=FeatureArgs)  # features: audio: sample_rate, n_fft, hop_length, n_mels, top_db


@dataclass
class ValidationArgs:
    batch_size: int = 64  # sentences tagged at once
    max_sentences: int = 0  # validate on the first N sentences only; 0 = all


def check_config(config) -> list[tuple[str, str]]:
    """Settings that clash across sections, as (dotted key, message)."""
    data, training, validation = config.data, config.training, config.validation
    problems = []
    if training.metric not in METRICS:
        problems.append(("training.metric", f"must be one of {', '.join(METRICS)} here, got {training.metric!r}"))
    if min(data.max_length, data.bucket_multiple, data.min_frequency, data.max_word_chars) < 1 \
            or data.max_train_sentences < 0:
        problems.append(("data", "max_length, bucket_multiple, min_frequency and max_word_chars must be >= 1, "
                                 "max_train_sentences >= 0"))
    longest = -(-data.max_length // data.bucket_multiple) * data.bucket_multiple
    if training.batch_tokens < longest:
        problems.append(("training.batch_tokens", (
            f"{training.batch_tokens} cannot hold one sentence of data.max_length={data.max_length} words "
            f"(padded to {longest}); raise it or lower data.max_length")))
    if validation.batch_size < 1 or validation.max_sentences < 0:
        problems.append(("validation", "batch_size must be >= 1, max_sentences >= 0"))
    return problems


def _read(path: str, key: str, tag_column: str):
    with from_config_key(key):
        return read_conllu(path, tag_column)


def masked_cross_entropy(logits: mx.array, targets: mx.array, lengths: mx.array, smoothing: float = 0.0):
    """``(summed loss, valid steps)`` of (B, T, K) logits against (B, T) targets; steps past each length
    count nothing, whatever their targets."""
    log_probs = log_softmax(logits.astype(mx.float32))
    nll = -mx.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    if smoothing > 0:
        nll = (1.0 - smoothing) * nll - smoothing * log_probs.mean(axis=-1)
    valid = mx.arange(targets.shape[1])[None, :] < lengths[:, None]
    return mx.where(valid, nll, 0.0).sum(), valid.sum()


def make_loss(smoothing: float):
    """``loss(model, batch)``: per-word cross-entropy, or the CRF's sequence NLL; divided by words."""

    def loss(model, batch):
        *inputs, tags = batch  # words, lengths (, chars, char_lengths, spelling_ids)
        emissions = model.emissions(*inputs)
        lengths = inputs[1]
        if model.args.crf:
            return model.crf.neg_log_likelihood(emissions, tags, lengths).sum(), lengths.sum()
        return masked_cross_entropy(emissions, tags, lengths, smoothing)

    return loss


class SentenceBatches(SamplerBatches):
    """Training batches ``(words, lengths, tags)`` in BatchSampler order, or
    ``(words, lengths, chars, char_lengths, spelling_ids, tags)`` for a tagger that spells words."""

    def __init__(self, encoder: WordEncoder, words, chars, tags, sampler: BatchSampler, multiple: int):
        super().__init__(sampler)
        self.encoder, self.words, self.chars, self.tags, self.multiple = encoder, words, chars, tags, multiple
        self.whole_arrays = (2, 3) if chars is not None else ()  # chars (U, C), char_lengths (U,)

    def __iter__(self):
        for indices in self.sampler:
            chars = [self.chars[i] for i in indices] if self.chars is not None else None
            inputs = self.encoder.batch([self.words[i] for i in indices], chars, self.multiple)
            tags = np.zeros(inputs[0].shape, dtype=np.int32)
            for row, i in enumerate(indices):
                tags[row, : len(self.tags[i])] = self.tags[i]
            yield *inputs, mx.array(tags)


def model_card(config, facts: dict, summary: dict) -> str:
    metrics = summary.get("metrics") or {}
    lines = card_heading(config, f"{config.data.tag_column.upper()} tagger", summary, "token-classification",
                         [config.data.train, config.data.valid])
    lines += scores_table(f"On {config.data.valid} ({metrics.get('settings', '')}):", metrics)
    lines += ["", "## Data", "", f"- training sentences: {config.data.train}: {facts['sentences']} "
              f"({facts['words']} words; {facts['dropped']} longer than {config.data.max_length} words dropped)",
              f"- tags: {', '.join(facts['tags'])}", f"- vocabulary: {facts['vocabulary']}"]
    return "\n".join(lines + training_section(facts["command"], facts["parameters"]))


def prepare(config, run_dir, *, resuming: bool, command: str, log=None) -> TaskParts:
    """The model, batches, loss, validation and model-folder writer for ``config``."""
    data, training, validation = config.data, config.training, config.validation
    if data.features:
        return prepare_frames(config, command, make_loss)
    train = _read(data.train, "data.train", data.tag_column)[: data.max_train_sentences or None]
    valid = _read(data.valid, "data.valid", data.tag_column)[: validation.max_sentences or None]
    kept = [s for s in train if len(s.words) <= data.max_length]
    if not kept:
        raise DataError(f"no training sentence is within data.max_length={data.max_length} words", data.train)
    settings = {"train": data.train, "max_train_sentences": data.max_train_sentences, "lowercase": data.lowercase,
                "min_frequency": data.min_frequency, "char_encoder": data.char_encoder}

    def build():
        words = WordTokenizer.build([" ".join(w.lower() if data.lowercase else w for w in s.words) for s in kept],
                                    min_frequency=data.min_frequency)
        return words, CharTokenizer.build(w for s in kept for w in s.words) if data.char_encoder else None

    def save(built, folder):
        built[0].save(folder)
        if built[1] is not None:
            built[1].save(folder, CHARS_NAME)

    words, chars = tokenizer_for_run(run_dir, settings, build, save, _read_vocabularies, resuming=resuming, log=log,
                                     description=f"vocabulary on {len(kept)} sentences")
    tags = sorted({t for s in kept for t in s.tags})
    text_settings = TextSettings(tags, lowercase=data.lowercase, max_word_chars=data.max_word_chars,
                                 tag_column=data.tag_column)
    encoder = WordEncoder(words, chars, text_settings)
    args = config.model.model_args(vocab_size=words.vocab_size, num_tags=len(tags),
                                   char_vocab_size=chars.vocab_size if chars else 0, pad_id=PAD_ID, unk_id=UNK_ID)
    model = model_module(config.model.model_type).build_model(args)
    index = {t: i for i, t in enumerate(tags)}
    word_ids = [encoder.word_ids(s.words) for s in kept]
    char_ids = [encoder.char_ids(s.words) for s in kept] if chars else None
    tag_ids = [[index[t] for t in s.tags] for s in kept]
    sampler = BatchSampler([len(s.words) for s in kept], training.batch_tokens, multiple=data.bucket_multiple,
                           max_batch_size=training.max_batch_size or None, seed=training.seed)
    unknown = [t for s in valid for t in s.tags if t not in index]
    if unknown:
        raise DataError(f"validation tag {unknown[0]!r} never occurs in the training data", data.valid)

    def validate(model) -> dict:
        return SequenceTagger(model, encoder).evaluate([s.words for s in valid], [s.tags for s in valid],
                                                       validation.batch_size)

    facts = {"sentences": len(kept), "words": sum(len(s.words) for s in kept), "dropped": len(train) - len(kept),
             "tags": tags, "command": command,
             "vocabulary": f"{words.vocab_size} words" + (f", {chars.vocab_size} characters" if chars else ""),
             "parameters": count_parameters(model)}

    def save_model(folder, model, summary):
        checkpoint.save_model(folder, model, config.model.model_type, args, readme=model_card(config, facts, summary))
        save((words, chars), folder)
        text_settings.save(folder)

    description = "\n".join([
        f"train: {len(kept)} sentences, {facts['words']} words ({facts['dropped']} sentences over {data.max_length} "
        f"words dropped), {len(tags)} tags; valid: {len(valid)} sentences",
        f"vocabulary: {facts['vocabulary']}",
        f"model: {config.model.model_type}{' with CRF' if args.crf else ''}, {facts['parameters']:,} parameters",
        f"batches: {len(sampler)} per epoch in {len(sampler.shapes())} shapes, at most {training.batch_tokens} words",
    ])
    batches = SentenceBatches(encoder, word_ids, char_ids, tag_ids, sampler, data.bucket_multiple)
    units = LossUnits("word", perplexity=False, loss_label="negative log-likelihood per word" if args.crf
                      else "cross-entropy per word")
    return TaskParts(model, batches, make_loss(training.label_smoothing), validate, save_model, description, units)
