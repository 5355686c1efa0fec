"""Tests of mlxseq/models/tagger.py: padding invariance with characters and a CRF, errors."""

import mlx.core as mx
import numpy as np
import pytest

import mlxseq
from mlxseq.checkpoint import save_model
from mlxseq.data import batch_spellings
from mlxseq.models.tagger import ModelArgs, build_model


def small(**changes):
    mx.random.seed(0)
    args = ModelArgs(**{"vocab_size": 20, "num_tags": 4, "char_vocab_size": 12, "embed_size": 8, "char_embed_size": 4,
                        "char_hidden_size": 3, "hidden_size": 6, "num_layers": 2, **changes})
    model = build_model(args)
    model.eval()
    return model


def inputs(rows, lengths, char_rows, char_lengths):
    """The tagger's inputs; ``char_rows`` (B, T, C) and ``char_lengths`` (B, T) spell every word, padding included."""
    spellings = [[word[:n] for word, n in zip(words, counts)] for words, counts in zip(char_rows, char_lengths)]
    return (mx.array(rows), mx.array(lengths), *batch_spellings(spellings, len(rows[0]), len(char_rows[0][0]), multiple=4))


SENTENCE = ([5, 9, 2], [[4, 5, 0, 0], [6, 7, 8, 9], [10, 0, 0, 0]], [2, 4, 1])


@pytest.mark.parametrize("crf", [False, True])
@pytest.mark.parametrize("chars", [True, False])
def test_a_sentence_alone_and_in_a_padded_batch_gets_the_same_scores_and_tags(crf, chars):
    model = small(crf=crf, char_vocab_size=12 if chars else 0)
    words, spelled, spelled_lengths = SENTENCE
    alone = inputs([words], [3], [spelled], [spelled_lengths])
    other = ([7, 7, 8, 9, 10], [[4, 4, 4, 4]] * 5, [4] * 5)
    padding = [[11, 11, 11, 11]] * 2  # padded words with non-pad characters: must not matter
    batch = inputs([other[0], words + [13, 14]], [5, 3], [other[1], spelled + padding], [other[2], spelled_lengths + [1, 1]])
    a = model.emissions(*alone)
    b = model.emissions(*batch)[1:, :3]
    assert np.allclose(np.array(a), np.array(b), atol=1e-5)
    assert model.decode(*alone)[0] == model.decode(*batch)[1] and len(model.decode(*batch)[1]) == 3


def test_word_dropout_applies_in_training_only():
    model = small(word_dropout=0.99, dropout=0.0, char_vocab_size=0)
    words = mx.array([[5, 6, 7, 8]])
    lengths = mx.array([4])
    evaluated = np.array(model.emissions(words, lengths))
    model.train()
    trained = np.array(model.emissions(words, lengths))
    unknown = np.array(model.emissions(mx.full((1, 4), 1), lengths))  # every word <unk>
    model.eval()
    assert not np.allclose(evaluated, trained) and np.allclose(trained, unknown, atol=1e-5)


def test_the_model_folder_round_trips(tmp_path):
    model = small(crf=True)
    save_model(tmp_path, model, "tagger", model.args)
    loaded = mlxseq.load(tmp_path)
    words, spelled, spelled_lengths = SENTENCE
    batch = inputs([words], [3], [spelled], [spelled_lengths])
    assert np.array_equal(np.array(loaded.emissions(*batch)), np.array(model.emissions(*batch)))
    assert np.array_equal(np.array(loaded.crf.transitions), np.array(model.crf.transitions))


def test_missing_characters_are_named():
    with pytest.raises(ValueError, match=r"this model spells words: expected chars \(U, C\), char_lengths \(U,\) "
                                         r"and spelling_ids \(B, T\) with B, T = 1, 2, got shapes None, None and None"):
        small().emissions(mx.array([[1, 2]]), mx.array([2]))
