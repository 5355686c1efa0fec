"""Tests of mlxseq/data/spelling.py: words to character ids and padded spelling arrays."""

import numpy as np
import pytest

from mlxseq.data import PAD_ID, UNK_ID, pad_spellings, spell

INDEX = {c: i + 4 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")}


def test_a_long_word_keeps_its_first_and_last_characters():
    assert spell("cat", INDEX, 8) == [INDEX["c"], INDEX["a"], INDEX["t"]]
    assert spell("unflinchingly", INDEX, 8) == [INDEX[c] for c in "unflngly"]  # 4 first + 4 last
    assert spell("unflinchingly", INDEX, 7) == [INDEX[c] for c in "unflgly"]  # 4 first + 3 last
    assert spell("né", INDEX, 8) == [INDEX["n"], UNK_ID]  # an unseen character is <unk>
    assert spell("", INDEX, 8) == [UNK_ID]  # never empty: recurrent layers need a length >= 1


def test_spellings_are_padded_to_the_batch_steps_and_the_word_width():
    chars, lengths = pad_spellings([[[5, 6], [7]], [[8, 9, 10]]], steps=4, max_chars=3)
    assert chars.shape == (2, 4, 3) and lengths.shape == (2, 4)
    assert np.array(chars).tolist() == [
        [[5, 6, PAD_ID], [7, PAD_ID, PAD_ID], [PAD_ID] * 3, [PAD_ID] * 3],
        [[8, 9, 10], [PAD_ID] * 3, [PAD_ID] * 3, [PAD_ID] * 3],
    ]
    assert np.array(lengths).tolist() == [[2, 1, 1, 1], [3, 1, 1, 1]]  # padding words: one <pad>


def test_spellings_that_do_not_fit_are_named():
    with pytest.raises(ValueError, match="sequence 0 has 3 words, more than the batch's 2 steps"):
        pad_spellings([[[5], [6], [7]]], steps=2, max_chars=3)
    with pytest.raises(ValueError, match="word 1 of sequence 0 has 4 characters; expected 1 to 3"):
        pad_spellings([[[5], [6, 7, 8, 9]]], steps=2, max_chars=3)
    with pytest.raises(ValueError, match="word 0 of sequence 0 has 0 characters"):
        pad_spellings([[[]]], steps=2, max_chars=3)
