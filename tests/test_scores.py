"""Tests of mlxseq/scores.py on hand-computed examples."""

import pytest

from mlxseq.scores import accuracy, bio_spans, entity_f1, is_bio, macro_f1, multi_label_scores


def test_accuracy_and_macro_f1():
    gold = ["a", "a", "b", "c"]
    predicted = ["a", "b", "b", "b"]
    assert accuracy(predicted, gold) == 50.0
    # F1: a = 2/3 (tp 1, fn 1), b = 1/2 (tp 1, fp 2), c = 0
    assert macro_f1(predicted, gold) == pytest.approx(100 * (2 / 3 + 1 / 2 + 0) / 3)
    assert macro_f1(predicted, gold, labels=["a", "b", "c", "d"]) == pytest.approx(100 * (2 / 3 + 1 / 2) / 4)
    with pytest.raises(ValueError, match="equal, non-zero numbers"):
        accuracy(["a"], [])


def test_multi_label():
    scores = multi_label_scores([{"x"}, {"x", "y"}], [{"x"}, {"y"}], ["x", "y"])
    # x: tp 1, fp 1 -> 2/3; y: tp 1 -> 1; micro: tp 2, fp 1 -> 4/5
    assert scores == pytest.approx({"accuracy": 50.0, "macro_f1": 100 * (2 / 3 + 1) / 2, "micro_f1": 80.0})


def test_bio_spans_follow_conlleval():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "B-ORG", "I-PER"]
    assert bio_spans(tags) == {("PER", 0, 2), ("LOC", 3, 5), ("LOC", 5, 6), ("ORG", 6, 7), ("PER", 7, 8)}
    assert is_bio(tags) and not is_bio(["NOUN", "VERB"]) and not is_bio(["O"])


def test_entity_f1():
    gold = [["B-PER", "I-PER", "O"], ["B-LOC"]]
    predicted = [["B-PER", "O", "O"], ["B-LOC"]]
    assert entity_f1(predicted, gold) == pytest.approx({"precision": 50.0, "recall": 50.0, "f1": 50.0})
