"""Decoding CTC frame scores: greedy (best path) and prefix beam search with an optional LM hook.

A CTC output is a label per frame, blanks included; a label sequence is what remains after
merging repeated labels and dropping blanks (``a a _ a b _`` -> ``a a b``). Greedy decoding
takes the best label of each frame. Prefix beam search (Hannun et al. 2014) keeps the
``beam_size`` most probable label prefixes, each with the probability of its alignments that
end in a blank and in a label, and sums over every alignment of a prefix instead of
trusting the best one. ``lm(prefix, label) -> log-probability`` adds ``lm_weight`` times a
language model's score each time a label is appended.

Shapes: ``log_probs`` ``(T, C)`` for one sequence, or ``(T, B, C)`` with ``lengths`` ``(B,)``
(torch.nn.CTCLoss's layout).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

LanguageModel = Callable[[tuple[int, ...], int], float]


def _sequences(log_probs, lengths) -> list[np.ndarray]:
    scores = np.asarray(log_probs, dtype=np.float64)
    if scores.ndim == 2:
        return [scores]
    if scores.ndim != 3:
        raise ValueError(f"log_probs must be (T, C) or (T, B, C), got shape {scores.shape}")
    lengths = [scores.shape[0]] * scores.shape[1] if lengths is None else [int(n) for n in np.asarray(lengths)]
    if len(lengths) != scores.shape[1]:
        raise ValueError(f"lengths must have {scores.shape[1]} entries, got {len(lengths)}")
    return [scores[:n, b] for b, n in enumerate(lengths)]


def ctc_greedy_decode(log_probs, lengths: Sequence[int] | None = None, blank: int = 0) -> list[list[int]]:
    """The best label of each frame, repeats merged and blanks dropped: one list per sequence."""
    decoded = []
    for scores in _sequences(log_probs, lengths):
        best = scores.argmax(axis=1) if len(scores) else np.zeros(0, dtype=int)
        labels, previous = [], None
        for label in best.tolist():
            if label != previous and label != blank:
                labels.append(label)
            previous = label
        decoded.append(labels)
    return decoded


def _log_add(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    high, low = (a, b) if a > b else (b, a)
    return high + math.log1p(math.exp(low - high))


def ctc_prefix_beam_search(log_probs, lengths: Sequence[int] | None = None, *, beam_size: int = 8, blank: int = 0,
                           lm: LanguageModel | None = None, lm_weight: float = 0.0,
                           n_best: int = 1) -> list[list[tuple[list[int], float]]]:
    """The ``n_best`` label sequences of each input with their scores (log-probability of all
    their alignments, plus the weighted LM score), best first."""
    if beam_size < 1 or not 1 <= n_best <= beam_size:
        raise ValueError(f"need beam_size >= 1 and 1 <= n_best <= beam_size, got {beam_size} and {n_best}")
    results = []
    for scores in _sequences(log_probs, lengths):
        # prefix -> (log P(alignments ending in blank), log P(ending in its last label), LM score)
        beams: dict[tuple[int, ...], tuple[float, float, float]] = {(): (0.0, -math.inf, 0.0)}
        for frame in scores:
            grown: dict[tuple[int, ...], list[float]] = {}

            def entry(prefix, lm_score):
                return grown.setdefault(prefix, [-math.inf, -math.inf, lm_score])

            for prefix, (p_blank, p_label, lm_score) in beams.items():
                total = _log_add(p_blank, p_label)
                stay = entry(prefix, lm_score)  # a blank, or the last label repeated: the prefix stays
                stay[0] = _log_add(stay[0], total + frame[blank])
                if prefix:
                    stay[1] = _log_add(stay[1], p_label + frame[prefix[-1]])
                for label in range(len(frame)):
                    if label == blank:
                        continue
                    extended = prefix + (label,)
                    bonus = lm_weight * lm(prefix, label) if lm is not None and lm_weight else 0.0
                    longer = entry(extended, lm_score + bonus)
                    # after the same label, only an alignment ending in blank starts a new one
                    source = p_blank if prefix and prefix[-1] == label else total
                    longer[1] = _log_add(longer[1], source + frame[label])
            ranked = sorted(grown.items(), key=lambda item: _log_add(item[1][0], item[1][1]) + item[1][2], reverse=True)
            beams = {prefix: tuple(values) for prefix, values in ranked[:beam_size]}
        ranked = sorted(((list(prefix), _log_add(pb, pl) + lm_score) for prefix, (pb, pl, lm_score) in beams.items()),
                        key=lambda item: item[1], reverse=True)
        results.append(ranked[:n_best])
    return results
