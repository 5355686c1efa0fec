"""Words spelled as character ids, and a batch's distinct spellings as the arrays a character encoder reads.

    spell("unflinchingly", index, 8)        # ids of "unfl" + "ngly": first and last characters
    batch_spellings(spellings, steps=T, max_chars=C)   # -> chars (U, C), char_lengths (U,), spelling_ids (B, T)

A model folder that spells words keeps its character vocabulary in ``chars.json``
(:data:`CHARS_NAME`) beside the word tokenizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import mlx.core as mx
import numpy as np

from mlxseq.data.tokenizer import PAD_ID, UNK_ID, CharTokenizer

CHARS_NAME = "chars"


def read_chars(folder) -> CharTokenizer | None:
    """The character vocabulary of a model folder (``chars.json``), or None if its model does not spell words."""
    return CharTokenizer.load(folder, CHARS_NAME) if (Path(folder) / f"{CHARS_NAME}.json").is_file() else None


def spell(word: str, index: dict[str, int], max_chars: int) -> list[int]:
    """Character ids of ``word``: all of them, or the first and last ones of a longer word."""
    if len(word) > max_chars:
        word = word[: (max_chars + 1) // 2] + word[len(word) - max_chars // 2 :]
    return [index.get(c, UNK_ID) for c in word] or [UNK_ID]


def batch_spellings(spellings: Sequence[Sequence[Sequence[int]]], steps: int, max_chars: int,
                    multiple: int = 64) -> tuple[mx.array, mx.array, mx.array]:
    """The distinct spellings of a batch of B sequences of spelled words, and where each word's is.

    Returns:
        chars: int32 ``(U, C)``, one row per distinct spelling, ``C = max_chars``; row 0 is the
            padding word (one ``<pad>``); ``U`` is padded with such rows to a multiple of ``multiple``.
            Data-parallel training gives every rank the whole table (see ``whole_arrays`` in
            :class:`mlxseq.tasks.batches.SamplerBatches`).
        char_lengths: int32 ``(U,)``, >= 1 (recurrent layers need a length >= 1).
        spelling_ids: int32 ``(B, T)``, ``T = steps``: the row of ``chars`` spelling word t of
            sequence b; 0 past each sequence's end.

    A word that occurs many times in a batch is spelled once: a character encoder runs over
    U rows instead of B * T (about 400 instead of 1,000 for 1,000-token batches of SST-2 phrases),
    and its output is gathered back to (B, T). Shapes stay few: C is fixed and U is rounded up.
    """
    rows: dict[tuple[int, ...], int] = {(PAD_ID,): 0}
    ids = np.zeros((len(spellings), steps), dtype=np.int32)
    for b, words in enumerate(spellings):
        if len(words) > steps:
            raise ValueError(f"sequence {b} has {len(words)} words, more than the batch's {steps} steps")
        for t, word in enumerate(words):
            if not 1 <= len(word) <= max_chars:
                raise ValueError(f"word {t} of sequence {b} has {len(word)} characters; expected 1 to {max_chars}")
            ids[b, t] = rows.setdefault(tuple(word), len(rows))
    count = -(-len(rows) // multiple) * multiple
    chars = np.full((count, max_chars), PAD_ID, dtype=np.int32)
    lengths = np.ones(count, dtype=np.int32)
    for word, row in rows.items():
        chars[row, : len(word)] = word
        lengths[row] = len(word)
    return mx.array(chars), mx.array(lengths), mx.array(ids)
