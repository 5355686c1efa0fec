"""OpenNMT-py's beam search, step for step, for models converted from OpenNMT-py.

:func:`mlxseq.decoding.beam_search` keeps K live hypotheses and stops when no live one can
beat the finished ones. OpenNMT-py (``onmt/translate/beam_search.py``, 2019 on) differs,
and its translations follow from these differences:

1. The K best candidates of the step are the beam, finished ones included. A beam that
   ends in eos is recorded as a hypothesis and stays in the beam with log-probability
   -1e10, so the next step has fewer useful beams.
2. A source is done once its best beam (rank 0) has ended at some step and it holds
   ``n_best`` hypotheses; the hypotheses are then ranked by score.
3. The length penalty of a hypothesis ending at a step is ``lp(tokens + 1)`` (begin token
   counted): ``wu``: ``((5 + n) / 6) ** alpha`` (mlxseq's ``gnmt``), ``avg``: ``n ** alpha``
   (mlxseq's ``average``), ``none``: alpha 0. Scores are ``log_prob / lp``.
4. eos gets -1e20 while fewer than ``min_length`` tokens were made; after ``max_tokens``
   tokens every beam ends as it is.

Nothing is banned: ``<unk>``, padding and the begin token may be produced, as there.
Shapes: B sources, K beam, V vocabulary.
"""

from typing import Optional

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_map

from mlxseq.decoding.beams import _check_beam_arguments, _next_beams, _passed_through, expand_beams
from mlxseq.decoding.search import (
    Hypothesis, State, StateReader, StepModel, _batch_size_of, _check_search_arguments, _log_softmax,
    length_penalty_divisor, shrinks_batches,
)

FINISHED_LOG_PROB = -1e10  # what a beam that ended keeps, as OpenNMT-py's update_finished
EARLY_EOS = -1e20  # eos before min_length


def first_of_stable_sort(scores: np.ndarray, k: int) -> np.ndarray:
    """``np.argsort(-scores, axis=-1, kind="stable")[:, :k]`` (ties in index order) without sorting
    whole rows: the entries at least the k-th largest, in index order, sorted among themselves
    (a (32, 25,000) step's full sorts took 65 ms, most of a search's time)."""
    if k >= scores.shape[-1]:
        return np.argsort(-scores, axis=-1, kind="stable")[:, :k]
    kth = -np.partition(-scores, k - 1, axis=-1)[:, k - 1]  # each row's k-th largest
    top = np.empty((scores.shape[0], k), dtype=np.int64)
    for row, (values, least) in enumerate(zip(scores, kth)):
        candidates = np.flatnonzero(values >= least)  # index order; every tie with the k-th
        if len(candidates) < k:  # NaN scores (the translator then says so): the whole row
            candidates = np.arange(len(values))
        top[row] = candidates[np.argsort(-values[candidates], kind="stable")[:k]]
    return top


def opennmt_beam_search(
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
    batch_size: Optional[int] = None,
    attention: Optional[StateReader] = None,
) -> list[list[Hypothesis]]:
    """Beam search as OpenNMT-py's ``BeamSearch`` runs it; see the module docstring.

    Each step: (1) log-softmax of the K beams' logits, eos at -1e20 before ``min_length``;
    (2) plus each beam's log-probability, divided by ``lp(step + 2)``; (3) the top K of the
    K*V candidates per source, best first; (4) those ending in eos (all of them at
    ``max_tokens``) become hypotheses scored by (2), and their beams keep -1e10; (5) a
    source whose rank-0 beam has ever ended and that holds ``n_best`` hypotheses is done.

    Args as :func:`mlxseq.decoding.beam_search`; returns for each source its ``n_best``
    hypotheses, best first. A hypothesis's ``log_prob`` is its score times its penalty.
    With ``attention``, each carries the rows of the beams its tokens came from, as
    OpenNMT-py's ``alive_attn`` (``Hypothesis.attention``).
    """
    _check_search_arguments(eos_id, max_tokens, min_length, ())
    _check_beam_arguments(beam_size, n_best, length_penalty, length_penalty_kind)
    batch, K = _batch_size_of(state, batch_size), beam_size
    state = expand_beams(model, state, K)
    fixed = [True] * len(tree_flatten(state))  # see _passed_through
    sources = np.arange(batch)  # those still running, in the order of the model's rows (K each)
    beam_log_probs = np.full((batch, K), -np.inf, dtype=np.float32)
    beam_log_probs[:, 0] = 0.0
    sequences = np.zeros((batch, K, 0), dtype=np.int64)
    tokens = np.full(batch * K, bos_id, dtype=np.int32)
    top_ended = np.zeros(batch, dtype=bool)
    weights = None  # (running, K, t, S) when attention is read
    found: list[list[tuple]] = [[] for _ in range(batch)]
    results: list[Optional[list[Hypothesis]]] = [None] * batch

    for step in range(max_tokens):
        before = state
        logits, state = model.step(mx.array(tokens), state)
        fixed = _passed_through(fixed, before, state)
        log_probs = np.array(_log_softmax(logits))
        vocab, running = log_probs.shape[-1], len(sources)
        if step < min_length:
            log_probs[:, eos_id] = EARLY_EOS
        log_probs = log_probs + beam_log_probs.reshape(-1, 1)
        penalty = np.float32(length_penalty_divisor(step + 2, length_penalty, length_penalty_kind))
        scores = (log_probs / penalty if penalty != 1 else log_probs).reshape(running, K * vocab)
        top = first_of_stable_sort(scores, K)  # (running, K), best first
        top_scores = np.take_along_axis(scores, top, axis=-1)
        beam_log_probs = (top_scores * penalty).astype(np.float32)
        origin, token = top // vocab, top % vocab
        sequences = np.concatenate([np.take_along_axis(sequences, origin[:, :, None], 1), token[:, :, None]], axis=2)
        if attention is not None:
            step_weights = np.array(attention(state), dtype=np.float32).reshape(running, K, 1, -1)
            if weights is None:
                weights = np.zeros((running, K, 0, step_weights.shape[-1]), dtype=np.float32)
            weights = np.take_along_axis(np.concatenate([weights, step_weights], axis=2), origin[:, :, None, None], 1)
        ended = token == eos_id
        if step + 1 == max_tokens:
            ended[:] = True
        if ended.any():
            beam_log_probs[ended] = FINISHED_LOG_PROB
            top_ended[sources] |= ended[:, 0]
            for i, b in enumerate(sources):
                if results[b] is not None:
                    continue
                for j in np.nonzero(ended[i])[0]:
                    words = sequences[i, j].tolist()
                    by_eos = words[-1] == eos_id
                    rows = None if weights is None else weights[i, j]
                    found[b].append((float(top_scores[i, j]), float(top_scores[i, j] * penalty),
                                     words[:-1] if by_eos else words, by_eos, rows))
                if top_ended[b] and len(found[b]) >= n_best:
                    ranked = sorted(found[b], key=lambda h: h[0], reverse=True)[:n_best]
                    results[b] = [Hypothesis(words, score, log_prob, by_eos, rows)
                                  for score, log_prob, words, by_eos, rows in ranked]
        if all(r is not None for r in results):
            break
        # On the CPU a source that is done leaves the batch, as OpenNMT-py's finished batches do.
        still = np.array([results[b] is None for b in sources]) | (not shrinks_batches())
        state = _next_beams(state, fixed, origin, still)
        sources, tokens = sources[still], token[still].reshape(-1).astype(np.int32)
        beam_log_probs, sequences = beam_log_probs[still], sequences[still]
        weights = None if weights is None else weights[still]
        mx.eval(state)
    return results
