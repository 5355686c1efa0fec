"""Words spelled as character ids, padded into the arrays a character encoder reads.

    spell("unflinchingly", index, 8)        # ids of "unfl" + "ngly": first and last characters
    pad_spellings(spellings, steps=T, max_chars=C)   # -> chars (B, T, C), char_lengths (B, T)

A model folder that spells words keeps its character vocabulary in ``chars.json``
(:data:`CHARS_NAME`) beside the word tokenizer.
"""

from __future__ import annotations

from typing import Sequence

import mlx.core as mx
import numpy as np

from mlxseq.data.tokenizer import PAD_ID, UNK_ID

CHARS_NAME = "chars"


def spell(word: str, index: dict[str, int], max_chars: int) -> list[int]:
    """Character ids of ``word``: all of them, or the first and last ones of a longer word."""
    if len(word) > max_chars:
        word = word[: (max_chars + 1) // 2] + word[len(word) - max_chars // 2 :]
    return [index.get(c, UNK_ID) for c in word] or [UNK_ID]


def pad_spellings(spellings: Sequence[Sequence[Sequence[int]]], steps: int, max_chars: int) -> tuple[mx.array, mx.array]:
    """``chars`` int32 (B, T, C) and ``char_lengths`` int32 (B, T) of B sequences of spelled words.

    ``T = steps`` (the padded word length of the batch) and ``C = max_chars`` for every batch,
    so compiled shapes stay few. A padding word is one ``<pad>`` (length 1): recurrent layers
    need a length >= 1, and the words past a sequence's length are never read.
    """
    chars = np.full((len(spellings), steps, max_chars), PAD_ID, dtype=np.int32)
    lengths = np.ones((len(spellings), steps), dtype=np.int32)
    for b, words in enumerate(spellings):
        if len(words) > steps:
            raise ValueError(f"sequence {b} has {len(words)} words, more than the batch's {steps} steps")
        for t, ids in enumerate(words):
            if not 1 <= len(ids) <= max_chars:
                raise ValueError(f"word {t} of sequence {b} has {len(ids)} characters; expected 1 to {max_chars}")
            chars[b, t, : len(ids)] = ids
            lengths[b, t] = len(ids)
    return mx.array(chars), mx.array(lengths)
