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


# --- error rates: against jiwer (a test dependency) ------------------------------


def test_edit_counts_by_kind():
    from mlxseq.scores import EditCounts, edit_counts

    assert edit_counts("1 2 3".split(), "1 3".split()) == EditCounts(0, 1, 0, 3)
    assert edit_counts("4 5".split(), "4 5 5".split()) == EditCounts(0, 0, 1, 2)
    assert edit_counts("6 7 8 9".split(), "6 7 8 0".split()) == EditCounts(1, 0, 0, 4)
    assert edit_counts(["a", "b"], ["c"]) == EditCounts(1, 1, 0, 2)
    assert edit_counts([], ["x"]).rate == float("inf") and edit_counts([], []).rate == 0.0


def test_word_and_character_error_rates_equal_jiwers_on_random_corpora():
    import random

    jiwer = pytest.importorskip("jiwer", reason="jiwer is the reference for error rates")
    from mlxseq.scores import edit_counts, error_rates

    rng = random.Random(0)
    for _ in range(300):
        reference = [rng.choice("abc") for _ in range(rng.randint(1, 9))]
        hypothesis = [rng.choice("abcd") for _ in range(rng.randint(0, 9))]
        theirs = jiwer.process_words(" ".join(reference), " ".join(hypothesis))
        ours = edit_counts(reference, hypothesis)
        assert ours.substitutions + ours.deletions + ours.insertions == (
            theirs.substitutions + theirs.deletions + theirs.insertions)
    references = [" ".join(rng.choice("0123456789") for _ in range(rng.randint(1, 7))) for _ in range(50)]
    hypotheses = [" ".join(w for w in r.split() if rng.random() > 0.2) + rng.choice(["", " 3"]) for r in references]
    rates = error_rates(references, hypotheses)
    assert rates["wer"] == pytest.approx(jiwer.wer(references, hypotheses), abs=1e-12)
    assert rates["cer"] == pytest.approx(jiwer.cer(references, hypotheses), abs=1e-12)
    assert 0 < rates["wer"] < 0.5
