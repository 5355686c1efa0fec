"""``task: classification``: a TSV of ``text<TAB>label`` to a trained ``classifier`` model folder.

:func:`prepare` (1) reads the training and validation files, (2) trains the tokenizer
(word, char or sentencepiece) into ``RUN/tokenizer/`` or reuses the one there, (3) encodes
the texts, cutting them to ``data.max_length`` tokens (with ``data.char_encoder``, a character
vocabulary is kept beside the word tokenizer and every word is also spelled), (4) builds the model with the
vocabulary size and the label set of the training data, (5) batches by length with
:class:`mlxseq.data.BatchSampler`. The loss is the cross-entropy of each example
(softmax, with label smoothing) or, for multi-label data, the summed binary cross-entropy
of its labels; each example counts once. With ``training.teachers`` (distillation, Hinton et al.
2015) each example's target is also the mean class probabilities of trained classifier
folders on its text, ``loss = (1 - w) * loss(label) + w * loss(teachers' probabilities)``
with ``w = training.teacher_weight``: an ensemble taught to one model of the same cost to run.

With ``data.nested_spans`` (word tokens; for phrase-level treebanks such as SST, whose
training lines are sentences and the phrases inside them) the training texts that are token
spans of longer training texts are learned in context (:func:`mlxseq.data.nested_spans`): an
epoch goes over the *roots* (texts inside no other), and each root's labelled spans are pooled
from its states and classified by the same head (:meth:`Classifier.classify_spans`)::

    loss = sum_s w_s CE(logits_s, y_s) / sum_s w_s      w_s = data.whole_text_weight for a
                                                        root's whole text, 1 for the spans inside

Validation and prediction read whole texts as before: the model is an ordinary classifier.

Validation scores the model as ``mlxseq evaluate`` does (:class:`mlxseq.pipelines.classifier.TextClassifier`):
``loss``, ``accuracy`` and ``macro_f1`` (percent).

With ``data.features`` the examples are sequences of feature vectors (audio frames, arrays):
see :mod:`mlxseq.tasks.frame_classification`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Literal

import mlx.core as mx
import numpy as np

from mlxseq.layers import count_parameters
from mlxseq import checkpoint
from mlxseq.checkpoint import ModelFolderError
from mlxseq.pipelines.classifier import ClassifierEnsemble, TextClassifier, TextSettings, read_tokenizers
from mlxseq.data import (
    CHARS_NAME, HEADER_OPTIONS, PAD_ID, UNK_ID, BatchSampler, CharTokenizer, DataError, SentencePieceConfig,
    SentencePieceTokenizer,
    SpanTable, WordTokenizer, nested_spans, read_labelled,
)
from mlxseq.models import model_module
from mlxseq.speech.features import FeatureArgs, Masking
from mlxseq.tasks.classification_loss import label_array, make_loss
from mlxseq.tasks.config_paths import from_config_key
from mlxseq.tasks.frame_classification import frame_problems, prepare_frames
from mlxseq.tasks import TaskParts
from mlxseq.training.progress import LossUnits
from mlxseq.tasks.batches import SamplerBatches
from mlxseq.tasks.model_card import card_heading, scores_table, training_section
from mlxseq.tasks.run_tokenizer import tokenizer_for_run

NAME = "classification"
TECHNIQUES = ("adversarial", "distillation")  # training.adversarial, training.teachers
MODEL_TYPES = ("classifier",)
FILLED_MODEL_FIELDS = {
    "vocab_size": "set by the task from the tokenizer (word/char: the training data; sentencepiece: data.sentencepiece.vocab_size)",
    "num_classes": "set by the task: the labels found in data.train",
    "multi_label": "set by the task: true when data.label_separator is set",
    "pad_id": f"set by the task: the tokenizer's <pad> id ({PAD_ID})",
    "unk_id": f"set by the task: the tokenizer's <unk> id ({UNK_ID})",
    "char_vocab_size": "set by the task from the training characters when data.char_encoder is true",
}
METRICS = ("loss", "accuracy", "macro_f1")


@dataclass
class DataArgs:
    train: str  # TSV: text<TAB>label per line (UTF-8, plain or gzip)
    valid: str  # TSV of the same form, for validation
    header: Literal["auto", "skip", "none"] = "auto"  # auto: skip a first line whose label field is 'label'
    label_separator: str = ""  # multi-label data: the labels of a line joined by this (e.g. ","); "" = one label
    tokenizer: Literal["word", "char", "sentencepiece"] = "word"  # whitespace words, characters or subwords
    sentencepiece: SentencePieceConfig = field(default_factory=SentencePieceConfig)  # vocab_size, model_type, ...
    lowercase: bool = False  # lowercase texts before the tokenizer (also when predicting)
    min_frequency: int = 1  # word and char tokenizers: rarer tokens become <unk>
    char_encoder: bool = False  # word tokenizer: also spell each word with a character-level recurrent encoder
    max_word_chars: int = 16  # characters spelled per word: the first and last ones of longer words
    max_length: int = 128  # texts are cut to their first max_length tokens (also when predicting)
    max_train_examples: int = 0  # use only the first N training examples; 0 = all
    nested_spans: bool = False  # word tokens: learn texts inside longer training texts as spans of those (see above)
    whole_text_weight: float = 1.0  # nested_spans: the loss weight of each root's whole text; its spans weigh 1
    bucket_multiple: int = 8  # pad lengths up to a multiple of this: fewer shapes, fewer compiled traces
    features: Literal["", "audio", "arrays"] = ""  # the first column names a file of feature vectors instead of
    #   holding text: a WAV (audio) or a .npy/.npz/.csv (frames, features) array; max_length then counts frames
    audio: FeatureArgs = field(default_factory=FeatureArgs)  # features: audio: sample_rate, n_fft, hop_length, n_mels, top_db
    spec_augment: bool = False  # features: mask training frames (SpecAugment) as task: speech does
    time_masks: int = Masking.time_masks  # spans of at most time_width frames set to the mean (0)
    time_width: int = Masking.time_width
    freq_masks: int = Masking.freq_masks  # bands of at most freq_width features set to the mean (0)
    freq_width: int = Masking.freq_width
    time_fraction: float = Masking.time_fraction  # below 1: time spans within the example, of at most this share


@dataclass
class ValidationArgs:
    batch_size: int = 64  # texts classified at once
    max_examples: int = 0  # validate on the first N examples only; 0 = all
    threshold: float = 0.5  # multi-label: a label is predicted when its probability reaches this


def check_config(config) -> list[tuple[str, str]]:
    """Settings that clash across sections, as (dotted key, message)."""
    data, training, validation = config.data, config.training, config.validation
    problems = []
    if training.metric not in METRICS:
        problems.append(("training.metric", f"must be one of {', '.join(METRICS)} here, got {training.metric!r}"))
    if min(data.max_length, data.bucket_multiple, data.min_frequency, data.max_word_chars) < 1 \
            or data.max_train_examples < 0:
        problems.append(("data", "max_length, bucket_multiple, min_frequency and max_word_chars must be >= 1, "
                                 "max_train_examples >= 0"))
    if data.spec_augment and not data.features:
        problems.append(("data.spec_augment", "masks feature vectors: it needs data.features (audio or arrays)"))
    if min(data.time_masks, data.time_width, data.freq_masks, data.freq_width) < 0:
        problems.append(("data", "time_masks, time_width, freq_masks and freq_width must be >= 0"))
    if not 0 <= data.time_fraction <= 1:
        problems.append(("data.time_fraction", f"must be between 0 and 1, got {data.time_fraction}"))
    if data.whole_text_weight <= 0:
        problems.append(("data.whole_text_weight", f"must be > 0, got {data.whole_text_weight}"))
    if data.nested_spans and data.tokenizer != "word":
        problems.append(("data.nested_spans", f"matches texts word by word: it needs data.tokenizer: word, "
                                              f"got {data.tokenizer!r}"))
    if data.nested_spans and training.teachers:
        problems.append(("data.nested_spans", "cannot be combined with training.teachers (distillation) yet"))
    if data.char_encoder and data.tokenizer != "word":
        problems.append(("data.char_encoder", f"spells words: it needs data.tokenizer: word, got {data.tokenizer!r}"))
    longest = -(-data.max_length // data.bucket_multiple) * data.bucket_multiple
    if training.batch_tokens < longest:
        problems.append(("training.batch_tokens", (
            f"{training.batch_tokens} cannot hold one text of data.max_length={data.max_length} tokens "
            f"(padded to {longest}); raise it or lower data.max_length")))
    if validation.batch_size < 1 or validation.max_examples < 0 or not 0 < validation.threshold < 1:
        problems.append(("validation", "batch_size must be >= 1, max_examples >= 0, threshold in (0, 1)"))
    return problems + (frame_problems(config) if data.features else [])


def read_split(path: str, key: str, data: DataArgs):
    with from_config_key(key):
        return read_labelled(path, header=HEADER_OPTIONS[data.header], label_separator=data.label_separator or None)


def _tokenizers(data: DataArgs, texts: list[str], run_dir, resuming: bool, log):
    """``(tokenizer, chars or None)`` of the run: trained on ``texts`` or reused from ``RUN/tokenizer/``."""
    settings = {"tokenizer": data.tokenizer, "train": data.train, "lowercase": data.lowercase,
                "max_train_examples": data.max_train_examples}
    if data.tokenizer == "sentencepiece":
        settings["sentencepiece"] = dataclasses.asdict(data.sentencepiece)
    else:
        settings["min_frequency"] = data.min_frequency
    if data.char_encoder:
        settings["char_encoder"] = True

    def build():
        chars = CharTokenizer.build(texts) if data.char_encoder else None
        if data.tokenizer == "sentencepiece":
            try:
                return SentencePieceTokenizer.train(texts, data.sentencepiece), chars
            except ValueError as error:
                raise DataError(f"cannot train the tokenizer: {error} (see data.sentencepiece.vocab_size)", data.train) from None
        kind = WordTokenizer if data.tokenizer == "word" else CharTokenizer
        return kind.build(texts, min_frequency=data.min_frequency), chars

    def save(built, folder):
        built[0].save(folder)
        if built[1] is not None:
            built[1].save(folder, CHARS_NAME)

    spelled = " and a character vocabulary" if data.char_encoder else ""
    return tokenizer_for_run(run_dir, settings, build, save, read_tokenizers, resuming=resuming, log=log,
                             description=f"{data.tokenizer} tokenizer{spelled} on {len(texts)} texts")


def teacher_probabilities(folders: list[str], train: str, texts: list[str], names: list[str], multi: bool,
                          log=None) -> np.ndarray:
    """The mean class probabilities ``(N, C)`` of the ``training.teachers`` folders on ``texts``, in
    the order of ``names``; the teachers must have been trained on the same labels."""
    try:
        teachers = ClassifierEnsemble.load(list(folders))
    except ModelFolderError as error:
        raise ModelFolderError(f"training.teachers: {error}") from None
    if teachers.settings.labels != names or teachers.multi_label != multi:
        kind = lambda is_multi: " (multi-label)" if is_multi else ""
        raise DataError(f"training.teachers: {teachers.folder} has the labels {teachers.settings.labels}"
                        f"{kind(teachers.multi_label)}, the training data {names}{kind(multi)}", train)
    started = time.perf_counter()
    soft = teachers.probabilities(texts, batch_size=256).astype(np.float32)
    if log:
        log(f"teachers: {len(folders)} classifier folder(s), probabilities of {len(texts)} texts "
            f"in {time.perf_counter() - started:.0f} s")
    return soft


# --- batches and loss ---------------------------------------------------------------------


class LabelledBatches(SamplerBatches):
    """Training batches ``(tokens (B, T), lengths (B,), labels)`` in BatchSampler order, or
    ``(tokens, lengths, chars (U, C), char_lengths (U,), spelling_ids (B, T), labels)`` for a
    model that spells words; with teachers' probabilities (distillation) each batch ends with
    them, ``(..., labels, soft (B, C))``.

    ``labels`` is ``(B,)`` int32 class ids, or ``(B, C)`` float32 0/1 for multi-label data.
    """

    def __init__(self, classifier: TextClassifier, encoded: list[list[int]], spelled: list | None, labels: np.ndarray,
                 sampler: BatchSampler, multiple: int, soft: np.ndarray | None = None):
        super().__init__(sampler)
        self.classifier, self.encoded, self.spelled, self.labels, self.soft = classifier, encoded, spelled, labels, soft
        self.multiple = multiple
        self.whole_arrays = (2, 3) if spelled is not None else ()  # chars (U, C), char_lengths (U,)

    def __iter__(self):
        for indices in self.sampler:
            spelled = [self.spelled[i] for i in indices] if self.spelled is not None else None
            inputs = self.classifier.batch([self.encoded[i] for i in indices], spelled, self.multiple)
            targets = (mx.array(self.labels[indices]),)
            if self.soft is not None:
                targets += (mx.array(self.soft[indices]),)
            yield *inputs, *targets


class SpanBatches(SamplerBatches):
    """Training batches of roots with their labelled spans (``data.nested_spans``): the model's
    inputs as in :class:`LabelledBatches`, then ``starts, ends (B, S)`` int32, ``labels``
    ``(B, S)`` int32 (or ``(B, S, C)`` 0/1 for multi-label data) and ``weights (B, S)`` float32.

    S is the most spans of a root in the batch, padded up to ``multiple``; padding spans are
    ``[0, 1)`` with weight 0, so every span pools at least one step.
    """

    def __init__(self, classifier: TextClassifier, encoded: list[list[int]], spelled: list | None, labels: np.ndarray,
                 table: SpanTable, whole_text_weight: float, sampler: BatchSampler, multiple: int):
        super().__init__(sampler)
        self.classifier, self.encoded, self.spelled, self.labels, self.table = classifier, encoded, spelled, labels, table
        self.whole_text_weight, self.multiple = whole_text_weight, multiple
        self.whole_arrays = (2, 3) if spelled is not None else ()

    def __iter__(self):
        for indices in self.sampler:
            roots = [self.table.roots[r] for r in indices]
            spelled = [self.spelled[k] for k in roots] if self.spelled is not None else None
            inputs = self.classifier.batch([self.encoded[k] for k in roots], spelled, self.multiple)
            yield *inputs, *self.targets(indices)

    def targets(self, indices) -> tuple:
        """``(starts, ends, labels, weights)`` of the roots ``indices``, as numbered in the table."""
        rows = [self.table.spans[r] for r in indices]
        size = -(-max(len(r) for r in rows) // self.multiple) * self.multiple
        starts, ends = np.zeros((len(rows), size), np.int32), np.ones((len(rows), size), np.int32)
        weights = np.zeros((len(rows), size), np.float32)
        labels = np.zeros((len(rows), size, *self.labels.shape[1:]), self.labels.dtype)
        for b, (r, spans) in enumerate(zip(indices, rows)):
            n = len(spans)
            starts[b, :n], ends[b, :n], labels[b, :n] = spans[:, 0], spans[:, 1], self.labels[spans[:, 2]]
            whole = (spans[:, 0] == 0) & (spans[:, 1] == len(self.encoded[self.table.roots[r]]))
            weights[b, :n] = np.where(whole, self.whole_text_weight, 1.0)
        return mx.array(starts), mx.array(ends), mx.array(labels), mx.array(weights)


# --- the task ---------------------------------------------------------------------------------


def model_card(config, facts: dict, summary: dict) -> str:
    """README.md of a model folder: data, labels, scores with their settings, the command."""
    metrics = summary.get("metrics") or {}
    lines = card_heading(config, f"{facts['kind']} text classifier", summary, "text-classification",
                         [config.data.train, config.data.valid])
    lines += scores_table(f"On {config.data.valid} ({metrics.get('settings', '')}):", metrics)
    lines += ["", "## Data", "", f"- training examples: {config.data.train}: {facts['examples']}",
              f"- labels: {', '.join(facts['labels'])}", f"- tokenizer: {facts['tokenizer']}"]
    if config.training.teachers:
        lines += [f"- distilled: targets (1 - {config.training.teacher_weight}) x label + {config.training.teacher_weight} x the "
                  f"mean probabilities of {', '.join(config.training.teachers)}"]
    if "spans" in facts:
        lines += [f"- nested spans: {facts['spans']}"]
    lines += training_section(facts["command"], facts["parameters"])
    lines += ["```bash", "mlxseq predict --model path/to/this/folder \"some text\"", "```", ""]
    return "\n".join(lines)


def _description(config, facts: dict, names: list[str], multi: bool, valid_count: int, sampler, table) -> str:
    """What ``mlxseq train`` says before training: data, tokenizer, targets, model, batches."""
    training = config.training
    return "\n".join([
        f"train: {facts['examples']} examples, {len(names)} labels ({'multi-label' if multi else 'one per example'}); "
        f"valid: {valid_count} examples",
        f"tokenizer: {facts['tokenizer']}",
        *([f"targets: (1 - {training.teacher_weight}) x label + {training.teacher_weight} x the mean probabilities of "
           f"{len(training.teachers)} teacher(s)"] if training.teachers else []),
        *([f"nested spans: {facts['spans']}"] if table else []),
        f"model: {config.model.model_type}, {facts['parameters']:,} parameters",
        f"batches: {len(sampler)}{' of roots' if table else ''} per epoch in {len(sampler.shapes())} shapes, "
        f"at most {training.batch_tokens} tokens",
    ])


def prepare(config, run_dir, *, resuming: bool, command: str, log=None) -> TaskParts:
    """The model, batches, loss, validation and model-folder writer for ``config``."""
    data = config.data
    train, valid = read_split(data.train, "data.train", data), read_split(data.valid, "data.valid", data)
    if data.features:
        return prepare_frames(config, train, valid, command)
    keep = data.max_train_examples or len(train)
    texts = [t.lower() if data.lowercase else t for t in train.texts[:keep]]
    tokenizer, chars = _tokenizers(data, texts, run_dir, resuming, log)
    names = sorted({label for labels in train.labels[:keep] for label in labels})
    multi = bool(data.label_separator)
    if len(names) < (1 if multi else 2):
        raise DataError(f"the training data have {len(names)} label(s) ({', '.join(names)}); a classifier needs two", data.train)
    settings = TextSettings(names, lowercase=data.lowercase, max_length=data.max_length,
                            max_word_chars=data.max_word_chars if chars else 0)
    args = config.model.model_args(vocab_size=tokenizer.vocab_size, num_classes=len(names), multi_label=multi, pad_id=PAD_ID,
                                   unk_id=UNK_ID, char_vocab_size=chars.vocab_size if chars else 0)
    model = model_module(config.model.model_type).build_model(args)
    classifier = TextClassifier(model, tokenizer, settings, chars=chars)
    encoded = [classifier.encode(t) for t in train.texts[:keep]]
    spelled = [classifier.spell(t) for t in train.texts[:keep]] if chars else None
    labels = label_array(train.labels[:keep], names, multi)
    soft = (teacher_probabilities(config.training.teachers, data.train, train.texts[:keep], names, multi, log)
            if config.training.teachers else None)
    training, validation = config.training, config.validation
    table = nested_spans([t.split() for t in texts], data.max_length) if data.nested_spans else None
    lengths = [len(encoded[k]) for k in table.roots] if table else [len(e) for e in encoded]
    sampler = BatchSampler(lengths, training.batch_tokens, multiple=data.bucket_multiple,
                           max_batch_size=training.max_batch_size or None, seed=training.seed)
    if table:
        batches = SpanBatches(classifier, encoded, spelled, labels, table, data.whole_text_weight, sampler,
                              data.bucket_multiple)
    else:
        batches = LabelledBatches(classifier, encoded, spelled, labels, sampler, data.bucket_multiple, soft)
    cap = validation.max_examples or len(valid)
    valid_texts, valid_labels = valid.texts[:cap], valid.labels[:cap]

    def validate(model) -> dict:
        scorer = TextClassifier(model, tokenizer, settings, chars=chars)  # the loop puts the model back in train mode
        return scorer.evaluate(valid_texts, valid_labels, validation.batch_size, validation.threshold)

    kind = f"{data.tokenizer}-level{' and character-level' if chars else ''} {'multi-label' if multi else 'multi-class'}"
    facts = {"kind": kind, "examples": keep, "labels": names, "command": command,
             "tokenizer": f"{data.tokenizer}, {tokenizer.vocab_size} ids" + (f", {chars.vocab_size} characters" if chars else ""),
             "parameters": count_parameters(model)}
    if table:
        facts["spans"] = (f"{len(table)} roots (texts inside no other training text) hold the {table.num_spans} "
                          f"labelled spans of the {keep} training examples, {table.num_spans / len(table):.1f} per root; "
                          f"a root's whole text weighs {data.whole_text_weight}")

    def save_model(folder, model, summary):
        checkpoint.save_model(folder, model, config.model.model_type, args, readme=model_card(config, facts, summary))
        tokenizer.save(folder)
        if chars:
            chars.save(folder, CHARS_NAME)
        settings.save(folder)

    description = _description(config, facts, names, multi, len(valid_texts), sampler, table)
    loss = make_loss(training.label_smoothing, training.adversarial, training.adversarial_per_token,
                     training.teacher_weight if training.teachers else None, spans=bool(table))
    item = "span" if table else "example"
    units = LossUnits(item, perplexity=False,
                      loss_label=f"{'binary ' if multi else ''}cross-entropy per {item}",
                      training_note="adversarial" if training.adversarial > 0 else "")
    return TaskParts(model, batches, loss, validate, save_model, description, units)
