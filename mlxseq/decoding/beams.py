"""Beam search over any :class:`~mlxseq.decoding.search.StepModel`: K beams per source.

The state holds K rows per source (``expand_beams``; a model may keep leaves such as an
encoder's memory once per source), reordered to the beams kept at each step; on the CPU a
source that is done leaves the batch (``shrinks_batches``). Shapes: B sources, K beams, V vocabulary.
"""

from typing import Optional, Sequence

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_map

from mlxseq.decoding.search import (
    Hypothesis, State, StateReader, StepModel, _batch_size_of, _best, _check_search_arguments, _forbidden,
    _log_softmax, length_penalty_divisor, shrinks_batches,
)


def expand_beams(model: StepModel, state: State, K: int) -> State:
    """The state for K beams of each source: the model's ``expand_beams`` where it has one,
    else every leaf repeated K times."""
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise ValueError(f"K (beams per source) must be an integer >= 1, got {K!r}")
    if hasattr(model, "expand_beams"):
        return model.expand_beams(state, K)
    return tree_map(lambda a: mx.repeat(a, K, axis=0), state)


def _check_beam_arguments(beam_size, n_best, length_penalty, length_penalty_kind):
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be an integer >= 1, got {beam_size!r}")
    if isinstance(n_best, bool) or not isinstance(n_best, int) or not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be an integer in [1, beam_size={beam_size}], got {n_best!r}")
    if not (isinstance(length_penalty, (int, float)) and np.isfinite(length_penalty)):
        raise ValueError(f"length_penalty must be a finite number (0 means the raw sum), got {length_penalty!r}")
    length_penalty_divisor(1, length_penalty, length_penalty_kind)


def _passed_through(fixed: list[bool], before: State, after: State) -> list[bool]:
    """For each leaf of a beam search's state: still what it was when expanded to K beams.

    Such a leaf (a translation model's memory, keys and mask) holds each source's rows once
    (see ``StepModel``) or K copies of them, so reordering beams, which moves rows only among
    a source's K, leaves it as it is. A leaf counts while each step returned the very array
    it was given (a step that changes the state's structure counts as changing every leaf)."""
    after, before = tree_flatten(after), tree_flatten(before)
    if [name for name, _ in after] != [name for name, _ in before]:
        return [False] * len(after)
    return [f and new is old for f, (_, new), (_, old) in zip(fixed, after, before)]


def _next_beams(state: State, fixed: list[bool], origin: np.ndarray, still: np.ndarray) -> State:
    """The state's rows for the next step of a beam search over ``len(origin)`` sources.

    The K rows of running source i are ``i * K + origin[i]`` (the beams they extend); sources
    where ``still`` is False leave the batch. Leaves that are ``fixed`` only lose those
    sources' rows (nothing to gather while every source stays)."""
    running, K = origin.shape
    first_rows = (np.arange(running)[:, None] * K)[still]
    beams = mx.array((first_rows + origin[still]).reshape(-1).astype(np.int32))
    leaving = not still.all()
    copies = mx.array((first_rows + np.arange(K)).reshape(-1).astype(np.int32)) if leaving else None
    kept_sources = mx.array(np.nonzero(still)[0].astype(np.int32)) if leaving else None

    def next_rows(f, name, leaf):
        if leaf.shape[0] == running * K:
            return (leaf if not leaving else leaf[copies]) if f else leaf[beams]
        if not f or leaf.shape[0] != running:
            raise ValueError(f"state leaf {name!r} has {leaf.shape[0]} rows, expected {running * K} "
                             f"({running} sources x {K} beams), or {running} if the model's step passes it through")
        return leaf[kept_sources] if leaving else leaf

    leaves = iter([next_rows(f, name, leaf) for f, (name, leaf) in zip(fixed, tree_flatten(state))])
    return tree_map(lambda _: next(leaves), state)


def beam_search(
    model: StepModel,
    state: State,
    *,
    bos_id: int,
    eos_id: int,
    beam_size: int,
    max_tokens: int,
    length_penalty: float = 0.0,
    length_penalty_kind: str = "gnmt",
    n_best: int = 1,
    min_length: int = 0,
    banned_ids: Sequence[int] = (),
    batch_size: Optional[int] = None,
    attention: Optional[StateReader] = None,
) -> list[list[Hypothesis]]:
    """Beam search for B sources at once, K beams each, as B*K rows of the model.

    Each step: (1) the model scores the K alive beams of every source, ``(B*K, V)``;
    (2) candidates ``alive_score + log_softmax`` form ``(B, K*V)``, with banned ids (and
    eos before ``min_length``) at -inf; (3) the best 2K candidates per source are taken;
    (4) those among the best K that end in eos are finished and set aside, scored
    ``log_prob / lp(length)`` (see ``length_penalty_divisor``); (5) the best K that do not
    end in eos stay alive and the state is reordered to them. Hypotheses still alive after
    ``max_tokens`` steps are finished as they are, scored the same way. On the CPU a source
    that is done (below) leaves the batch: later steps run only the others' beams.

    A source stops once it holds ``n_best`` finished hypotheses that no alive beam can
    beat: an alive log-probability can only fall, so its best final score is at most
    ``alive_log_prob / max(lp)`` over the lengths still reachable. The result is thus exact
    whenever the beams hold every candidate, and ``beam_size=1`` is greedy decoding when
    ``length_penalty=0``.

    Args:
        model, state: a ``StepModel`` and its state for B sources (not yet expanded to K).
        bos_id, eos_id: the first input token and the token that ends a hypothesis.
        beam_size: K >= 1.
        max_tokens: at most this many steps (eos included).
        length_penalty: alpha; 0 (default) ranks by the raw sum of log-probabilities.
        length_penalty_kind: ``"gnmt"`` (default) or ``"average"``.
        n_best: hypotheses returned per source, 1 <= n_best <= K. Default: ``1``.
        min_length: eos is forbidden until this many tokens were generated.
        banned_ids: token ids never produced (e.g. pad, unk).
        batch_size: B, when it cannot be read off the state's leaves.
        attention: reads ``(B*K, S)`` off the state after each step; each hypothesis then
            carries the rows of the beams its tokens came from (``Hypothesis.attention``).

    Returns:
        For each source, its best ``n_best`` hypotheses (fewer only if fewer exist), best
        first by ``score``.
    """
    _check_search_arguments(eos_id, max_tokens, min_length, banned_ids)
    _check_beam_arguments(beam_size, n_best, length_penalty, length_penalty_kind)
    batch, K = _batch_size_of(state, batch_size), beam_size

    def lp(length):
        return length_penalty_divisor(length, length_penalty, length_penalty_kind)

    state = expand_beams(model, state, K)
    fixed = [True] * len(tree_flatten(state))  # leaves every step passed through (_passed_through)
    # The sources whose beams the model still runs, in the order of its rows (K rows each).
    sources = np.arange(batch)
    tokens = np.full(batch * K, bos_id, dtype=np.int32)
    history = np.zeros((batch, K, 0), dtype=np.int32)  # tokens of each alive beam
    # Only beam 0 starts alive: K copies of the same prefix would fill the beam with duplicates.
    alive = np.full((batch, K), -np.inf, dtype=np.float32)
    alive[:, 0] = 0.0
    done = np.zeros(batch, dtype=bool)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    weights = None if attention is None else np.zeros((batch, K, 0, 0), dtype=np.float32)  # (B, K, t, S)

    def finish(b, words, log_prob, ended_by_eos, rows=None):
        score = float(log_prob / lp(len(words) + ended_by_eos))
        finished[b].append(Hypothesis([int(t) for t in words], score, float(log_prob), ended_by_eos, rows))
        finished[b].sort(key=lambda h: -h.score)  # stable: equal scores keep the earlier first
        del finished[b][n_best:]

    for step in range(max_tokens):
        before = state
        logits, state = model.step(mx.array(tokens), state)
        fixed = _passed_through(fixed, before, state)
        vocab, running = logits.shape[-1], len(sources)
        if weights is not None:
            step_weights = np.array(attention(state), dtype=np.float32).reshape(running, K, 1, -1)
            if step == 0:
                weights = np.zeros((batch, K, 0, step_weights.shape[-1]), dtype=np.float32)
            weights = np.concatenate([weights, np.zeros((batch, K, 1, weights.shape[-1]), np.float32)], axis=2)
            weights[sources, :, -1:] = step_weights  # each beam's rows, this step's last
        log_probs = _log_softmax(logits) + _forbidden(vocab, banned_ids, eos_id, step, min_length)
        candidates = (mx.array(alive[sources]).reshape(-1, 1) + log_probs).reshape(running, K * vocab)
        n_top = min(2 * K, K * vocab)
        top, top_scores = (np.array(a) for a in _best(candidates, n_top))  # (running, 2K) each, best first
        origin, token = top // vocab, (top % vocab).astype(np.int32)

        is_eos = token == eos_id
        rank = np.arange(n_top)
        valid = np.isfinite(top_scores)
        for i, j in zip(*np.nonzero(is_eos & valid & (rank < K))):
            b = sources[i]
            rows = None if weights is None else weights[b, origin[i, j]].copy()  # weights change below
            finish(b, history[b, origin[i, j]], top_scores[i, j], True, rows)

        # The best K candidates not ending in eos (at least K of the 2K do: one eos per beam).
        keep = np.argsort(np.where(is_eos, rank + n_top, rank), axis=-1, kind="stable")[:, :K]
        origin, token = np.take_along_axis(origin, keep, 1), np.take_along_axis(token, keep, 1)
        alive[sources] = np.where(np.take_along_axis(valid, keep, 1), np.take_along_axis(top_scores, keep, 1), -np.inf)
        history = np.concatenate([history, np.zeros((batch, K, 1), np.int32)], axis=2)
        history[sources, :, :-1] = np.take_along_axis(history[sources, :, :-1], origin[:, :, None], 1)
        history[sources, :, -1] = token
        if weights is not None:
            weights[sources] = np.take_along_axis(weights[sources], origin[:, :, None, None], 1)

        if step + 1 == max_tokens:
            break
        best_alive = alive[sources].max(axis=1)
        bound = best_alive / max(lp(step + 2), lp(max_tokens))
        for i, b in enumerate(sources):
            full = len(finished[b]) == n_best
            done[b] = not np.isfinite(best_alive[i]) or (full and bound[i] <= finished[b][-1].score)
        alive[done] = -np.inf
        if done.all():
            break
        still = ~done[sources] if shrinks_batches() else np.ones(len(sources), dtype=bool)
        state = _next_beams(state, fixed, origin, still)
        sources, tokens = sources[still], token[still].reshape(-1)
        mx.eval(state)

    if not done.all():
        for b, k in zip(*np.nonzero(np.isfinite(alive) & ~done[:, None])):
            finish(b, history[b, k], alive[b, k], False, None if weights is None else weights[b, k])
    return finished
