"""Tests of mlxseq/models/classifier.py: padding invariance, probabilities, folders, errors."""

import mlx.core as mx
import numpy as np
import pytest

import mlxseq
from mlxseq.checkpoint import save_model
from mlxseq.data import batch_spellings
from mlxseq.models.classifier import ModelArgs, build_model


def small(**changes):
    mx.random.seed(0)
    args = ModelArgs(**{"vocab_size": 20, "num_classes": 3, "embed_size": 8, "hidden_size": 6, "num_layers": 2,
                        "dropout": 0.2, **changes})
    model = build_model(args)
    model.eval()
    return model


@pytest.mark.parametrize("pooling", ["final", "mean", "max", "attention"])
@pytest.mark.parametrize("rnn_type, bidirectional", [("lstm", True), ("gru", False)])
def test_a_sentence_alone_and_in_a_padded_batch_gives_the_same_logits(pooling, rnn_type, bidirectional):
    model = small(pooling=pooling, rnn_type=rnn_type, bidirectional=bidirectional)
    sentence = [5, 9, 2, 17]
    alone = model(mx.array([sentence]), mx.array([4]))
    batch = mx.array([[3, 4, 5, 6, 7, 8, 9, 10], sentence + [0, 11, 12, 13]])  # padding holds non-pad ids too
    batched = model(batch, mx.array([8, 4]))[1:]
    assert np.allclose(np.array(alone), np.array(batched), atol=1e-5)


def test_probabilities_softmax_or_one_sigmoid_per_class():
    model = small()
    p = np.array(model.probabilities(mx.array([[1, 2, 3]]), mx.array([3])))
    assert p.shape == (1, 3) and np.isclose(p.sum(), 1.0)
    multi = small(multi_label=True)
    logits = np.array(multi(mx.array([[1, 2, 3]]), mx.array([3])))
    assert np.allclose(np.array(multi.probabilities(mx.array([[1, 2, 3]]), mx.array([3]))), 1 / (1 + np.exp(-logits)))


def test_the_model_folder_round_trips(tmp_path):
    model = small(pooling="attention")
    save_model(tmp_path, model, "classifier", model.args)
    loaded = mlxseq.load(tmp_path)
    tokens, lengths = mx.array([[4, 5, 6]]), mx.array([3])
    assert np.array_equal(np.array(loaded(tokens, lengths)), np.array(model(tokens, lengths)))


def test_bad_arguments_and_shapes_are_named():
    with pytest.raises(ValueError, match="pooling must be one of"):
        ModelArgs(vocab_size=5, num_classes=2, pooling="sum")
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        ModelArgs(vocab_size=5, num_classes=1)
    with pytest.raises(ValueError, match=r"expected tokens \(B, T\) and lengths \(B,\), got shapes \(3,\) and \(1,\)"):
        small()(mx.array([1, 2, 3]), mx.array([3]))


def test_word_dropout_turns_tokens_into_unk_in_training_only():
    model = small(word_dropout=0.99, dropout=0.0)
    tokens, lengths = mx.array([[5, 6, 7, 8, 0, 0]]), mx.array([4])
    evaluated = np.array(model(tokens, lengths))
    model.train()
    trained = np.array(model(tokens, lengths))
    unknown = np.array(model(mx.array([[1, 1, 1, 1, 0, 0]]), lengths))  # every valid token <unk>
    model.eval()
    assert np.allclose(evaluated, np.array(model(tokens, lengths)))
    assert not np.allclose(evaluated, trained) and np.allclose(trained, unknown, atol=1e-5)


def test_word_dropout_must_be_a_probability():
    with pytest.raises(ValueError, match=r"word_dropout must be in \[0, 1\), got 1.0"):
        small(word_dropout=1.0)


def spelling(**changes):
    return small(char_vocab_size=12, char_embed_size=4, char_hidden_size=3, **changes)


def spelled(words: list[list[list[int]]], steps: int, width: int = 5):
    """chars (U, C), char_lengths (U,) and spelling_ids (B, T); padded words are spelled with junk (11, 11)."""
    return batch_spellings([sentence + [[11, 11]] * (steps - len(sentence)) for sentence in words], steps, width, multiple=4)


@pytest.mark.parametrize("pooling", ["final", "max", "attention"])
def test_a_spelled_sentence_alone_and_in_a_padded_batch_gives_the_same_logits(pooling):
    model = spelling(pooling=pooling)
    words, tokens = [[4, 5], [6, 7, 8], [9]], [5, 1, 7]
    alone = model(mx.array([tokens]), mx.array([3]), *spelled([words], 3))
    other = [[4], [5], [6], [7], [8], [9]]
    batch = mx.array([[3, 4, 5, 6, 7, 8], tokens + [2, 3, 4]])
    batched = model(batch, mx.array([6, 3]), *spelled([other, words], 6))[1:]
    assert np.allclose(np.array(alone), np.array(batched), atol=1e-5)


def test_spelling_tells_unknown_words_apart():
    tokens, lengths = mx.array([[1, 1]]), mx.array([2])  # two <unk> words
    first = np.array(spelling()(tokens, lengths, *spelled([[[4, 5, 6], [7]]], 2)))
    second = np.array(spelling()(tokens, lengths, *spelled([[[4, 5, 9], [7]]], 2)))
    assert not np.allclose(first, second)  # only one character differs
    assert spelling().input_size == 8 + 2 * 3 and small().input_size == 8


def test_a_spelling_model_needs_the_spellings_and_round_trips(tmp_path):
    model = spelling()
    with pytest.raises(ValueError, match=r"this model spells words: expected chars \(U, C\), char_lengths \(U,\) and "
                                         r"spelling_ids \(B, T\) with B, T = 1, 2, got shapes None, None and None"):
        model(mx.array([[4, 5]]), mx.array([2]))
    save_model(tmp_path, model, "classifier", model.args)
    loaded = mlxseq.load(tmp_path)
    inputs = (mx.array([[4, 5]]), mx.array([2]), *spelled([[[4, 5], [6]]], 2))
    assert loaded.args.char_vocab_size == 12
    assert np.array_equal(np.array(loaded(*inputs)), np.array(model(*inputs)))
