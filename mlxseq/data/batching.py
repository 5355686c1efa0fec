"""Batches with few distinct shapes: length buckets under a token budget, padding, BPTT chunks.

``mx.compile`` traces a function once per input shape and keeps every trace, so
a training loop fed arbitrary (B, T) shapes recompiles and grows without end.
Everything here therefore rounds lengths up to a multiple (or to fixed bucket
boundaries) and keeps each bucket's batch size fixed, so an epoch uses a small,
known set of shapes (:meth:`BatchSampler.shapes`), the same in every epoch.

Public API::

    padded_length(length, multiple=8, boundaries=None) -> int
    pad_batch(sequences, pad_id=0, multiple=8) -> (ids (B, T) int32, lengths (B,) int32)
    pad_pairs(sources, targets, ...) -> PairBatch   # decoder input <s>+y, target y+</s>
    pair_lengths(sources, targets) -> (N, 2) lengths as pad_pairs pads them
    BatchSampler(lengths, max_tokens, ...)          # bucketed, shuffled, resumable
    StreamBatcher(tokens, batch_size, seq_len)      # contiguous chunks for truncated BPTT

Both iterators hold a position ``(epoch, index)``: ``index`` counts the batches
of ``epoch`` already handed out. ``for batch in it`` yields the rest of the
current epoch and then moves to the next; ``state_dict()`` taken after a batch
was used resumes with the batch after it.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import mlx.core as mx
import numpy as np

from mlxseq.data.tokenizer import BOS_ID, EOS_ID, PAD_ID

STATE_VERSION = 1


def padded_length(length: int, multiple: int = 8, boundaries: Sequence[int] | None = None) -> int:
    """The length a sequence of ``length`` is padded to (at least 1 step).

    With ``boundaries`` (increasing), the smallest boundary >= length; otherwise
    ``length`` rounded up to a multiple of ``multiple``.
    """
    length = max(int(length), 1)
    if boundaries is not None:
        index = int(np.searchsorted(np.asarray(boundaries), length))
        if index == len(boundaries):
            raise ValueError(f"length {length} exceeds the largest bucket boundary {boundaries[-1]}")
        return int(boundaries[index])
    if multiple < 1:
        raise ValueError(f"multiple must be a positive integer, got {multiple}")
    return -(-length // multiple) * multiple


def _check_boundaries(boundaries: Sequence[int] | None) -> None:
    if boundaries is not None and (
        len(boundaries) == 0 or boundaries[0] < 1 or any(b >= c for b, c in zip(boundaries, boundaries[1:]))
    ):
        raise ValueError(f"boundaries must be positive and strictly increasing, got {list(boundaries)}")


def pad_batch(
    sequences: Sequence[Sequence[int]],
    pad_id: int = PAD_ID,
    multiple: int = 8,
    *,
    boundaries: Sequence[int] | None = None,
) -> tuple[mx.array, mx.array]:
    """Pad id sequences into one array.

    Returns:
        ids: int32 ``(B, T)``, row ``b`` is ``sequences[b]`` then ``pad_id``;
            ``T = padded_length(max length, multiple, boundaries)``.
        lengths: int32 ``(B,)``, the unpadded lengths (what recurrent layers take).
    """
    if len(sequences) == 0:
        raise ValueError("cannot pad an empty batch")
    lengths = np.array([len(s) for s in sequences], dtype=np.int32)
    if lengths.min() == 0:
        empty = int(np.argmin(lengths))
        raise ValueError(f"sequence {empty} of the batch is empty; recurrent layers need length >= 1")
    _check_boundaries(boundaries)
    ids = np.full((len(sequences), padded_length(lengths.max(), multiple, boundaries)), pad_id, dtype=np.int32)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = sequence
    return mx.array(ids), mx.array(lengths)


def pad_frames(
    sequences: Sequence[np.ndarray],
    multiple: int = 8,
    *,
    boundaries: Sequence[int] | None = None,
) -> tuple[mx.array, mx.array]:
    """Pad sequences of feature vectors (``(T_b, F)`` each) with zeros into one array.

    Returns:
        frames: float32 ``(B, T, F)``; ``T = padded_length(max length, multiple, boundaries)``.
        lengths: int32 ``(B,)``, the unpadded lengths.
    """
    if len(sequences) == 0:
        raise ValueError("cannot pad an empty batch")
    lengths = np.array([len(s) for s in sequences], dtype=np.int32)
    if lengths.min() == 0:
        raise ValueError(f"sequence {int(np.argmin(lengths))} of the batch is empty; recurrent layers need length >= 1")
    _check_boundaries(boundaries)
    frames = np.zeros((len(sequences), padded_length(lengths.max(), multiple, boundaries), sequences[0].shape[1]),
                      dtype=np.float32)
    for row, sequence in enumerate(sequences):
        frames[row, : len(sequence)] = sequence
    return mx.array(frames), mx.array(lengths)


@dataclass
class PairBatch:
    """A padded batch of translation pairs (S source length, T target length + 1).

    Attributes:
        source: int32 ``(B, S)`` source ids.
        source_lengths: int32 ``(B,)``.
        target_input: int32 ``(B, T)``, ``<s> y`` (what the decoder reads).
        target_output: int32 ``(B, T)``, ``y </s>`` (what the decoder predicts).
        target_lengths: int32 ``(B,)``, ``len(y) + 1``; positions past it are padding
            and must be masked out of the loss.
    """

    source: mx.array
    source_lengths: mx.array
    target_input: mx.array
    target_output: mx.array
    target_lengths: mx.array


def pad_pairs(
    sources: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    *,
    pad_id: int = PAD_ID,
    bos_id: int = BOS_ID,
    eos_id: int = EOS_ID,
    multiple: int = 8,
    boundaries: Sequence[int] | None = None,
) -> PairBatch:
    """Pad source/target id pairs; targets get ``<s>`` in front (input) and ``</s>`` behind (output)."""
    if len(sources) != len(targets):
        raise ValueError(f"got {len(sources)} sources but {len(targets)} targets")
    source, source_lengths = pad_batch(sources, pad_id, multiple, boundaries=boundaries)
    decoder_input = [[bos_id, *y] for y in targets]
    decoder_target = [[*y, eos_id] for y in targets]
    target_input, target_lengths = pad_batch(decoder_input, pad_id, multiple, boundaries=boundaries)
    target_output, _ = pad_batch(decoder_target, pad_id, multiple, boundaries=boundaries)
    return PairBatch(source, source_lengths, target_input, target_output, target_lengths)


def pair_lengths(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> np.ndarray:
    """``(N, 2)`` lengths as :func:`pad_pairs` sees them: ``len(x)`` and ``len(y) + 1`` (for <s>/</s>)."""
    if len(sources) != len(targets):
        raise ValueError(f"got {len(sources)} sources but {len(targets)} targets")
    return np.array([[len(x), len(y) + 1] for x, y in zip(sources, targets)], dtype=np.int64).reshape(-1, 2)


class _Resumable(ABC):
    """An epoch-by-epoch iterator with a saved position ``(epoch, index)``.

    Subclasses give ``__len__`` (batches per epoch), ``_batch(epoch, i)`` and
    ``_settings()`` (what must match for a saved position to mean the same batches).
    """

    epoch: int = 0
    index: int = 0

    def __iter__(self):
        epoch = self.epoch
        for i in range(self.index, len(self)):
            # Advance before yielding: a state saved after this batch was used resumes after it.
            self.index = i + 1
            yield self._batch(epoch, i)
        self.epoch, self.index = epoch + 1, 0

    def state_dict(self) -> dict:
        """The position and the settings it is valid for (JSON-serializable)."""
        return {"version": STATE_VERSION, "epoch": self.epoch, "index": self.index, **self._settings()}

    def load_state_dict(self, state: dict) -> None:
        """Resume at a position from :meth:`state_dict`; the data and settings must be the same."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"batching state version {state.get('version')!r} is not supported (expected {STATE_VERSION})"
            )
        for key, value in self._settings().items():
            if state.get(key) != value:
                raise ValueError(
                    f"batching state was saved with {key}={state.get(key)!r}, this batching has {key}={value!r}; "
                    "the saved position would point at different batches"
                )
        epoch, index = int(state["epoch"]), int(state["index"])
        if epoch < 0 or not 0 <= index <= len(self):
            raise ValueError(f"batching position (epoch {epoch}, index {index}) is outside [0, {len(self)}]")
        self.epoch, self.index = epoch, index

    @abstractmethod
    def __len__(self) -> int:
        """Batches per epoch."""

    @abstractmethod
    def _batch(self, epoch: int, i: int):
        """Batch ``i`` of ``epoch``."""

    @abstractmethod
    def _settings(self) -> dict:
        """What must match for a saved position to mean the same batches."""


class BatchSampler(_Resumable):
    """Groups examples of similar length into batches under a token budget.

    Each example's lengths (one per side: source and target, or a single
    length) are padded with :func:`padded_length`; examples with the same
    padded lengths form a bucket. A bucket's batches all have
    ``B = max_tokens // max(padded lengths)`` examples (capped by
    ``max_batch_size``) except one smaller remainder, so ``B x T <= max_tokens``
    for every side and an epoch has at most two shapes per bucket.

    Pass lengths as they will be padded: for translation
    :func:`pair_lengths` (target + 1 for <s>/</s>), and pad with the same
    ``multiple``/``boundaries``, so batches have exactly the shapes of :meth:`shapes`.

    Each epoch shuffles the examples within buckets and the order of batches
    with ``numpy.random.default_rng([seed, epoch])``: the same seed and epoch
    give the same batches, another epoch another order. Iteration yields int64
    arrays of example indices.

    Args:
        lengths: ``(N,)`` or ``(N, K)`` integer lengths.
        max_tokens: budget for ``B x T`` of the longer side of a batch.
        multiple: pad lengths up to a multiple of this. Default: 8.
        boundaries: pad lengths up to these increasing bucket lengths instead.
        max_batch_size: cap on ``B``; default none.
        shuffle: shuffle each epoch; ``False`` keeps buckets and examples in order.
        seed: base of each epoch's random generator. Default: 0.
    """

    def __init__(
        self,
        lengths: Sequence[int] | Sequence[Sequence[int]] | np.ndarray,
        max_tokens: int,
        *,
        multiple: int = 8,
        boundaries: Sequence[int] | None = None,
        max_batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
    ):
        lengths = np.asarray(lengths, dtype=np.int64)
        lengths = lengths[:, None] if lengths.ndim == 1 else lengths
        if lengths.ndim != 2 or len(lengths) == 0:
            raise ValueError(f"lengths must be a non-empty (N,) or (N, K) array, got shape {lengths.shape}")
        _check_boundaries(boundaries)
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be a positive integer or None, got {max_batch_size}")
        self.max_tokens, self.seed, self.shuffle = int(max_tokens), int(seed), shuffle
        self.multiple, self.boundaries, self.max_batch_size = multiple, boundaries, max_batch_size
        padded = np.vectorize(lambda n: padded_length(n, multiple, boundaries), otypes=[np.int64])(lengths)
        longest = padded.max(axis=1)
        if longest.max() > self.max_tokens:
            i = int(np.argmax(longest))
            raise ValueError(
                f"example {i} pads to length {int(longest[i])}, more than max_tokens={self.max_tokens}: "
                "raise max_tokens or filter long examples (read_parallel's max_length)"
            )
        keys, bucket_of = np.unique(padded, axis=0, return_inverse=True)
        bucket_of = bucket_of.reshape(-1)
        self._buckets = []  # (padded lengths, member indices in order, batch size)
        for b, key in enumerate(keys):
            size = self.max_tokens // int(key.max())
            size = min(size, max_batch_size) if max_batch_size else size
            self._buckets.append((tuple(int(k) for k in key), np.flatnonzero(bucket_of == b), size))
        self._num_batches = sum(-(-len(members) // size) for _, members, size in self._buckets)
        self._fingerprint = zlib.crc32(lengths.tobytes()) ^ len(lengths)
        self._plan: tuple[int, list[np.ndarray]] | None = None
        self.epoch, self.index = 0, 0

    def __len__(self) -> int:
        return self._num_batches

    def batches(self, epoch: int) -> list[np.ndarray]:
        """All batches of ``epoch`` in order, each an array of example indices."""
        rng = np.random.default_rng([self.seed, epoch])
        batches = []
        for _, members, size in self._buckets:
            members = rng.permutation(members) if self.shuffle else members
            batches.extend(members[start : start + size] for start in range(0, len(members), size))
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def shapes(self) -> set[tuple[int, ...]]:
        """Distinct ``(B, T_1, ..., T_K)`` of the padded batches, the same set in every epoch.

        Its size is at most twice the number of buckets (a full size and a
        remainder each), i.e. at most ``2 * prod_k(distinct padded lengths of side k)``.
        """
        shapes = set()
        for key, members, size in self._buckets:
            shapes.add((min(size, len(members)), *key))
            if len(members) % size:
                shapes.add((len(members) % size, *key))
        return shapes

    def _batch(self, epoch: int, i: int) -> np.ndarray:
        if self._plan is None or self._plan[0] != epoch:
            self._plan = (epoch, self.batches(epoch))
        return self._plan[1][i]

    def _settings(self) -> dict:
        return {
            "seed": self.seed, "shuffle": self.shuffle, "max_tokens": self.max_tokens, "multiple": self.multiple,
            "boundaries": None if self.boundaries is None else [int(b) for b in self.boundaries],
            "max_batch_size": self.max_batch_size, "lengths_crc32": self._fingerprint,
        }


class StreamBatcher(_Resumable):
    """Contiguous chunks of one token stream for truncated backpropagation through time.

    The stream is cut into ``B`` equal parallel streams (row ``b`` holds tokens
    ``[b*L, (b+1)*L)``, ``L = len(tokens) // B``; the leftover tail is dropped).
    Batch ``i`` holds steps ``[i*T, (i+1)*T)`` of every stream, so row ``b`` of
    batch ``i + 1`` continues row ``b`` of batch ``i``: carry the hidden state
    across batches and reset it when an epoch starts (``index`` back to 0).
    Targets are the inputs shifted by one step within each stream.

    Args:
        tokens: the token ids of the whole text, in order.
        batch_size: ``B`` parallel streams.
        seq_len: ``T`` steps per batch.
        drop_last: drop the final shorter chunk (default), so every batch is ``(B, T)``.

    Iteration yields ``(inputs, targets)``, both int32 ``(B, T)`` mx arrays.
    """

    def __init__(
        self, tokens: Sequence[int] | np.ndarray, batch_size: int, seq_len: int, *, drop_last: bool = True
    ):
        tokens = np.asarray(tokens, dtype=np.int32).reshape(-1)
        if batch_size < 1 or seq_len < 1:
            raise ValueError(f"batch_size and seq_len must be positive, got {batch_size} and {seq_len}")
        per_stream = len(tokens) // batch_size
        steps = per_stream - 1  # the last token of a stream is only ever a target
        count = steps // seq_len if drop_last else -(-steps // seq_len)
        if count < 1:
            raise ValueError(
                f"{len(tokens)} tokens make {batch_size} streams of {per_stream}, too short for one batch of "
                f"{seq_len} steps (needs {batch_size * (seq_len + 1)} tokens)"
            )
        self.batch_size, self.seq_len, self.drop_last = batch_size, seq_len, drop_last
        self.streams = tokens[: batch_size * per_stream].reshape(batch_size, per_stream)  # (B, L)
        self._count, self._steps = count, steps
        self._fingerprint = zlib.crc32(tokens.tobytes()) ^ len(tokens)
        self.epoch, self.index = 0, 0

    def __len__(self) -> int:
        return self._count

    def _batch(self, epoch: int, i: int) -> tuple[mx.array, mx.array]:
        start = i * self.seq_len
        stop = min(start + self.seq_len, self._steps)
        return mx.array(self.streams[:, start:stop]), mx.array(self.streams[:, start + 1 : stop + 1])

    def _settings(self) -> dict:
        return {
            "batch_size": self.batch_size, "seq_len": self.seq_len, "drop_last": self.drop_last,
            "tokens_crc32": self._fingerprint,
        }
