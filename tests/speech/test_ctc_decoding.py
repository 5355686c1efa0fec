"""CTC decoding against brute-force enumeration of every alignment on tiny vocabularies."""

import itertools
import math

import numpy as np
import pytest

from mlxseq.speech import ctc_greedy_decode, ctc_prefix_beam_search


def collapse(alignment, blank=0):
    labels, previous = [], None
    for label in alignment:
        if label != previous and label != blank:
            labels.append(label)
        previous = label
    return tuple(labels)


def brute_force(log_probs, blank=0, lm=None, lm_weight=0.0):
    """Every label sequence's log-probability, summed over all its alignments (+ weighted LM score)."""
    T, C = log_probs.shape
    totals = {}
    for alignment in itertools.product(range(C), repeat=T):
        score = sum(log_probs[t, a] for t, a in enumerate(alignment))
        key = collapse(alignment, blank)
        totals[key] = np.logaddexp(totals.get(key, -math.inf), score)
    if lm is not None:
        totals = {k: v + lm_weight * sum(lm(k[:i], k[i]) for i in range(len(k))) for k, v in totals.items()}
    return sorted(totals.items(), key=lambda item: item[1], reverse=True)


def random_log_probs(rng, T, C):
    x = rng.standard_normal((T, C)) * 2
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


@pytest.mark.parametrize("seed", range(5))
def test_a_wide_beam_finds_the_most_probable_label_sequence_and_its_probability(seed):
    rng = np.random.default_rng(seed)
    log_probs = random_log_probs(rng, 5, 3)
    expected = brute_force(log_probs)
    (found,) = ctc_prefix_beam_search(log_probs, beam_size=40, n_best=3)
    for (labels, score), (want, want_score) in zip(found, expected[:3]):
        assert tuple(labels) == want and score == pytest.approx(want_score, abs=1e-9)


def test_a_language_model_hook_reranks_as_brute_force_does():
    rng = np.random.default_rng(11)
    log_probs = random_log_probs(rng, 4, 3)

    def lm(prefix, label):  # prefers label 2, above all after a 1
        return -0.1 if label == 2 else (-3.0 if prefix[-1:] == (1,) else -1.0)

    expected = brute_force(log_probs, lm=lm, lm_weight=2.0)
    (found,) = ctc_prefix_beam_search(log_probs, beam_size=40, lm=lm, lm_weight=2.0)
    assert tuple(found[0][0]) == expected[0][0] and found[0][1] == pytest.approx(expected[0][1], abs=1e-9)


def test_greedy_is_the_collapsed_best_path_and_batches_use_their_lengths():
    rng = np.random.default_rng(2)
    batch = np.stack([random_log_probs(rng, 6, 4) for _ in range(3)], axis=1)  # (T, B, C)
    lengths = [6, 4, 1]
    decoded = ctc_greedy_decode(batch, lengths)
    for b, n in enumerate(lengths):
        assert tuple(decoded[b]) == collapse(batch[:n, b].argmax(axis=1).tolist())
    beams = ctc_prefix_beam_search(batch, lengths, beam_size=2)
    assert len(beams) == 3 and all(len(hyps) == 1 for hyps in beams)
    assert ctc_greedy_decode(np.log(np.array([[0.1, 0.9], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9]]))) == [[1, 1]]
