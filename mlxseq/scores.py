"""Scores of labels, tags and recognised sequences: accuracy, macro-F1, BIO entity F1, error rates.

Public API::

    accuracy(predicted, gold) -> percent of equal items
    macro_f1(predicted, gold, labels=None) -> percent, the unweighted mean of per-label F1
    multi_label_scores(predicted_sets, gold_sets, labels) -> {"accuracy" (exact sets), "macro_f1", "micro_f1"}
    is_bio(tags), bio_spans(tags), entity_f1(predicted_sentences, gold_sentences) -> {"precision", "recall", "f1"}
    edit_counts(reference, hypothesis) -> EditCounts (substitutions, deletions, insertions, reference; .rate)
    error_rates(references, hypotheses) -> {"wer", "cer", ...}: corpus word and character error rates
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Iterable, Sequence


def _f1(tp: int, fp: int, fn: int) -> float:
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def accuracy(predicted: Sequence[Hashable], gold: Sequence[Hashable]) -> float:
    """Percent of positions where ``predicted`` equals ``gold``."""
    if len(predicted) != len(gold) or not gold:
        raise ValueError(f"need equal, non-zero numbers of predictions and gold labels, got {len(predicted)} and {len(gold)}")
    return 100.0 * sum(p == g for p, g in zip(predicted, gold)) / len(gold)


def macro_f1(predicted: Sequence[Hashable], gold: Sequence[Hashable], labels: Iterable[Hashable] | None = None) -> float:
    """Unweighted mean over ``labels`` (default: every label seen in either list) of each label's F1, percent.

    A label never predicted and never gold scores F1 0 only if it is listed in ``labels``.
    """
    if len(predicted) != len(gold) or not gold:
        raise ValueError(f"need equal, non-zero numbers of predictions and gold labels, got {len(predicted)} and {len(gold)}")
    labels = sorted(set(gold) | set(predicted), key=str) if labels is None else list(labels)
    scores = []
    for label in labels:
        tp = sum(p == label and g == label for p, g in zip(predicted, gold))
        fp = sum(p == label and g != label for p, g in zip(predicted, gold))
        fn = sum(p != label and g == label for p, g in zip(predicted, gold))
        scores.append(_f1(tp, fp, fn))
    return 100.0 * sum(scores) / len(scores)


def multi_label_scores(predicted: Sequence[set], gold: Sequence[set], labels: Sequence[Hashable]) -> dict:
    """Exact-set accuracy, macro-F1 and micro-F1 (percent) of label sets."""
    if len(predicted) != len(gold) or not gold:
        raise ValueError(f"need equal, non-zero numbers of predictions and gold sets, got {len(predicted)} and {len(gold)}")
    per_label, total = [], [0, 0, 0]
    for label in labels:
        tp = sum(label in p and label in g for p, g in zip(predicted, gold))
        fp = sum(label in p and label not in g for p, g in zip(predicted, gold))
        fn = sum(label not in p and label in g for p, g in zip(predicted, gold))
        per_label.append(_f1(tp, fp, fn))
        total = [total[0] + tp, total[1] + fp, total[2] + fn]
    return {
        "accuracy": 100.0 * sum(set(p) == set(g) for p, g in zip(predicted, gold)) / len(gold),
        "macro_f1": 100.0 * sum(per_label) / max(len(per_label), 1),
        "micro_f1": 100.0 * _f1(*total),
    }


def is_bio(tags: Iterable[str]) -> bool:
    """Whether every tag is ``O`` or ``B-type`` / ``I-type`` (and there is at least one ``B-``)."""
    tags = set(tags)
    return any(t.startswith("B-") for t in tags) and all(t == "O" or t[:2] in ("B-", "I-") for t in tags)


def bio_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """Entities ``(type, start, end)`` (end exclusive) of a BIO sequence, as conlleval reads it:
    an ``I-x`` after ``O`` or after another type starts a new entity."""
    spans, kind, start = set(), None, 0
    for i, tag in enumerate(list(tags) + ["O"]):
        inside = tag.startswith("I-") and kind == tag[2:]
        if not inside:
            if kind is not None:
                spans.add((kind, start, i))
            kind, start = (tag[2:], i) if tag[:2] in ("B-", "I-") else (None, i)
    return spans


def entity_f1(predicted: Sequence[Sequence[str]], gold: Sequence[Sequence[str]]) -> dict:
    """Precision, recall and F1 (percent) of exactly matching BIO entities over all sentences."""
    tp = fp = fn = 0
    for p, g in zip(predicted, gold, strict=True):
        found, wanted = bio_spans(p), bio_spans(g)
        tp, fp, fn = tp + len(found & wanted), fp + len(found - wanted), fn + len(wanted - found)
    precision = 100.0 * tp / (tp + fp) if tp + fp else 0.0
    recall = 100.0 * tp / (tp + fn) if tp + fn else 0.0
    return {"precision": precision, "recall": recall, "f1": 100.0 * _f1(tp, fp, fn)}


# --- error rates of recognised sequences ---------------------------------------


@dataclass(frozen=True)
class EditCounts:
    """Substitutions, deletions and insertions that turn references into hypotheses, over ``reference`` units."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference: int = 0

    def __add__(self, other: "EditCounts") -> "EditCounts":
        return EditCounts(self.substitutions + other.substitutions, self.deletions + other.deletions,
                          self.insertions + other.insertions, self.reference + other.reference)

    @property
    def rate(self) -> float:
        """(S + D + I) / N: the word (or character, or digit) error rate; inf with no reference unit
        and some insertion, 0 with neither."""
        errors = self.substitutions + self.deletions + self.insertions
        return errors / self.reference if self.reference else (float("inf") if errors else 0.0)


def edit_counts(reference: Sequence[Hashable], hypothesis: Sequence[Hashable]) -> EditCounts:
    """The Levenshtein alignment of two sequences with fewest edits, counted by kind.

    Among alignments with equally few edits the one with most substitutions is kept, so ``a b`` ->
    ``c`` counts one substitution and one deletion (tools split such ties differently; the total
    and the rate are the same).
    """
    n, m = len(reference), len(hypothesis)
    # cost[j] = (edits, -substitutions, deletions, insertions) of reference[:i] -> hypothesis[:j]
    previous = [(j, 0, 0, j) for j in range(m + 1)]
    for i in range(1, n + 1):
        current = [(i, 0, i, 0)]
        for j in range(1, m + 1):
            e, s, d, k = previous[j - 1]
            same = reference[i - 1] == hypothesis[j - 1]
            diagonal = (e, s, d, k) if same else (e + 1, s - 1, d, k)
            e, s, d, k = previous[j]
            deletion = (e + 1, s, d + 1, k)
            e, s, d, k = current[j - 1]
            insertion = (e + 1, s, d, k + 1)
            current.append(min(diagonal, deletion, insertion))
        previous = current
    edits, negative_substitutions, deletions, insertions = previous[m]
    return EditCounts(-negative_substitutions, deletions, insertions, n)


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
    """Corpus word and character error rates (edits summed over the corpus, then divided)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    words, characters = EditCounts(), EditCounts()
    for reference, hypothesis in zip(references, hypotheses):
        words += edit_counts(reference.split(), hypothesis.split())
        characters += edit_counts(list(" ".join(reference.split())), list(" ".join(hypothesis.split())))
    return {"wer": words.rate, "cer": characters.rate, "substitutions": words.substitutions,
            "deletions": words.deletions, "insertions": words.insertions, "reference_words": words.reference}
