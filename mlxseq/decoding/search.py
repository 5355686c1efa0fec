"""Greedy decoding and sampling, written once against the step interface (beam search: ``beams``).

Any generative model (language model or the decoder of a translation model) that follows
``StepModel`` can be decoded here. Shapes: B batch (sources), K beam, V vocabulary,
T steps. Scores are sums of the model's log-probabilities ``log_softmax(logits)``;
banning a token or forbidding an early eos only removes choices, it does not renormalise.

A returned hypothesis holds its tokens without bos and without the eos that ended it;
its log-probability does include that eos's, and its length (for the length penalty)
counts it: the length is the number of log-probabilities summed.

Given ``attention`` (a function reading ``(rows, S)`` weights off the state after each
step), greedy and beam search also return, with each hypothesis, the weights of every
step it was scored at: the rows of the beam each token was chosen from, as OpenNMT-py's
searches keep them. Without it nothing extra is read or copied.
"""

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, NamedTuple, Optional, Protocol, Sequence

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_map

from mlxseq.layers.activations import exp_nonpositive, native_log_softmax
from mlxseq.decoding.sampling import LogitsProcessor, Sampler, greedy_sampler
from mlxseq.system import native

State = Any
"""A pytree of ``mx.array`` leaves, each with the batch axis first."""

StateReader = Callable[[State], mx.array]
"""Reads ``(rows, S)`` values off the state after a step, e.g. ``lambda s: s["attention"]``."""


class StepModel(Protocol):
    """The interface every generative model offers to the decoders.

    ``init_state(batch_size, **context)`` returns the state before the first step (a
    translation model takes the memory from ``encode(src, lengths)`` as context).
    ``step(tokens, state)`` takes the previous tokens ``(B,)`` int32 (bos first) and returns
    unnormalised float32 logits ``(B, V)`` for the next token and the new state.

    Every leaf of the state has the batch axis first, so decoders can reorder beams with
    ``tree_map(lambda a: a[idx], state)`` and expand to K beams with
    ``tree_map(lambda a: mx.repeat(a, K, axis=0), state)``.

    A model may also offer ``expand_beams(state, K)``, the state for K beams of each source
    (rows ``b * K + k``), keeping some leaves once per source (first axis B, not B*K): a
    translation model's memory, which its step then reads for the K beams of a source at
    once. Such leaves must come back from ``step`` unchanged (the very same arrays).
    """

    def init_state(self, batch_size: int, **context: Any) -> State: ...

    def step(self, tokens: mx.array, state: State) -> tuple[mx.array, State]: ...


@dataclass(frozen=True)
class Hypothesis:
    """One decoded sequence.

    Attributes:
        tokens: generated token ids, without bos and without the final eos.
        score: the ranking score, ``log_prob / length_penalty_divisor(length)``; equal to
            ``log_prob`` for greedy decoding and sampling.
        log_prob: sum of the model's log-probabilities of the tokens, eos included.
        finished: True if the sequence ended with eos, False if it stopped at ``max_tokens``.
        attention: ``(len(tokens) + finished, S)`` float32, row i read off the state after
            the step that scored token i (the eos last); only when the search was given
            ``attention``, else None.
    """

    tokens: list[int]
    score: float
    log_prob: float
    finished: bool
    attention: Optional[np.ndarray] = field(default=None, compare=False, repr=False)


class GenerationStep(NamedTuple):
    """What ``generate_steps`` yields at each step; all ``(B,)``.

    Attributes:
        tokens: int32 token ids; eos again for rows that ended before this step.
        log_probs: float32 model log-probability of each token (0 where not active).
        active: True where the token belongs to its row's sequence (the eos that ends a
            row is active; the eos repeated after it is not).
        attention: ``(B, S)`` what ``attention`` read off the state after this step, or None.
    """

    tokens: mx.array
    log_probs: mx.array
    active: mx.array
    attention: Optional[mx.array] = None


def length_penalty_divisor(length, alpha: float, kind: str = "gnmt"):
    """The divisor ``lp(length)`` of the final score ``log_prob / lp(length)``.

    ``kind="gnmt"``: ``((5 + length) / 6) ** alpha`` (Wu et al. 2016, arXiv:1609.08144).
    ``kind="average"``: ``length ** alpha``; alpha=1 is the mean log-probability per token.
    ``alpha=0`` gives 1 for both, i.e. the raw sum. Works on ints and numpy arrays.
    """
    if kind == "gnmt":
        return ((5.0 + length) / 6.0) ** alpha
    if kind == "average":
        return np.asarray(length, dtype=np.float64) ** alpha
    raise ValueError(f"length penalty kind must be 'gnmt' or 'average', got {kind!r}")


def _batch_size_of(state: State, batch_size: Optional[int]) -> int:
    sizes = {leaf.shape[0] for _, leaf in tree_flatten(state)}
    if batch_size is None:
        if len(sizes) != 1:
            raise ValueError(f"cannot infer the batch size from state leaves with first axes {sorted(sizes)}")
        return sizes.pop()
    if sizes - {batch_size}:
        raise ValueError(f"batch_size={batch_size} but state leaves have first axes {sorted(sizes)}")
    return batch_size


def _check_search_arguments(eos_id, max_tokens, min_length, banned_ids):
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
    if isinstance(min_length, bool) or not isinstance(min_length, int) or min_length < 0:
        raise ValueError(f"min_length must be an integer >= 0, got {min_length!r}")
    if eos_id in banned_ids:
        raise ValueError(f"banned_ids contains eos_id={eos_id}; use min_length to delay eos")


def shrinks_batches() -> bool:
    """Whether rows (and beam search's sources) that are done leave the model's batch: on the CPU,
    where a step costs in proportion to its rows. On a GPU a decoder step of a few hundred rows
    costs about what one of fewer does, and each smaller batch meant gathers and kernels for a
    new shape: there they stay (measured on an H200: 1.64 against 1.38 s for 1,000 sentences)."""
    return mx.default_device().type == mx.DeviceType.cpu


def _log_softmax(logits: mx.array) -> mx.array:
    """log_softmax over the last axis, ``-inf`` logits staying ``-inf``: the native primitive
    where it runs, else :func:`_graph_log_softmax`."""
    x = logits.astype(mx.float32)
    native_form = native_log_softmax(x)
    return _graph_log_softmax(x) if native_form is None else native_form


@mx.compile
def _graph_log_softmax(x: mx.array) -> mx.array:
    """log_softmax of float32 ``x`` over the last axis, ``-inf`` logits staying ``-inf``.

    MLX's CPU ``exp`` (inside ``logsumexp``) runs one element at a time; this uses the
    vectorised exp of :func:`mlxseq.layers.activations.exp_nonpositive` (relative error
    < 2e-7), about twice as fast over a (64, 5000) step.
    """
    shifted = x - x.max(axis=-1, keepdims=True)
    clamped = mx.where(shifted > -87.0, shifted, -87.0)  # exp(-87) ~ 1.6e-38: nothing next to the max's 1
    return shifted - mx.log(exp_nonpositive(clamped).sum(axis=-1, keepdims=True))


def _best(scores: mx.array, n: int) -> tuple[mx.array, mx.array]:
    """Indices and values of the ``n`` largest entries of each row of ``scores (B, M)``, best first."""
    if native.can_run_rows(scores):
        return native.top_k(scores, n)
    top = mx.argpartition(-scores, kth=n - 1, axis=-1)[:, :n]
    top_scores = mx.take_along_axis(scores, top, axis=-1)
    order = mx.argsort(-top_scores, axis=-1)
    return mx.take_along_axis(top, order, axis=-1), mx.take_along_axis(top_scores, order, axis=-1)


def _forbidden(vocab: int, banned_ids: Sequence[int], eos_id: int, step: int, min_length: int) -> mx.array:
    """Additive ``(V,)`` mask: -inf for banned ids, and for eos while ``step < min_length``."""
    forbidden = list(banned_ids) + ([eos_id] if step < min_length else [])
    for token in forbidden:
        if not 0 <= token < vocab:
            raise ValueError(f"token id {token} is outside the vocabulary of V={vocab}")
    mask = np.zeros(vocab, dtype=np.float32)
    mask[forbidden] = -np.inf
    return mx.array(mask)


def generate_steps(
    model: StepModel,
    state: State,
    *,
    bos_id: int,
    eos_id: int,
    max_tokens: int,
    sampler: Sampler = greedy_sampler,
    logits_processors: Sequence[LogitsProcessor] = (),
    banned_ids: Sequence[int] = (),
    min_length: int = 0,
    key: Optional[mx.array] = None,
    batch_size: Optional[int] = None,
    attention: Optional[StateReader] = None,
) -> Iterator[GenerationStep]:
    """Generate a batch token by token, yielding each step as it is made (for streaming).

    Each step: (1) the model gives logits ``(B, V)``; (2) the logits processors see the
    tokens generated so far ``(B, t)`` and the logits; (3) banned ids, and eos before
    ``min_length`` tokens, get -inf; (4) the sampler picks a token per row from the
    log-softmax of that; (5) the model's own log-probability of the token is reported.
    Rows that produced eos report eos (inactive) until every row has ended or ``max_tokens``
    steps were made; where ``shrinks_batches()`` (the CPU), the model no longer runs them.

    Args:
        model, state: a ``StepModel`` and its state for B rows.
        bos_id, eos_id: the first input token and the token that ends a sequence.
        max_tokens: at most this many steps (eos included).
        sampler: ``sampler(logprobs (B, V), key=None) -> (B,)``; default argmax.
        logits_processors: each ``processor(tokens (B, t), logits (B, V)) -> logits``.
        banned_ids: token ids never produced.
        min_length: eos is forbidden until this many tokens were generated.
        key: an ``mx.random.key`` split once per step; ``None`` uses the global generator.
        batch_size: B, when it cannot be read off the state's leaves.
        attention: reads ``(B, S)`` off the state after each step into ``GenerationStep.attention``.
    """
    # Checked here, not inside the generator, so bad arguments fail at the call.
    _check_search_arguments(eos_id, max_tokens, min_length, banned_ids)
    batch = _batch_size_of(state, batch_size)
    return _generation_loop(
        model, state, batch, bos_id, eos_id, max_tokens, sampler, logits_processors, banned_ids, min_length, key,
        attention,
    )


def _generation_loop(
    model, state, batch, bos_id, eos_id, max_tokens, sampler, logits_processors, banned_ids, min_length, key,
    attention=None,
) -> Iterator[GenerationStep]:
    tokens = mx.full((batch,), bos_id, dtype=mx.int32)
    ended = mx.zeros((batch,), dtype=mx.bool_)
    history = mx.zeros((batch, 0), dtype=mx.int32)
    # The rows the model still runs (a row that ended leaves its batch) and, for each of the
    # batch's rows, where its logits are: its place among them, or past them (ended).
    running, running_rows, place = np.arange(batch), None, None
    for step in range(max_tokens):
        logits, state = model.step(tokens if place is None else tokens[running_rows], state)
        vocab = logits.shape[-1]
        if place is not None:  # ended rows get eos alone, so the processors and sampler see every row
            eos_only = mx.where(mx.arange(vocab) == eos_id, 0.0, -mx.inf)[None].astype(logits.dtype)
            logits = mx.concatenate([logits, eos_only])[place]
        log_probs = _log_softmax(logits)
        for processor in logits_processors:
            logits = processor(history, logits)
        logits = logits + _forbidden(vocab, banned_ids, eos_id, step, min_length)
        step_key = None
        if key is not None:
            key, step_key = mx.random.split(key)
        if sampler is greedy_sampler:  # the argmax of the log-softmax is the argmax of the logits
            chosen = mx.argmax(logits, axis=-1).astype(mx.int32)
        else:
            chosen = sampler(_log_softmax(logits), key=step_key).astype(mx.int32)
        active = ~ended
        tokens = mx.where(active, chosen, eos_id)
        chosen_log_probs = mx.take_along_axis(log_probs, tokens[:, None], axis=-1)[:, 0]
        ended = ended | (tokens == eos_id)
        history = mx.concatenate([history, tokens[:, None]], axis=1)
        mx.eval(tokens, state, ended)
        weights = None if attention is None else attention(state)
        if weights is not None and place is not None:
            weights = mx.concatenate([weights, mx.zeros_like(weights[:1])])[place]
        yield GenerationStep(tokens, mx.where(active, chosen_log_probs, 0.0), active, weights)
        ended_rows = np.array(ended)
        if ended_rows.all():
            return
        still = ~ended_rows[running]
        if not still.all() and shrinks_batches():
            kept = mx.array(np.nonzero(still)[0])
            state = tree_map(lambda a: a[kept], state)
            running = running[still]
            place = np.full(batch, len(running), dtype=np.int32)
            place[running] = np.arange(len(running))
            running_rows, place = mx.array(running), mx.array(place)


def _collect(steps: Iterator[GenerationStep], eos_id: int) -> list[Hypothesis]:
    steps = list(steps)
    columns = [(np.array(s.tokens), np.array(s.log_probs), np.array(s.active)) for s in steps]
    tokens, log_probs, active = (np.stack(c, axis=1) for c in zip(*columns))  # (B, T) each
    weights = None
    if steps[0].attention is not None:
        weights = np.stack([np.array(s.attention, dtype=np.float32) for s in steps], axis=1)  # (B, T, S)
    hypotheses = []
    for b, (row_tokens, row_log_probs, row_active) in enumerate(zip(tokens, log_probs, active)):
        kept = row_tokens[row_active]
        finished = bool(kept.size and kept[-1] == eos_id)
        # Sum in float32 in step order, as beam search does, so the scores agree bit for bit.
        log_prob = float(np.cumsum(row_log_probs[row_active], dtype=np.float32)[-1])
        words = kept[:-1] if finished else kept
        row_weights = None if weights is None else weights[b][row_active]
        hypotheses.append(Hypothesis([int(t) for t in words], log_prob, log_prob, finished, row_weights))
    return hypotheses


def greedy_decode(
    model: StepModel,
    state: State,
    *,
    bos_id: int,
    eos_id: int,
    max_tokens: int,
    banned_ids: Sequence[int] = (),
    min_length: int = 0,
    batch_size: Optional[int] = None,
    attention: Optional[StateReader] = None,
) -> list[Hypothesis]:
    """The most probable token at every step, for each of B rows; returns B hypotheses.

    Stops as soon as every row has produced eos. Arguments as in ``generate_steps``;
    with ``attention``, each hypothesis carries its rows (``Hypothesis.attention``).
    """
    steps = generate_steps(
        model, state, bos_id=bos_id, eos_id=eos_id, max_tokens=max_tokens, banned_ids=banned_ids,
        min_length=min_length, batch_size=batch_size, attention=attention,
    )
    return _collect(steps, eos_id)


def sample(
    model: StepModel,
    state: State,
    *,
    bos_id: int,
    eos_id: int,
    max_tokens: int,
    sampler: Sampler,
    logits_processors: Sequence[LogitsProcessor] = (),
    banned_ids: Sequence[int] = (),
    min_length: int = 0,
    key: Optional[mx.array] = None,
    batch_size: Optional[int] = None,
) -> list[Hypothesis]:
    """``generate_steps`` run to the end: one sampled hypothesis per row (B in all)."""
    steps = generate_steps(
        model, state, bos_id=bos_id, eos_id=eos_id, max_tokens=max_tokens, sampler=sampler,
        logits_processors=logits_processors, banned_ids=banned_ids, min_length=min_length, key=key,
        batch_size=batch_size,
    )
    return _collect(steps, eos_id)
