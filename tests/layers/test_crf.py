"""Tests of mlxseq/layers/crf.py against brute force over every path of tiny inputs."""

import itertools

import mlx.core as mx
import numpy as np
import pytest

from mlxseq.layers.crf import CRF


def brute_force(crf: CRF, emissions: np.ndarray, n: int):
    """Scores of all K^n paths of one sequence: {path: score}."""
    trans, start, end = (np.array(p, dtype=np.float64) for p in (crf.transitions, crf.start, crf.end))
    scores = {}
    for path in itertools.product(range(crf.num_tags), repeat=n):
        s = start[path[0]] + end[path[-1]] + sum(emissions[t, y] for t, y in enumerate(path))
        s += sum(trans[a, b] for a, b in zip(path, path[1:]))
        scores[path] = s
    return scores


@pytest.fixture
def case():
    mx.random.seed(3)
    crf = CRF(3)
    crf.transitions = mx.random.normal((3, 3))  # larger than the initial scores: paths differ clearly
    crf.start, crf.end = mx.random.normal((3,)), mx.random.normal((3,))
    emissions = mx.random.normal((4, 5, 3))
    lengths = mx.array([5, 3, 1, 4])
    return crf, emissions, lengths


def test_viterbi_equals_brute_force(case):
    crf, emissions, lengths = case
    paths, scores = crf.decode(emissions, lengths)
    for b, n in enumerate(lengths.tolist()):
        every = brute_force(crf, np.array(emissions[b], dtype=np.float64), n)
        best = max(every, key=every.get)
        assert paths[b] == list(best) and scores[b] == pytest.approx(every[best], abs=1e-4)


def test_the_partition_function_is_the_sum_over_all_paths(case):
    crf, emissions, lengths = case
    log_z = np.array(crf.log_partition(emissions, lengths))
    for b, n in enumerate(lengths.tolist()):
        every = brute_force(crf, np.array(emissions[b], dtype=np.float64), n)
        assert log_z[b] == pytest.approx(np.log(np.sum(np.exp(list(every.values())))), abs=1e-4)


def test_score_and_likelihood_of_given_paths(case):
    crf, emissions, lengths = case
    tags = mx.array([[0, 1, 2, 1, 0], [2, 2, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 1, 2, 2]])
    scores = np.array(crf.score(emissions, tags, lengths))
    nll = np.array(crf.neg_log_likelihood(emissions, tags, lengths))
    for b, n in enumerate(lengths.tolist()):
        every = brute_force(crf, np.array(emissions[b], dtype=np.float64), n)
        path = tuple(tags[b, :n].tolist())
        assert scores[b] == pytest.approx(every[path], abs=1e-4)
        probability = np.exp(every[path]) / np.sum(np.exp(list(every.values())))
        assert nll[b] == pytest.approx(-np.log(probability), abs=1e-4)


def test_padding_never_changes_a_result(case):
    crf, emissions, lengths = case
    noisy = emissions.at[1, 3:].add(50.0)  # sequence 1 has length 3: steps 3 and 4 are padding
    tags = mx.array([[0] * 5, [2, 1, 0, 1, 2], [1] * 5, [0] * 5])
    other = tags.at[1, 3:].add(-2)  # different padded tags
    for a, b in ((emissions, noisy),):
        assert np.allclose(np.array(crf.log_partition(a, lengths)), np.array(crf.log_partition(b, lengths)))
        assert np.allclose(np.array(crf.score(a, tags, lengths)), np.array(crf.score(b, other, lengths)))
        assert crf.decode(a, lengths)[0] == crf.decode(b, lengths)[0]
    alone_paths, alone_scores = crf.decode(emissions[1:2, :3], mx.array([3]))
    batch_paths, batch_scores = crf.decode(emissions, lengths)
    assert alone_paths[0] == batch_paths[1] and alone_scores[0] == pytest.approx(batch_scores[1], abs=1e-5)


def test_gradients_flow_to_every_parameter(case):
    import mlx.nn as nn

    crf, emissions, lengths = case
    tags = mx.zeros((4, 5), dtype=mx.int32)
    grads = nn.value_and_grad(crf, lambda m: m.neg_log_likelihood(emissions, tags, lengths).sum())(crf)[1]
    assert all(float(mx.abs(g).sum()) > 0 for g in (grads["transitions"], grads["start"], grads["end"]))


def test_bad_shapes_are_named():
    crf = CRF(3)
    with pytest.raises(ValueError, match=r"emissions must have shape \(B, T, K=3\), got shape \(2, 4, 5\)"):
        crf.log_partition(mx.zeros((2, 4, 5)), mx.array([4, 4]))
    with pytest.raises(ValueError, match=r"num_tags must be a positive integer"):
        CRF(0)
