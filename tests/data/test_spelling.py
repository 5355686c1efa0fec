"""Tests of mlxseq/data/spelling.py: words to character ids, a batch's distinct spellings."""

import numpy as np
import pytest

from mlxseq.data import PAD_ID, UNK_ID, batch_spellings, spell

INDEX = {c: i + 4 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")}


def test_a_long_word_keeps_its_first_and_last_characters():
    assert spell("cat", INDEX, 8) == [INDEX["c"], INDEX["a"], INDEX["t"]]
    assert spell("unflinchingly", INDEX, 8) == [INDEX[c] for c in "unflngly"]  # 4 first + 4 last
    assert spell("unflinchingly", INDEX, 7) == [INDEX[c] for c in "unflgly"]  # 4 first + 3 last
    assert spell("né", INDEX, 8) == [INDEX["n"], UNK_ID]  # an unseen character is <unk>
    assert spell("", INDEX, 8) == [UNK_ID]  # never empty: recurrent layers need a length >= 1


def test_a_batch_spells_each_distinct_word_once():
    chars, lengths, ids = batch_spellings([[[5, 6], [7], [5, 6]], [[7], [8, 9, 10]]], steps=4, max_chars=3, multiple=4)
    assert chars.shape == (4, 3) and lengths.shape == (4,) and ids.shape == (2, 4)
    assert np.array(chars).tolist() == [[PAD_ID] * 3, [5, 6, PAD_ID], [7, PAD_ID, PAD_ID], [8, 9, 10]]
    assert np.array(lengths).tolist() == [1, 2, 1, 3]  # row 0: the padding word, one <pad>
    assert np.array(ids).tolist() == [[1, 2, 1, 0], [2, 3, 0, 0]]  # repeated words share a row; 0 past the end
    more, more_lengths, _ = batch_spellings([[[5], [6], [7], [8], [9]]], steps=5, max_chars=3, multiple=4)
    assert more.shape == (8, 3) and np.array(more_lengths).tolist() == [1, 1, 1, 1, 1, 1, 1, 1]  # 6 rows, padded to 8
    assert np.array(more)[6:].tolist() == [[PAD_ID] * 3] * 2


def test_spellings_that_do_not_fit_are_named():
    with pytest.raises(ValueError, match="sequence 0 has 3 words, more than the batch's 2 steps"):
        batch_spellings([[[5], [6], [7]]], steps=2, max_chars=3)
    with pytest.raises(ValueError, match="word 1 of sequence 0 has 4 characters; expected 1 to 3"):
        batch_spellings([[[5], [6, 7, 8, 9]]], steps=2, max_chars=3)
    with pytest.raises(ValueError, match="word 0 of sequence 0 has 0 characters"):
        batch_spellings([[[]]], steps=2, max_chars=3)
