"""``task: lm``: text files to a trained ``lm`` model folder.

Two ways to cut the text into training examples (``data.mode``):

    stream  the text is one token stream, cut into ``B`` parallel streams read
            ``T`` tokens at a time (:class:`mlxseq.data.StreamBatcher`). The
            recurrent state at the end of a batch starts the next batch of the
            same streams, cut off from the gradient: truncated backpropagation
            through time. It is zeroed when an epoch starts again.
    lines   every non-empty line is one example ``<s> line </s>``, batched by
            length under a token budget; every line starts from a zero state.

The carried state lives in the trained module (:class:`CarriedStateLM`, frozen,
so never trained), which makes it part of the compiled step's state and of the
resume checkpoint: a resumed run carries exactly the state it stopped with.

Validation reports ``loss`` (nats per token over the whole validation text),
``ppl`` and ``bits`` (bits per token, loss / ln 2), reading the validation text
as ``validation.batch_size`` streams with the state carried the same way.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_map

from mlxseq.layers import count_parameters
from mlxseq import checkpoint
from mlxseq.data import (
    BOS_ID, EOS_ID, PAD_ID, BatchSampler, CharTokenizer, DataError, SentencePieceConfig,
    SentencePieceTokenizer, StreamBatcher, WordTokenizer, load_tokenizer, pad_pairs, pair_lengths, padded_length, read_text,
)
from mlxseq.losses import label_smoothed_cross_entropy
from mlxseq.models import model_module
from mlxseq.tasks.config_paths import from_config_key
from mlxseq.tasks import TaskParts
from mlxseq.tasks.batches import SamplerBatches
from mlxseq.tasks.model_card import card_heading, scores_table, training_section
from mlxseq.tasks.run_tokenizer import tokenizer_for_run
from mlxseq.training.distributed import current_world

NAME = "lm"
MODEL_TYPES = ("lm",)
FILLED_MODEL_FIELDS = {
    "vocab_size": "set by the task from the tokenizer",
    "bos_id": f"set by the task: the tokenizer's <s> id ({BOS_ID})",
}
METRICS = ("loss", "ppl", "bits")


@dataclass
class DataArgs:
    train: list[str]  # training text files (UTF-8, plain or gzip), read in order as one text
    valid: list[str] = field(default_factory=list)  # validation text files; empty: split off valid_fraction
    valid_fraction: float = 0.0  # without valid files: the last fraction of the training text (by character offset)
    mode: Literal["stream", "lines"] = "stream"  # stream: contiguous chunks, state carried; lines: a line per example
    tokenizer: Literal["char", "word", "sentencepiece"] = "char"  # characters, whitespace words or subwords
    sentencepiece: SentencePieceConfig = field(default_factory=SentencePieceConfig)  # vocab_size, model_type, ...
    min_frequency: int = 1  # char and word tokenizers: rarer tokens become <unk>
    batch_size: int = 64  # stream: parallel streams per batch
    seq_len: int = 128  # stream: tokens per stream and batch (backpropagation reaches this far back)
    max_length: int = 256  # lines: drop training lines longer than this many tokens
    bucket_multiple: int = 8  # lines: pad lengths up to a multiple of this (fewer compiled shapes)


@dataclass
class ValidationArgs:
    batch_size: int = 16  # streams the validation text is read as (lines: lines at once)
    seq_len: int = 256  # tokens per stream and forward pass
    max_tokens: int = 0  # validate on the first N tokens only; 0 = all


def check_config(config) -> list[tuple[str, str]]:
    """Settings that clash across sections, as (dotted key, message)."""
    data, training, validation = config.data, config.training, config.validation
    problems = []
    if not data.train:
        problems.append(("data.train", "needs at least one text file"))
    if data.valid and data.valid_fraction:
        problems.append(("data.valid_fraction", "set either data.valid (files) or data.valid_fraction, not both"))
    if not data.valid and not 0 < data.valid_fraction < 1:
        problems.append(("data.valid_fraction", f"without data.valid files it must be in (0, 1), got {data.valid_fraction}"))
    if min(data.batch_size, data.seq_len, data.max_length, data.bucket_multiple, data.min_frequency) < 1:
        problems.append(("data", "batch_size, seq_len, max_length, bucket_multiple and min_frequency must be >= 1"))
    if min(validation.batch_size, validation.seq_len) < 1 or validation.max_tokens < 0:
        problems.append(("validation", "batch_size and seq_len must be >= 1, max_tokens >= 0"))
    if training.metric not in METRICS:
        problems.append(("training.metric", f"must be one of {', '.join(METRICS)} here, got {training.metric!r}"))
    longest = padded_length(data.max_length + 1, max(data.bucket_multiple, 1))  # +1: <s> or </s>
    if data.mode == "lines" and training.batch_tokens < longest:
        problems.append(("training.batch_tokens", f"{training.batch_tokens} cannot hold one line of "
                         f"data.max_length={data.max_length} tokens (padded to {longest} with <s>/</s>); "
                         "raise it or lower data.max_length"))
    return problems


# --- the trained module ------------------------------------------------------------------


class CarriedStateLM(nn.Module):
    """A language model plus the state carried from one stream batch to the next (frozen).

    ``carry`` is ``None`` in lines mode. The loss reads it, masked by the batch's
    ``keep`` (0 at the first batch of an epoch), and writes the final state back,
    detached from the gradient.
    """

    def __init__(self, lm: nn.Module, batch_size: int | None):
        super().__init__()
        self.lm = lm
        if batch_size is not None:
            self.carry = lm.init_state(batch_size)
            self.freeze(keys=["carry"], recurse=False)


def make_stream_loss(smoothing: float = 0.0):
    """``loss(model, (inputs, targets, keep)) -> (summed cross-entropy, tokens)``; carries the state."""

    def stream_loss(model: CarriedStateLM, batch):
        inputs, targets, keep = batch  # (B, T), (B, T), (1,)
        state = tree_map(lambda s: mx.stop_gradient(s) * keep, model.carry)
        logits, final = model.lm(inputs, state)
        model.carry = tree_map(mx.stop_gradient, final)
        return label_smoothed_cross_entropy(logits, targets, -1, smoothing)  # a stream has no padding

    return stream_loss


def make_lines_loss(smoothing: float = 0.0):
    """``loss(model, (inputs, targets)) -> (summed cross-entropy, tokens)`` of padded lines; padding not counted."""

    def lines_loss(model: CarriedStateLM, batch):
        inputs, targets = batch
        logits, _ = model.lm(inputs)
        return label_smoothed_cross_entropy(logits, targets, PAD_ID, smoothing)

    return lines_loss


class StreamBatches(SamplerBatches):
    """:class:`StreamBatcher` batches plus ``keep``: 0 for the first batch of an epoch (the state restarts), else 1."""

    def __init__(self, batcher: StreamBatcher):
        super().__init__(batcher)
        self.batcher = batcher

    def __iter__(self):
        for inputs, targets in self.batcher:
            first = self.batcher.index == 1  # the batcher advances before it yields
            yield inputs, targets, mx.array([0.0 if first else 1.0])


class LineBatches(SamplerBatches):
    """Padded ``(<s> line, line </s>)`` batches in :class:`BatchSampler` order."""

    def __init__(self, lines: list[list[int]], sampler: BatchSampler, multiple: int):
        super().__init__(sampler)
        self.lines, self.multiple = lines, multiple

    def __iter__(self):
        for indices in self.sampler:
            yield line_batch([self.lines[i] for i in indices], self.multiple)


def line_batch(lines: list[list[int]], multiple: int) -> tuple[mx.array, mx.array]:
    """``(inputs, targets)``: ``<s> + line`` and ``line + </s>``, padded with <pad> to a multiple of ``multiple``."""
    batch = pad_pairs(lines, lines, multiple=multiple)
    return batch.target_input, batch.target_output


# --- data ----------------------------------------------------------------------------------


def _read(paths: list[str], key: str) -> str:
    with from_config_key(key):
        return read_text(paths)


def split_texts(data: DataArgs) -> tuple[str, str]:
    """The training and validation text: separate files, or the last ``valid_fraction`` by character offset."""
    text = _read(data.train, "data.train")
    if data.valid:
        return text, _read(data.valid, "data.valid")
    cut = int((1.0 - data.valid_fraction) * len(text))  # the conventional n = int(0.9 * len(text)) for 0.1
    return text[:cut], text[cut:]


def _tokenizer_settings(data: DataArgs) -> dict:
    settings = {"tokenizer": data.tokenizer, "train": list(data.train), "valid": list(data.valid),
                "valid_fraction": data.valid_fraction}
    if data.tokenizer == "sentencepiece":
        settings["sentencepiece"] = dataclasses.asdict(data.sentencepiece)
    else:
        settings["min_frequency"] = data.min_frequency
    return settings


def _train_tokenizer(data: DataArgs, text: str):
    if data.tokenizer == "char":
        return CharTokenizer.build(text, min_frequency=data.min_frequency)
    lines = [line for line in text.split("\n") if line.strip()]
    if data.tokenizer == "word":
        return WordTokenizer.build(lines, min_frequency=data.min_frequency)
    try:
        return SentencePieceTokenizer.train(lines, data.sentencepiece)
    except ValueError as error:
        raise DataError(f"cannot train the tokenizer: {error} (see data.sentencepiece.vocab_size)", data.train[0]) from None


def encode_stream(tokenizer, text: str) -> list[int]:
    """The ids of ``text`` as one stream: characters as they are (newlines included); words
    and subwords line by line, each line followed by ``</s>`` (where the newline was)."""
    if isinstance(tokenizer, CharTokenizer):
        return tokenizer.encode(text)
    ids: list[int] = []
    for line in text.split("\n"):
        if line.strip():
            ids += tokenizer.encode(line) + [EOS_ID]
    return ids


def encode_lines(tokenizer, text: str) -> list[list[int]]:
    """The ids of each line that has any (empty lines are skipped)."""
    encoded = (tokenizer.encode(line) for line in text.split("\n") if line.strip())
    return [ids for ids in encoded if ids]


# --- validation ----------------------------------------------------------------------------


def make_validate(tokens, lines, settings: ValidationArgs, multiple: int):
    """``validate(model) -> {loss, ppl, bits}`` over the validation stream (or lines)."""

    def finish(total: float, count: float) -> dict:
        loss = total / max(count, 1.0)
        return {"loss": loss, "ppl": math.exp(min(loss, 700.0)), "bits": loss / math.log(2.0)}

    if lines is not None:
        plain_lines_loss = make_lines_loss(0.0)

        def validate_lines(model) -> dict:
            total = count = 0.0
            for start in range(0, len(lines), settings.batch_size):
                loss_sum, n = plain_lines_loss(model, line_batch(lines[start : start + settings.batch_size], multiple))
                mx.eval(loss_sum, n)
                total, count = total + loss_sum.item(), count + n.item()
            return finish(total, count)

        return validate_lines

    streams = min(settings.batch_size, max(1, len(tokens) // 2))  # every stream needs an input and a target
    chunks = list(StreamBatcher(tokens, streams, settings.seq_len, drop_last=False))

    def validate_stream(model) -> dict:
        lm = model.lm if isinstance(model, CarriedStateLM) else model
        state, total, count = None, 0.0, 0.0
        for inputs, targets in chunks:
            logits, state = lm(inputs, state)
            loss_sum, n = label_smoothed_cross_entropy(logits, targets, -1, 0.0)
            mx.eval(loss_sum, n, state)
            total, count = total + loss_sum.item(), count + n.item()
        return finish(total, count)

    return validate_stream


# --- the model folder -------------------------------------------------------------------------


def model_card(config, facts: dict, summary: dict) -> str:
    """README.md of a model folder: data, training command and validation scores."""
    data, metrics = config.data, summary.get("metrics") or {}
    lines = card_heading(config, "recurrent language model", summary, "text-generation", [data.train, data.valid])
    lines += scores_table(f"On the validation text ({facts['valid']}):", metrics)
    if metrics:
        lines += ["", "loss is in nats per token, bits in bits per token."]
    lines += ["", "## Data", "", f"- training text: {', '.join(data.train)} ({facts['train']})",
              f"- tokenizer: {facts['tokenizer']}"]
    lines += training_section(facts["command"], facts["parameters"], " Generate with")
    lines += ["```", 'mlxseq generate --model path/to/this/folder --prompt "ROMEO:"', "```", ""]
    return "\n".join(lines)


def prepare(config, run_dir, *, resuming: bool, command: str, log=None) -> TaskParts:
    """The model, batches, loss, validation and model-folder writer for ``config``."""
    data, training = config.data, config.training
    train_text, valid_text = split_texts(data)
    if not train_text.strip():
        raise DataError("the training text is empty", data.train[0])
    tokenizer = tokenizer_for_run(
        run_dir, _tokenizer_settings(data), lambda: _train_tokenizer(data, train_text),
        lambda tok, folder: tok.save(folder), load_tokenizer, resuming=resuming, log=log,
        description=f"{data.tokenizer} tokenizer on {len(train_text):,} characters",
    )
    args = config.model.model_args(vocab_size=tokenizer.vocab_size, bos_id=BOS_ID)
    lm = model_module(config.model.model_type).build_model(args)
    if data.mode == "stream":
        tokens = encode_stream(tokenizer, train_text)
        try:
            batches = StreamBatches(StreamBatcher(tokens, data.batch_size, data.seq_len))
        except ValueError as error:
            raise DataError(f"the training text is too short: {error}", data.train[0]) from None
        rows = current_world().rows(data.batch_size)  # data parallel: the state of this rank's streams
        model, loss = CarriedStateLM(lm, rows), make_stream_loss(training.label_smoothing)
        valid_tokens = encode_stream(tokenizer, valid_text)
        if validation_cap := config.validation.max_tokens:
            valid_tokens = valid_tokens[:validation_cap]
        if len(valid_tokens) < 2:
            raise DataError("the validation text has fewer than 2 tokens", (data.valid or data.train)[0])
        validate = make_validate(valid_tokens, None, config.validation, data.bucket_multiple)
        shape = f"{len(batches)} batches of {data.batch_size} streams x {data.seq_len} tokens per epoch"
        train_size, valid_size = f"{len(tokens):,} tokens", f"{len(valid_tokens):,} tokens"
    else:
        lines = [ids for ids in encode_lines(tokenizer, train_text) if len(ids) <= data.max_length]
        if not lines:
            raise DataError(f"no training line has 1 to data.max_length={data.max_length} tokens", data.train[0])
        valid_lines = encode_lines(tokenizer, valid_text)
        if not valid_lines:
            raise DataError("the validation text has no line with tokens", (data.valid or data.train)[0])
        sampler = BatchSampler(
            pair_lengths(lines, lines)[:, 1], training.batch_tokens, multiple=data.bucket_multiple,
            max_batch_size=training.max_batch_size or None, seed=training.seed,
        )
        batches = LineBatches(lines, sampler, data.bucket_multiple)
        model, loss = CarriedStateLM(lm, None), make_lines_loss(training.label_smoothing)
        validate = make_validate(None, valid_lines, config.validation, data.bucket_multiple)
        shape = f"{len(batches)} batches per epoch in {len(sampler.shapes())} shapes, at most {training.batch_tokens} tokens"
        train_size, valid_size = f"{len(lines):,} lines", f"{len(valid_lines):,} lines"
    facts = {
        "train": train_size, "valid": valid_size, "command": command,
        "tokenizer": f"{data.tokenizer}, {tokenizer.vocab_size} ids",
        "parameters": count_parameters(lm),
    }

    def save_model(folder, model, summary):
        checkpoint.save_model(folder, model.lm, config.model.model_type, args, readme=model_card(config, facts, summary))
        tokenizer.save(folder)

    description = "\n".join([
        f"train: {train_size}; valid: {valid_size} ({data.mode} mode)",
        f"tokenizer: {facts['tokenizer']}",
        f"model: {config.model.model_type}, {facts['parameters']:,} parameters",
        f"batches: {shape}",
    ])
    return TaskParts(model, batches, loss, validate, save_model, description)
