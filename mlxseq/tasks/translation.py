"""``task: translation``: parallel text files to a trained ``seq2seq`` model folder.

:func:`prepare` (1) reads the training and validation pairs, (2) trains the
tokenizer(s) into ``RUN/tokenizer/`` or reuses the ones there, (3) encodes the
pairs and drops training pairs longer than ``data.max_length`` tokens, (4) builds
the model with vocabulary sizes and special ids from the tokenizers, (5) batches
with :class:`mlxseq.data.BatchSampler` (length buckets under the token budget, so
the compiled step sees few shapes), and returns the loss, the validation
callback and the model-folder writer.

Validation reports ``loss`` (plain cross-entropy per target token) and ``ppl``
over the validation pairs, and, unless ``validation.bleu`` is off, ``bleu``,
``chrf`` and ``exact`` (percent of outputs equal to the reference) of the
detokenized greedy (or beam) translations against the raw references, with
sacrebleu's signatures.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Literal

import mlx.core as mx
import numpy as np

from mlxseq.layers import count_parameters
from mlxseq import checkpoint
from mlxseq.data import (
    BOS_ID, EOS_ID, PAD_ID, BatchSampler, CharTokenizer, DataError, SentencePieceConfig,
    TokenizerPair, WordTokenizer, pad_pairs, pair_lengths, padded_length, read_parallel,
    train_sentencepiece_pair,
)
from mlxseq.decoding.args import DecodingArgs
from mlxseq.losses import label_smoothed_cross_entropy
from mlxseq.models import model_module
from mlxseq.tasks.config_paths import from_config_key
from mlxseq.tasks import TaskParts
from mlxseq.tasks.batches import SamplerBatches
from mlxseq.tasks.model_card import card_heading, scores_table, training_section
from mlxseq.tasks.run_tokenizer import tokenizer_for_run

NAME = "translation"
MODEL_TYPES = ("seq2seq",)
FILLED_MODEL_FIELDS = {
    "src_vocab_size": "set by the task from the source tokenizer (its size: data.sentencepiece.vocab_size)",
    "tgt_vocab_size": "set by the task from the target tokenizer (its size: data.sentencepiece.vocab_size)",
    "pad_id": f"set by the task: the tokenizers' <pad> id ({PAD_ID})",
    "bos_id": f"set by the task: the tokenizers' <s> id ({BOS_ID})",
    "eos_id": f"set by the task: the tokenizers' </s> id ({EOS_ID})",
}
METRICS = ("loss", "ppl", "bleu", "chrf", "exact")


@dataclass
class DataArgs:
    train_src: str  # training sources, one sentence per line (UTF-8, plain or gzip)
    train_tgt: str  # training targets: line i translates line i of train_src
    valid_src: str  # validation sources
    valid_tgt: str  # validation references (raw text: BLEU and chrF are computed on it)
    # sentencepiece (subwords); word or char (whitespace words / characters, for toy data)
    tokenizer: Literal["sentencepiece", "word", "char"] = "sentencepiece"
    joint_vocab: bool = True  # one vocabulary trained on both sides; false: one per side
    sentencepiece: SentencePieceConfig = field(default_factory=SentencePieceConfig)  # vocab_size, model_type, ...
    min_frequency: int = 1  # word and char tokenizers: rarer tokens become <unk>
    max_length: int = 100  # drop training pairs with a side longer than this many tokens
    max_train_pairs: int = 0  # use only the first N training pairs; 0 = all
    bucket_multiple: int = 8  # pad lengths up to a multiple of this: fewer shapes, fewer compiled traces


@dataclass
class ValidationArgs:
    decode: Literal["greedy", "beam"] = "greedy"  # how the translations for BLEU and chrF are made
    beam_size: int = DecodingArgs.beam_size  # beam: hypotheses kept per sentence
    length_penalty: float = DecodingArgs.length_penalty  # beam: GNMT alpha; 0 ranks by the summed log-probability
    max_sentences: int = 0  # validate on the first N pairs only (loss and BLEU); 0 = all
    batch_size: int = 64  # sentences decoded at once
    max_length_ratio: float = DecodingArgs.max_length_ratio  # decode at most ratio x source tokens + offset
    bleu: bool = True  # decode and score BLEU, chrF and exact; false: loss and ppl only (faster)


def check_config(config) -> list[tuple[str, str]]:
    """Settings that clash across sections, as (dotted key, message)."""
    data, training, validation = config.data, config.training, config.validation
    problems = []
    longest = padded_length(data.max_length + 1, data.bucket_multiple)  # +1: <s> or </s>
    if training.batch_tokens < longest:
        problems.append(("training.batch_tokens", (
            f"{training.batch_tokens} cannot hold one pair of data.max_length={data.max_length} tokens "
            f"(padded to {longest} with <s>/</s>); raise it or lower data.max_length")))
    known = METRICS if validation.bleu else METRICS[:2]
    if training.metric not in known:
        problems.append(("training.metric", f"must be one of {', '.join(known)} here, got {training.metric!r}"))
    if min(data.max_length, data.bucket_multiple, data.min_frequency) < 1 or data.max_train_pairs < 0:
        problems.append(("data", "max_length, bucket_multiple and min_frequency must be >= 1, max_train_pairs >= 0"))
    if validation.beam_size < 1 or validation.batch_size < 1 or validation.max_length_ratio <= 0:
        problems.append(("validation", "beam_size and batch_size must be >= 1, max_length_ratio > 0"))
    return problems


# --- data ---------------------------------------------------------------------------------


def _read(data: DataArgs, side: str):
    src, tgt = getattr(data, f"{side}_src"), getattr(data, f"{side}_tgt")
    with from_config_key(lambda path: f"data.{side}_src" if path == os.fspath(src) else f"data.{side}_tgt"):
        return read_parallel(src, tgt)


def _tokenizer_settings(data: DataArgs) -> dict:
    settings = {"tokenizer": data.tokenizer, "joint_vocab": data.joint_vocab, "train_src": data.train_src,
                "train_tgt": data.train_tgt, "max_train_pairs": data.max_train_pairs}
    if data.tokenizer == "sentencepiece":
        settings["sentencepiece"] = dataclasses.asdict(data.sentencepiece)
    else:
        settings["min_frequency"] = data.min_frequency
    return settings


def _train_tokenizers(data: DataArgs, source: list[str], target: list[str]) -> TokenizerPair:
    if data.tokenizer == "sentencepiece":
        try:
            return train_sentencepiece_pair(source, target, data.sentencepiece, joint=data.joint_vocab)
        except ValueError as error:
            raise DataError(f"cannot train the tokenizer: {error} (see data.sentencepiece.vocab_size)", data.train_src) from None
    build = WordTokenizer.build if data.tokenizer == "word" else CharTokenizer.build
    if data.joint_vocab:
        shared = build(source + target, min_frequency=data.min_frequency)
        return TokenizerPair(shared, shared)
    return TokenizerPair(build(source, min_frequency=data.min_frequency), build(target, min_frequency=data.min_frequency))


def tokenizers_for_run(data: DataArgs, source: list[str], target: list[str], run_dir, *, resuming: bool, log=None):
    """The run's tokenizers: reused from ``RUN/tokenizer/`` if trained with the same settings, else trained there."""
    return tokenizer_for_run(
        run_dir, _tokenizer_settings(data), lambda: _train_tokenizers(data, source, target),
        lambda pair, folder: pair.save(folder), TokenizerPair.load, resuming=resuming, log=log,
        description=f"{data.tokenizer} tokenizer{'' if data.joint_vocab else 's'} on {len(source)} pairs",
    )


class PairBatches(SamplerBatches):
    """Training batches ``(source, source_lengths, target_input, target_output)`` in BatchSampler order."""

    def __init__(self, sources: list[list[int]], targets: list[list[int]], sampler: BatchSampler, multiple: int):
        super().__init__(sampler)
        self.sources, self.targets, self.multiple = sources, targets, multiple

    def __iter__(self):
        for indices in self.sampler:
            batch = pad_pairs([self.sources[i] for i in indices], [self.targets[i] for i in indices], multiple=self.multiple)
            yield batch.source, batch.source_lengths, batch.target_input, batch.target_output


def make_loss(smoothing: float):
    """``loss(model, batch) -> (summed label-smoothed cross-entropy, target tokens)``."""

    def loss(model, batch):
        source, source_lengths, target_input, target_output = batch
        logits = model(source, source_lengths, target_input)  # (B, T, V)
        return label_smoothed_cross_entropy(logits, target_output, PAD_ID, smoothing)

    return loss


# --- validation -----------------------------------------------------------------------------


def make_validate(sources, targets, texts: list[str], references: list[str], tokenizers: TokenizerPair,
                  settings: ValidationArgs, batch_tokens: int, multiple: int):
    """``validate(model) -> metrics``: loss over the encoded pairs, scores of translating ``texts``."""
    lengths = pair_lengths(sources, targets)
    budget = max(batch_tokens, int(max(padded_length(n, multiple) for n in lengths.max(axis=1))))
    sampler = BatchSampler(lengths, budget, multiple=multiple, shuffle=False)
    batches = [list(indices) for indices in sampler.batches(0)]

    def validate(model) -> dict:
        total = count = 0.0
        for indices in batches:
            batch = pad_pairs([sources[i] for i in indices], [targets[i] for i in indices], multiple=multiple)
            logits = model(batch.source, batch.source_lengths, batch.target_input)
            loss_sum, tokens = label_smoothed_cross_entropy(logits, batch.target_output, PAD_ID, 0.0)
            mx.eval(loss_sum, tokens)
            total, count = total + loss_sum.item(), count + tokens.item()
        metrics = {"loss": total / count, "ppl": math.exp(min(total / count, 700.0))}
        if settings.bleu:
            metrics.update(score_validation(model, texts, references, tokenizers, settings))
        return metrics

    return validate


def score_validation(model, sources: list[str], references: list[str], tokenizers: TokenizerPair,
                     settings: ValidationArgs) -> dict:
    """BLEU, chrF (with signatures) and exact matches of the model's translations of ``sources``.

    Decodes as ``mlxseq translate`` does (:class:`mlxseq.pipelines.translator.Translator`), so the
    scores logged in training are the ones a user of the model folder gets.
    """
    from mlxseq.metrics import score_translations
    from mlxseq.pipelines.translator import Translator

    beam = settings.decode == "beam"
    options = DecodingArgs(
        beam_size=settings.beam_size if beam else 1, length_penalty=settings.length_penalty,
        max_length_ratio=settings.max_length_ratio, batch_size=settings.batch_size,
        max_input_tokens=2**31 - 1,  # validation scores every sentence, however long
    )
    found = Translator(model, tokenizers).translate(sources, options)
    hypotheses = [hyps[0].text for hyps in found]
    scores = score_translations(hypotheses, references)
    return {
        "bleu": scores.bleu,
        "chrf": scores.chrf,
        "exact": 100.0 * float(np.mean([h == r for h, r in zip(hypotheses, references)])),
        "bleu_signature": scores.bleu_signature,
        "chrf_signature": scores.chrf_signature,
        "decoding": f"{options.signature()}, {len(hypotheses)} sentences",
    }


# --- the model folder ---------------------------------------------------------------------------


def model_card(config, facts: dict, summary: dict) -> str:
    """README.md of a model folder: what was trained on what, how, and its scores with their settings."""
    data, metrics = config.data, summary.get("metrics") or {}
    lines = card_heading(config, "seq2seq translation model", summary, "translation",
                         [data.train_src, data.train_tgt, data.valid_src, data.valid_tgt])
    lines += scores_table(
        f"On the validation set {data.valid_src} -> {data.valid_tgt} ({metrics.get('decoding', 'loss only')}):", metrics)
    if metrics:
        lines += [""] + [f"- {k}: `{metrics[k]}`" for k in ("bleu_signature", "chrf_signature") if k in metrics]
    best = summary.get("best") or {}
    if best.get("value") is not None:
        lines += ["", f"Best validation {best['metric']}: {best['value']:.4g} at step {best['step']}."]
    lines += [
        "", "## Data", "",
        f"- training pairs: {data.train_src} -> {data.train_tgt}: {facts['train_pairs']} kept "
        f"({facts['dropped']} longer than {data.max_length} tokens dropped)",
        f"- tokenizer: {facts['tokenizer']}",
    ]
    lines += training_section(facts["command"], facts["parameters"], " Load it with")
    lines += ["```python", "import mlxseq", 'model = mlxseq.load("path/to/this/folder")', "```", ""]
    return "\n".join(lines)


def _describe_tokenizers(data: DataArgs, pair: TokenizerPair) -> str:
    kind = f"sentencepiece {data.sentencepiece.model_type}" if data.tokenizer == "sentencepiece" else data.tokenizer
    if pair.joint:
        return f"{kind}, one vocabulary of {pair.source.vocab_size} for both sides"
    return f"{kind}, vocabularies of {pair.source.vocab_size} (source) and {pair.target.vocab_size} (target)"


def prepare(config, run_dir, *, resuming: bool, command: str, log=None) -> TaskParts:
    """The model, batches, loss, validation and model-folder writer for ``config``."""
    data = config.data
    train, valid = _read(data, "train"), _read(data, "valid")
    keep = data.max_train_pairs or len(train)
    train_source, train_target = train.source[:keep], train.target[:keep]
    pair = tokenizers_for_run(data, train_source, train_target, run_dir, resuming=resuming, log=log)
    sources, targets = [], []
    for x, y in zip(train_source, train_target):
        x_ids, y_ids = pair.source.encode(x), pair.target.encode(y)
        if 0 < len(x_ids) <= data.max_length and 0 < len(y_ids) <= data.max_length:
            sources.append(x_ids)
            targets.append(y_ids)
    if not sources:
        raise DataError(f"no training pair is within data.max_length={data.max_length} tokens", data.train_src)
    cap = config.validation.max_sentences or len(valid)
    valid_pairs = [(pair.source.encode(x), pair.target.encode(y), x, y) for x, y in list(valid.pairs())[:cap]]
    valid_pairs = [p for p in valid_pairs if p[0] and p[1]]  # a line of only unknown whitespace encodes to nothing
    if not valid_pairs:
        raise DataError("no validation pair encodes to tokens on both sides", data.valid_src)
    args = config.model.model_args(
        src_vocab_size=pair.source.vocab_size, tgt_vocab_size=pair.target.vocab_size,
        pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID,
    )
    model = model_module(config.model.model_type).build_model(args)
    training = config.training
    sampler = BatchSampler(
        pair_lengths(sources, targets), training.batch_tokens, multiple=data.bucket_multiple,
        max_batch_size=training.max_batch_size or None, seed=training.seed,
    )
    facts = {
        "train_pairs": len(sources), "dropped": keep - len(sources), "tokenizer": _describe_tokenizers(data, pair),
        "parameters": count_parameters(model), "command": command,
    }
    validate = make_validate(
        *(list(column) for column in zip(*valid_pairs)), pair, config.validation, training.batch_tokens, data.bucket_multiple,
    )

    def save_model(folder, model, summary):
        checkpoint.save_model(folder, model, config.model.model_type, args, readme=model_card(config, facts, summary))
        pair.save(folder)

    description = "\n".join([
        f"train: {len(sources)} pairs ({facts['dropped']} over {data.max_length} tokens dropped); "
        f"valid: {len(valid_pairs)} pairs",
        f"tokenizer: {facts['tokenizer']}",
        f"model: {config.model.model_type}, {facts['parameters']:,} parameters",
        f"batches: {len(sampler)} per epoch in {len(sampler.shapes())} shapes, at most {training.batch_tokens} tokens",
    ])
    return TaskParts(model, PairBatches(sources, targets, sampler, data.bucket_multiple),
                     make_loss(training.label_smoothing), validate, save_model, description)
