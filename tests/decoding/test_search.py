"""Greedy, sampling and beam search (decoding.search, decoding.beams) on a hand-built model, against brute force.

The model's next-token logits depend on the previous token, the step and the whole history
(through a decaying count of past tokens in its state), plus a per-source bias, so a beam
search that reorders its state wrongly gets different numbers. It uses elementwise ops
only, so a row's numbers do not depend on the batch it runs in.
"""

import mlx.core as mx
import numpy as np
import pytest

from mlxseq.decoding.beams import beam_search
from mlxseq.decoding.search import (
    _best,
    generate_steps,
    greedy_decode,
    length_penalty_divisor,
    sample,
)
from mlxseq.decoding.opennmt_search import opennmt_beam_search
from mlxseq.decoding.sampling import make_repetition_penalty, make_sampler
from tests.support.batches import batches_shrink
from tests.support.native_paths import on_path

PAD, EOS, BOS, A = 0, 1, 2, 3  # V = 4; bos may be produced too: to the search it is a token
V = 4


class TableModel:
    """``logits = table[prev] + step_bias[step] + weight * hidden + source``, all ``(B, V)``.

    State: ``step`` (B,) int32, ``hidden`` (B, V) decaying counts of the tokens fed so far,
    ``source`` (B, V) a fixed bias per row given to ``init_state``.
    """

    def __init__(self, seed, steps=8):
        rng = np.random.default_rng(seed)
        self.table = mx.array(rng.normal(scale=1.5, size=(V, V)).astype(np.float32))
        self.step_bias = mx.array(rng.normal(size=(steps, V)).astype(np.float32))
        self.weight = mx.array(rng.normal(size=(V,)).astype(np.float32))
        self.calls = 0

    def init_state(self, batch_size, source=None):
        source = mx.zeros((batch_size, V)) if source is None else mx.array(np.asarray(source, np.float32))
        return {"step": mx.zeros((batch_size,), mx.int32), "hidden": mx.zeros((batch_size, V)), "source": source}

    def step(self, tokens, state):
        self.calls += 1
        one_hot = (tokens[:, None] == mx.arange(V)).astype(mx.float32)
        hidden = 0.5 * state["hidden"] + one_hot
        step = mx.minimum(state["step"], self.step_bias.shape[0] - 1)
        logits = self.table[tokens] + self.step_bias[step] + self.weight * hidden + state["source"]
        return logits, {"step": state["step"] + 1, "hidden": hidden, "source": state["source"]}


def log_softmax(logits):
    logits = np.asarray(logits, dtype=np.float64)
    return logits - np.logaddexp.reduce(logits)


def brute_force(model, source, *, max_tokens, alpha=0.0, kind="gnmt", banned=(), min_length=0):
    """Every hypothesis up to ``max_tokens``, as (tokens, score, finished), best first."""
    hypotheses = []

    def visit(prefix, token, state, log_prob):
        logits, state = model.step(mx.array([token]), state)
        log_probs = log_softmax(logits[0])
        for t in range(V):
            if t in banned or (t == EOS and len(prefix) < min_length):
                continue
            total = log_prob + log_probs[t]
            if t == EOS:
                length = len(prefix) + 1
                hypotheses.append((prefix, total / length_penalty_divisor(length, alpha, kind), True))
            elif len(prefix) + 1 == max_tokens:
                hypotheses.append((prefix + [t], total / length_penalty_divisor(max_tokens, alpha, kind), False))
            else:
                visit(prefix + [t], t, state, total)

    visit([], BOS, model.init_state(1, source=[source]), 0.0)
    return sorted(hypotheses, key=lambda h: -h[1])


def assert_matches_brute_force(found, expected, n):
    assert len(found) == min(n, len(expected))
    # A near-tie would make the expected order depend on rounding: keep the cases clear.
    gaps = np.diff([h[1] for h in expected[: n + 1]])
    assert (np.abs(gaps) > 1e-4).all(), gaps
    for rank, (hypothesis, (tokens, score, finished)) in enumerate(zip(found, expected)):
        assert (hypothesis.tokens, hypothesis.finished) == (tokens, finished), rank
        assert hypothesis.score == pytest.approx(score, rel=1e-5, abs=1e-5), rank
    assert [h.score for h in found] == sorted((h.score for h in found), reverse=True)


SOURCES = [[0.0, 0.5, 0.0, -0.5], [0.3, -0.8, 1.0, 0.2]]


@pytest.mark.parametrize(
    "max_tokens,beam_size", [(2, 12), (3, 36), (3, 50)]
)  # the beams hold every candidate of every step (at most 4 * 3**(max_tokens - 1))
@pytest.mark.parametrize("alpha,kind", [(0.0, "gnmt"), (1.0, "gnmt"), (0.6, "average"), (-0.5, "average")])
@pytest.mark.parametrize("path", ["native", "graph"])  # beam search's choice of candidates
def test_beam_search_equals_brute_force(max_tokens, beam_size, alpha, kind, path, monkeypatch):
    model = TableModel(seed=0)
    n_best = 6
    with on_path(path, monkeypatch, "top_k"):
        results = beam_search(
            model, model.init_state(2, source=SOURCES), bos_id=BOS, eos_id=EOS, beam_size=beam_size,
            max_tokens=max_tokens, length_penalty=alpha, length_penalty_kind=kind, n_best=n_best,
        )
    assert len(results) == 2
    for source, found in zip(SOURCES, results):
        expected = brute_force(model, source, max_tokens=max_tokens, alpha=alpha, kind=kind)
        assert_matches_brute_force(found, expected, n_best)


@pytest.mark.parametrize("banned,min_length", [((PAD,), 0), ((PAD, BOS), 2), ((), 1)])
def test_beam_search_with_banned_ids_and_min_length_equals_brute_force(banned, min_length):
    model = TableModel(seed=1)
    results = beam_search(
        model, model.init_state(2, source=SOURCES), bos_id=BOS, eos_id=EOS, beam_size=36, max_tokens=3,
        length_penalty=0.8, n_best=5, banned_ids=banned, min_length=min_length,
    )
    for source, found in zip(SOURCES, results):
        expected = brute_force(model, source, max_tokens=3, alpha=0.8, banned=banned, min_length=min_length)
        assert_matches_brute_force(found, expected, 5)
        assert len(found) == (2 if banned == (PAD, BOS) else 5)  # with a alone, only [a, a] and [a, a, a]
        assert all(len(h.tokens) >= min_length and not set(h.tokens) & set(banned) for h in found)


def test_beam_search_stops_once_no_alive_beam_can_win():
    # Eos is far more likely than anything else: the 3 best hypotheses are found by step 2.
    model = TableModel(seed=2)
    source = [0.0, 9.0, 0.0, 0.0]
    found = beam_search(
        model, model.init_state(1, source=[source]), bos_id=BOS, eos_id=EOS, beam_size=3, max_tokens=6,
        n_best=3, length_penalty=0.5,
    )[0]
    assert model.calls == 2
    assert_matches_brute_force(found, brute_force(model, source, max_tokens=6, alpha=0.5), 3)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_beam_size_one_is_greedy(seed):
    model = TableModel(seed)
    sources = [[0.0, -1.0, 0.5, 0.5], [0.2, -3.0, 0.0, 1.0], [0.0, 2.0, 0.0, 0.0]]
    greedy = greedy_decode(model, model.init_state(3, source=sources), bos_id=BOS, eos_id=EOS, max_tokens=7)
    beam = beam_search(model, model.init_state(3, source=sources), bos_id=BOS, eos_id=EOS, beam_size=1, max_tokens=7)
    assert [b[0] for b in beam] == greedy


def test_greedy_follows_the_argmax_and_sums_its_log_probs():
    model = TableModel(seed=4)
    source = [0.0, -1.0, 0.5, 0.5]
    (found,) = greedy_decode(model, model.init_state(1, source=[source]), bos_id=BOS, eos_id=EOS, max_tokens=6)
    # Follow the argmax by hand, one row at a time.
    state, token, tokens, log_prob = model.init_state(1, source=[source]), BOS, [], 0.0
    for _ in range(6):
        logits, state = model.step(mx.array([token]), state)
        log_probs = log_softmax(logits[0])
        token = int(np.argmax(log_probs))
        log_prob += log_probs[token]
        if token == EOS:
            break
        tokens.append(token)
    assert (found.tokens, found.finished) == (tokens, token == EOS)
    assert found.log_prob == found.score == pytest.approx(log_prob, rel=1e-6)


def test_eos_at_the_first_step():
    model = TableModel(seed=0)
    source = [0.0, 5.0, 0.0, 0.0]  # eos has probability 0.8 at the first step
    state = model.init_state(1, source=[source])
    (greedy,) = greedy_decode(model, state, bos_id=BOS, eos_id=EOS, max_tokens=5)
    assert (greedy.tokens, greedy.finished) == ([], True)
    expected = brute_force(model, source, max_tokens=3, alpha=1.0)
    best = beam_search(model, state, bos_id=BOS, eos_id=EOS, beam_size=4, max_tokens=3, length_penalty=1.0)
    assert best[0][0].tokens == [] and best[0][0].score == pytest.approx(expected[0][1], rel=1e-5)
    assert greedy.log_prob == pytest.approx(expected[0][1], rel=1e-5)  # length 1: lp(1) = 1


def test_hypotheses_that_reach_max_tokens_are_returned_and_scored():
    model = TableModel(seed=3)
    source = SOURCES[1]
    state = model.init_state(1, source=[source])
    # min_length = max_tokens: eos can never come, every hypothesis is cut at max_tokens.
    (greedy,) = greedy_decode(model, state, bos_id=BOS, eos_id=EOS, max_tokens=3, min_length=3)
    assert not greedy.finished and len(greedy.tokens) == 3
    found = beam_search(
        model, state, bos_id=BOS, eos_id=EOS, beam_size=27, max_tokens=3, min_length=3, length_penalty=0.7,
        length_penalty_kind="average", n_best=4,
    )[0]
    expected = brute_force(model, source, max_tokens=3, alpha=0.7, kind="average", min_length=3)
    assert_matches_brute_force(found, expected, 4)
    assert not any(h.finished for h in found)
    assert found[0].score == pytest.approx(found[0].log_prob / 3**0.7, rel=1e-6)


def _read_back(model, source, hypothesis):
    """The hidden counts after each step that scored one of the hypothesis's tokens (its eos last)."""
    state, rows = model.init_state(1, source=[source]), []
    steps = len(hypothesis.tokens) + hypothesis.finished
    for token in ([BOS] + hypothesis.tokens)[:steps]:
        _, state = model.step(mx.array([token]), state)
        rows.append(np.array(state["hidden"][0]))
    return np.stack(rows)


@pytest.mark.parametrize("search", ["greedy", "beam", "opennmt"])
def test_hypotheses_carry_what_was_read_at_each_of_their_steps(search):
    # The reader stands in for attention weights: the hidden counts depend on the whole
    # history, so rows taken from the wrong beam or the wrong step differ from the replay.
    model = TableModel(seed=3)
    sources = SOURCES + [[0.0, -8.0, 0.0, 0.0]]  # the last hardly ends
    arguments = dict(bos_id=BOS, eos_id=EOS, max_tokens=5)
    read = lambda state: state["hidden"]  # noqa: E731
    if search == "greedy":
        found = [[h] for h in greedy_decode(model, model.init_state(3, source=sources), **arguments, attention=read)]
    elif search == "beam":
        found = beam_search(model, model.init_state(3, source=sources), **arguments, beam_size=3, n_best=3,
                            length_penalty=0.6, attention=read)
    else:
        found = opennmt_beam_search(model, model.init_state(3, source=sources), **arguments, beam_size=3, n_best=3,
                                    attention=read)
    for source, hypotheses in zip(sources, found):
        for hypothesis in hypotheses:
            np.testing.assert_allclose(hypothesis.attention, _read_back(model, source, hypothesis), rtol=1e-6)
    assert {h.finished for hypotheses in found for h in hypotheses} == {True, False}
    plain = beam_search(model, model.init_state(3, source=sources), **arguments, beam_size=3, n_best=3,
                        length_penalty=0.6)
    assert all(h.attention is None for hypotheses in plain for h in hypotheses)


def test_a_batch_gives_each_source_what_it_gets_alone():
    model = TableModel(seed=5)
    sources = [[0.0, -1.0, 2.0, 0.0], [1.5, -0.5, 0.0, 0.3]]
    arguments = dict(bos_id=BOS, eos_id=EOS, beam_size=5, max_tokens=6, n_best=3, length_penalty=0.6)
    together = beam_search(model, model.init_state(2, source=sources), **arguments)
    alone = [beam_search(model, model.init_state(1, source=[s]), **arguments)[0] for s in sources]
    assert together == alone
    assert together[0] != together[1]  # the sources differ, so the test compares different searches


class RecordingTableModel(TableModel):
    """A TableModel that records the rows of each step and the ``source`` leaf it was given."""

    def __init__(self, seed):
        super().__init__(seed)
        self.rows, self.sources = [], []

    def step(self, tokens, state):
        self.rows.append(tokens.shape[0])
        self.sources.append(state["source"])
        return super().step(tokens, state)


@pytest.mark.parametrize("search", [beam_search, opennmt_beam_search])
def test_a_source_that_is_done_leaves_the_batch_and_the_others_get_what_they_get_alone(search, monkeypatch):
    batches_shrink(monkeypatch, True)  # as on the CPU, whatever the device
    # The first source's eos is all but certain: it is done after a step or two, the others run on.
    model = RecordingTableModel(seed=5)
    sources = [[0.0, 9.0, 0.0, 0.0], [0.0, -1.0, 2.0, 0.0], [1.5, -0.5, 0.0, 0.3]]
    arguments = dict(bos_id=BOS, eos_id=EOS, beam_size=3, max_tokens=6, n_best=2, length_penalty=0.6)
    together = search(model, model.init_state(3, source=sources), **arguments, attention=lambda s: s["hidden"])
    assert model.rows[0] == 9 and model.rows[-1] < 9 and 6 in model.rows
    for source, found in zip(sources, together):
        alone = search(TableModel(seed=5), TableModel(seed=5).init_state(1, source=[source]), **arguments)[0]
        assert found == alone
        for hypothesis in found:
            np.testing.assert_allclose(hypothesis.attention, _read_back(model, source, hypothesis), rtol=1e-6)


@pytest.mark.parametrize("search", ["greedy", "beam", "opennmt"])
def test_where_batches_do_not_shrink_every_row_runs_to_the_end_with_the_same_results(search, monkeypatch):
    # On a GPU rows stay (shrinks_batches() is False there); the searches then find the same.
    sources = [[0.0, 9.0, 0.0, 0.0], [0.0, -1.0, 2.0, 0.0], [0.0, -6.0, 0.0, 0.3]]
    common = dict(bos_id=BOS, eos_id=EOS, max_tokens=6, attention=lambda s: s["hidden"])
    beams = dict(beam_size=3, n_best=2, length_penalty=0.6)

    def run(model):
        state = model.init_state(3, source=sources)
        if search == "greedy":
            return greedy_decode(model, state, **common)
        return (beam_search if search == "beam" else opennmt_beam_search)(model, state, **common, **beams)

    batches_shrink(monkeypatch, True)
    shrinking = RecordingTableModel(seed=5)
    expected = run(shrinking)
    batches_shrink(monkeypatch, False)
    steady = RecordingTableModel(seed=5)
    found = run(steady)
    assert min(shrinking.rows) < shrinking.rows[0] and set(steady.rows) == {steady.rows[0]}
    assert found == expected
    for ours, theirs in zip(found, expected):
        for a, b in zip(ours if search != "greedy" else [ours], theirs if search != "greedy" else [theirs]):
            np.testing.assert_allclose(a.attention, b.attention, rtol=1e-6)


def test_a_leaf_the_model_passes_through_is_not_copied_while_no_source_leaves():
    # Beams of a source only reorder among its K rows, all copies of that source's rows: such a
    # leaf (a translation model's memory) needs no gather until a source leaves the batch.
    model = RecordingTableModel(seed=5)
    sources = [[0.0, -1.0, 2.0, 0.0], [1.5, -0.5, 0.0, 0.3]]
    beam_search(model, model.init_state(2, source=sources), bos_id=BOS, eos_id=EOS, beam_size=3, max_tokens=6)
    same_rows = [i for i in range(1, len(model.rows)) if model.rows[i] == model.rows[i - 1]]
    assert same_rows, "the test needs steps with no source leaving"
    assert all(model.sources[i] is model.sources[i - 1] for i in same_rows)
    for leaf, rows in zip(model.sources, model.rows):  # each row still holds its source's bias
        expected = np.repeat(np.array(sources, np.float32), 3, axis=0)
        assert np.array(leaf).shape[0] == rows and any(
            np.array_equal(np.array(leaf), expected[keep]) for keep in _rows_of_sources(len(sources), 3))


class ChangingPerSourceLeaf(TableModel):
    """Keeps ``source`` once per source for the beams, but its step makes a new one: against
    the StepModel contract, so the beams' rows can no longer be told from the sources'."""

    def expand_beams(self, state, K):
        return {name: leaf if name == "source" else mx.repeat(leaf, K, axis=0) for name, leaf in state.items()}

    def step(self, tokens, state):
        per_row = {**state, "source": mx.repeat(state["source"], tokens.shape[0] // state["source"].shape[0], axis=0)}
        logits, new = super().step(tokens, per_row)
        return logits, {**new, "source": state["source"] + 0.0}


def test_a_leaf_kept_once_per_source_that_the_step_changes_is_refused_by_name():
    model = ChangingPerSourceLeaf(seed=5)
    with pytest.raises(ValueError, match=r"state leaf 'source' has 2 rows, expected 6 \(2 sources x 3 beams\)"):
        beam_search(model, model.init_state(2, source=SOURCES), bos_id=BOS, eos_id=EOS, beam_size=3, max_tokens=6)


class GrowingState(TableModel):
    """A TableModel whose step adds a leaf to the state (``steps``, per row) the first time."""

    def step(self, tokens, state):
        steps = state.get("steps", mx.zeros(tokens.shape, mx.int32))
        logits, new = super().step(tokens, {k: v for k, v in state.items() if k != "steps"})
        return logits + steps[:, None].astype(mx.float32) * 0.1, {**new, "steps": steps + 1}


def test_a_step_that_adds_to_the_state_has_its_new_leaves_reordered_too():
    model = GrowingState(seed=5)
    sources = [[0.0, 9.0, 0.0, 0.0], [0.0, -1.0, 2.0, 0.0], [1.5, -0.5, 0.0, 0.3]]
    arguments = dict(bos_id=BOS, eos_id=EOS, beam_size=3, max_tokens=6, n_best=2, length_penalty=0.6)
    for search in (beam_search, opennmt_beam_search):
        together = search(model, model.init_state(3, source=sources), **arguments)
        for source, found in zip(sources, together):
            assert found == search(model, model.init_state(1, source=[source]), **arguments)[0]


@pytest.mark.parametrize("K", [0, -1, 2.0, True])
def test_expanding_to_a_number_of_beams_that_is_not_a_positive_integer_is_refused(K):
    from mlxseq.decoding import expand_beams

    model = TableModel(seed=0)
    with pytest.raises(ValueError, match=rf"K \(beams per source\) must be an integer >= 1, got {K!r}"):
        expand_beams(model, model.init_state(2, source=SOURCES), K)


def _rows_of_sources(batch, K):
    """Row selections that keep whole sources, K rows each, in order."""
    from itertools import combinations

    for n in range(1, batch + 1):
        for kept in combinations(range(batch), n):
            yield np.concatenate([np.arange(b * K, (b + 1) * K) for b in kept])


def test_banned_ids_never_appear():
    model = TableModel(seed=6)
    # The source bias makes pad and bos the likeliest tokens: without a ban they show up.
    sources = [[6.0, -2.0, 5.0, 0.0], [5.0, -2.0, 6.0, 0.0]]
    common = dict(bos_id=BOS, eos_id=EOS, max_tokens=6)
    for banned in [(), (PAD, BOS)]:
        found = greedy_decode(model, model.init_state(2, source=sources), banned_ids=banned, **common)
        found += sample(
            model, model.init_state(2, source=sources), sampler=make_sampler(temp=1.0), banned_ids=banned,
            key=mx.random.key(0), **common,
        )
        beams = beam_search(model, model.init_state(2, source=sources), beam_size=4, n_best=4, banned_ids=banned, **common)
        found += beams[0] + beams[1]
        produced = {t for h in found for t in h.tokens}
        assert produced & {PAD, BOS} == (set() if banned else {PAD, BOS})


class StepTableModel:
    """Logits ``rows[step]`` for every row (the last row repeats); a step counter as state."""

    def __init__(self, rows):
        self.rows = mx.array(rows)

    def init_state(self, batch_size):
        return {"step": mx.zeros((batch_size,), mx.int32)}

    def step(self, tokens, state):
        logits = self.rows[mx.minimum(state["step"], self.rows.shape[0] - 1)]
        return logits, {"step": state["step"] + 1}


def test_search_goes_on_while_a_longer_hypothesis_can_still_win():
    # Step 0: eos (log-prob -0.24) or a (-1.54); then a is all but certain. With lp = len**2
    # the alive [a] may end at -1.54 / 16 > -0.24, so the search must not stop after the first step
    # (as it would by comparing -1.54 / lp(2) = -0.385 with -0.24).
    model = StepTableModel([[-9.0, 2.0, -9.0, 0.7], [-9.0, -9.0, -9.0, 9.0]])
    found = beam_search(
        model, model.init_state(1), bos_id=BOS, eos_id=EOS, beam_size=2, max_tokens=4, length_penalty=2.0,
        length_penalty_kind="average",
    )[0]
    assert [(h.tokens, h.finished) for h in found] == [([A] * 4, False)]
    assert found[0].score == pytest.approx(found[0].log_prob / 16, rel=1e-6)


def test_repetition_penalty_steers_sampling():
    # pad, eos, bos, a: greedy repeats `a` forever.
    logits = [3.0, -5.0, 1.0, 5.0]
    model = StepTableModel([logits])
    common = dict(bos_id=BOS, eos_id=EOS, max_tokens=5, sampler=make_sampler(temp=0.0))
    plain = sample(model, model.init_state(1), **common)[0]
    assert plain.tokens == [A] * 5
    # Penalty 10: a (5) -> seen, 0.5 < pad (3) -> pad, seen, 0.3 < bos (1) -> bos; then all
    # are seen (0.5, 0.3, 0.1; eos -50) and a wins again, penalised once however often seen.
    processors = [make_repetition_penalty(10.0, context_size=20)]
    penalised = sample(model, model.init_state(1), logits_processors=processors, **common)[0]
    assert penalised.tokens == [A, PAD, BOS, A, A]
    # The reported log-probabilities are the model's own, not the penalised ones.
    log_probs = log_softmax(logits)
    assert penalised.log_prob == pytest.approx(3 * log_probs[A] + log_probs[PAD] + log_probs[BOS], rel=1e-6)


def test_generate_steps_streams_what_sample_returns():
    model = TableModel(seed=7)
    sources = [[0.0, 1.0, 0.0, 0.0], [0.0, -3.0, 0.0, 0.0]]
    common = dict(bos_id=BOS, eos_id=EOS, max_tokens=8, sampler=make_sampler(temp=1.0))
    steps = list(generate_steps(model, model.init_state(2, source=sources), key=mx.random.key(11), **common))
    found = sample(model, model.init_state(2, source=sources), key=mx.random.key(11), **common)
    for row, hypothesis in enumerate(found):
        streamed = [int(s.tokens[row]) for s in steps if bool(s.active[row])]
        if hypothesis.finished:
            assert streamed == hypothesis.tokens + [EOS]
        else:
            assert streamed == hypothesis.tokens and len(streamed) == 8
        assert sum(float(s.log_probs[row]) for s in steps) == pytest.approx(hypothesis.log_prob, rel=1e-5)
    # Once a row has ended its steps are inactive; the stream stops when all have ended or at 8.
    assert len(steps) == max(len(h.tokens) + h.finished for h in found)
    again = sample(model, model.init_state(2, source=sources), key=mx.random.key(11), **common)
    assert again == found


def test_a_row_that_ended_leaves_the_batch_and_the_others_get_what_they_get_alone(monkeypatch):
    batches_shrink(monkeypatch, True)  # as on the CPU, whatever the device
    model = RecordingTableModel(seed=5)
    sources = [[0.0, 9.0, 0.0, 0.0], [0.0, -1.0, 2.0, 0.0], [0.0, -6.0, 0.0, 0.3]]  # the first ends at once
    common = dict(bos_id=BOS, eos_id=EOS, max_tokens=8)
    steps = list(generate_steps(model, model.init_state(3, source=sources), attention=lambda s: s["hidden"], **common))
    assert model.rows[:2] == [3, 2] and model.rows[-1] < 3
    assert all(len(s.tokens) == 3 and len(s.attention) == 3 for s in steps)  # the stream keeps every row
    together = greedy_decode(TableModel(seed=5), TableModel(seed=5).init_state(3, source=sources),
                             attention=lambda s: s["hidden"], **common)
    for source, found in zip(sources, together):
        alone = greedy_decode(TableModel(seed=5), TableModel(seed=5).init_state(1, source=[source]), **common)[0]
        assert found == alone
        np.testing.assert_allclose(found.attention, _read_back(model, source, found), rtol=1e-6)


def test_a_row_s_samples_do_not_depend_on_when_the_other_rows_end(monkeypatch):
    batches_shrink(monkeypatch, True)  # as on the CPU, whatever the device
    # The sampler sees every row at every step (ended ones with eos alone), so its random draws
    # for a row are the same whether the rows beside it ended early or not.
    common = dict(bos_id=BOS, eos_id=EOS, max_tokens=8, sampler=make_sampler(temp=1.0))
    rows = {}
    for first in ([0.0, 9.0, 0.0, 0.0], [0.0, -9.0, 0.0, 0.0]):  # ends at once / hardly ends
        model = RecordingTableModel(seed=7)
        found = sample(model, model.init_state(2, source=[first, [0.0, -3.0, 0.0, 0.0]]), key=mx.random.key(3),
                       **common)
        rows[first[1]] = (found[1], model.rows)
    assert rows[9.0][0] == rows[-9.0][0]
    assert rows[9.0][1][-1] == 1 and rows[-9.0][1][-1] == 2  # one run dropped the ended row, the other had none


@pytest.mark.parametrize("path", ["native", "graph"])
def test_the_best_candidates_come_best_first(path, monkeypatch):
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((40, 3000)).astype(np.float32)
    scores[0, :] = -np.inf
    scores[0, [7, 9]] = [1.0, 2.0]  # a row with fewer finite candidates than asked
    scores[1, [5, 50, 500]] = 9.0  # a tie at the top
    scores[2, 100] = np.nan  # NaN counts as -inf where it is handled natively
    with on_path(path, monkeypatch, "top_k"):
        indices, values = (np.array(a) for a in _best(mx.array(scores), 10))
    order = np.argsort(-np.where(np.isnan(scores), -np.inf, scores), axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(values[3:], np.take_along_axis(scores, order, 1)[3:])
    np.testing.assert_array_equal(indices[3:], order[3:])  # no ties in random rows
    assert list(indices[0, :2]) == [9, 7] and np.all(np.isneginf(values[0, 2:]))
    assert sorted(indices[1, :3]) == [5, 50, 500] and np.all(values[1, :3] == 9.0)
    if path == "native":
        assert list(indices[1, :3]) == [5, 50, 500] and 100 not in indices[2]


def test_length_penalty_divisor():
    assert length_penalty_divisor(1, 0.6) == 1.0
    assert length_penalty_divisor(7, 1.0) == 2.0
    assert length_penalty_divisor(4, 0.5, "average") == 2.0
    assert length_penalty_divisor(9, 0.0, "average") == 1.0


@pytest.mark.parametrize(
    "arguments,message",
    [
        (dict(beam_size=0), "beam_size must be an integer >= 1, got 0"),
        (dict(n_best=3), r"n_best must be an integer in \[1, beam_size=2\], got 3"),
        (dict(max_tokens=0), "max_tokens must be an integer >= 1, got 0"),
        (dict(min_length=-1), "min_length .* got -1"),
        (dict(length_penalty_kind="wu"), "'gnmt' or 'average', got 'wu'"),
        (dict(length_penalty=float("inf")), "length_penalty must be a finite number"),
        (dict(banned_ids=[EOS]), "banned_ids contains eos_id=1"),
        (dict(banned_ids=[7]), "token id 7 is outside the vocabulary of V=4"),
        (dict(batch_size=3), r"batch_size=3 but state leaves have first axes \[2\]"),
    ],
)
def test_bad_beam_search_arguments_raise(arguments, message):
    model = TableModel(seed=0)
    call = dict(bos_id=BOS, eos_id=EOS, beam_size=2, max_tokens=3) | arguments
    with pytest.raises(ValueError, match=message):
        beam_search(model, model.init_state(2), **call)


def test_generate_steps_checks_its_arguments_at_the_call():
    model = TableModel(seed=0)
    with pytest.raises(ValueError, match="max_tokens must be an integer >= 1, got 0"):
        generate_steps(model, model.init_state(1), bos_id=BOS, eos_id=EOS, max_tokens=0)



def test_opennmt_s_choice_of_candidates_is_the_first_of_a_stable_sort():
    # OpenNMT-py's beams are the first K of a stable sort of the scores (ties in index order):
    # the partial selection gives exactly those, with ties, -inf and the -1e10 of ended beams.
    from mlxseq.decoding.opennmt_search import first_of_stable_sort

    rng = np.random.default_rng(0)
    for _ in range(200):
        rows, n, k = rng.integers(1, 5), rng.integers(1, 40), rng.integers(1, 45)
        scores = rng.integers(-3, 3, size=(rows, n)).astype(np.float32)  # many ties
        scores[rng.random((rows, n)) < 0.2] = -np.inf
        scores[rng.random((rows, n)) < 0.1] = -1e10
        scores[rng.random((rows, n)) < 0.02] = np.nan  # a broken model's: as the full sort orders them
        expected = np.argsort(-scores, axis=-1, kind="stable")[:, :k]
        np.testing.assert_array_equal(first_of_stable_sort(scores, k), expected)
