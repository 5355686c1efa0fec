"""Every training loss, over padded batches (padding never contributes): token cross-entropy with
label smoothing, classification (one label, several labels, spans, distillation) and CTC."""

import mlx.core as mx
import numpy as np

from mlxseq.layers.activations import log_softmax
from mlxseq.system import native


def label_smoothed_cross_entropy(logits: mx.array, targets: mx.array, pad_id: int, smoothing: float = 0.0):
    """Summed label-smoothed cross-entropy over non-pad targets, and their count.

    With smoothing ``e`` over V classes the target distribution is ``1 - e`` on the
    true class plus ``e / V`` on every class (as ``torch.nn.CrossEntropyLoss``'s
    ``label_smoothing``), so the loss is
    ``(1 - e) * nll(target) + e * mean_v(-log p_v)``.

    Args:
        logits: (..., V) unnormalised.
        targets: (...) int class ids; ``pad_id`` positions are ignored.

    Returns:
        ``(loss_sum, num_tokens)`` as scalars (divide for the mean).
    """
    nll = smoothed_nll(logits, targets, smoothing)
    valid = targets != pad_id
    return mx.where(valid, nll, 0.0).sum(), valid.sum()


def smoothed_nll(logits: mx.array, targets: mx.array, smoothing: float = 0.0) -> mx.array:
    """The label-smoothed cross-entropy (above) of each position: ``(...)`` float32 for logits
    ``(..., V)`` and class ids ``targets`` ``(...)``."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
    logits = logits.astype(mx.float32)
    if native.can_run_rows(logits) and logits.size > 0 and targets.shape == logits.shape[:-1]:
        V = logits.shape[-1]
        rows = native.smoothed_nll(logits.reshape(-1, V), targets.reshape(-1).astype(mx.int32), smoothing)
        return rows.reshape(targets.shape)
    log_probs = log_softmax(logits)
    nll = -mx.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    if smoothing > 0:
        nll = (1.0 - smoothing) * nll - smoothing * log_probs.mean(axis=-1)
    return nll


# --- classification: one label, several labels, spans, distillation ----------------------------


def classification_loss(logits: mx.array, labels: mx.array, smoothing: float = 0.0):
    """``(summed loss, examples)``: softmax cross-entropy for class ids ``labels`` (B,), or for
    0/1 targets ``labels`` (B, C) the binary cross-entropy summed over the C labels."""
    if labels.ndim == 1:
        return label_smoothed_cross_entropy(logits, labels, -1, smoothing)  # -1: no example is padding
    return binary_cross_entropy(logits, labels), mx.array(labels.shape[0])


def binary_cross_entropy(logits: mx.array, targets: mx.array) -> mx.array:
    """Summed ``-t log sigmoid(x) - (1 - t) log(1 - sigmoid(x))`` for targets in [0, 1] (B, C)."""
    return binary_cross_entropy_terms(logits, targets).sum()


def binary_cross_entropy_terms(logits: mx.array, targets: mx.array) -> mx.array:
    """``-t log sigmoid(x) - (1 - t) log(1 - sigmoid(x))`` of each logit, float32 of the same shape."""
    x = logits.astype(mx.float32)
    # log(1 + e^x) - t x, written stably: max(x, 0) - t x + log(1 + e^-|x|)
    return mx.maximum(x, 0.0) - targets * x + mx.log1p(mx.exp(-mx.abs(x)))


def span_loss(logits: mx.array, labels: mx.array, weights: mx.array, smoothing: float = 0.0):
    """``(weighted summed loss, summed weight)`` of spans: logits (B, S, C), class ids ``labels``
    (B, S) (cross-entropy, label-smoothed) or 0/1 ``labels`` (B, S, C) (binary cross-entropy
    summed over the C labels), ``weights`` (B, S), 0 on padding spans."""
    if labels.ndim == weights.ndim:
        losses = smoothed_nll(logits, labels, smoothing)  # (B, S)
    else:
        losses = binary_cross_entropy_terms(logits, labels).sum(axis=-1)
    return (weights * losses).sum(), weights.sum()


def distillation_loss(logits: mx.array, labels: mx.array, soft: mx.array, weight: float, smoothing: float = 0.0):
    """``(summed loss, examples)`` of ``(1 - w) * loss(labels) + w * loss(soft)``: the loss against
    the labels (:func:`classification_loss`) and against the teachers' probabilities ``soft``
    (B, C): the cross-entropy ``-sum_c soft_c log p_c`` (softmax), or for multi-label data
    (``labels`` (B, C)) the binary cross-entropy with ``soft`` as targets."""
    hard, count = classification_loss(logits, labels, smoothing)
    if labels.ndim == 1:
        taught = -(soft * log_softmax(logits.astype(mx.float32))).sum()
    else:
        taught = binary_cross_entropy(logits, soft)
    return (1.0 - weight) * hard + weight * taught, count


# --- CTC ------------------------------------------------------------------------------
# Connectionist temporal classification (Graves et al. 2006), as torch.nn.CTCLoss computes it.
# Over the extended label sequence l' = (blank, l_1, blank, l_2, ..., l_S, blank) of length 2S+1:
#   alpha_0(0) = y_0(blank), alpha_0(1) = y_0(l_1)
#   alpha_t(s) = logsumexp(alpha_{t-1}(s), alpha_{t-1}(s-1), alpha_{t-1}(s-2) if l'_s != blank and
#                l'_s != l'_{s-2}) + y_t(l'_s)
#   loss = -logsumexp(alpha_{T-1}(2S), alpha_{T-1}(2S-1))
# in log space, batched: steps past a sequence's input length keep its alphas.

CTC_REDUCTIONS = ("mean", "sum", "none")


def _safe_logsumexp(*terms: mx.array) -> mx.array:
    """logsumexp over ``terms`` that is -inf, with zero gradients, where every term is -inf."""
    stacked = mx.stack(terms)
    peak = mx.stop_gradient(stacked.max(axis=0))
    shift = mx.where(mx.isinf(peak), 0.0, peak)
    total = mx.exp(stacked - shift).sum(axis=0)
    empty = total == 0
    return mx.where(empty, -mx.inf, shift + mx.log(mx.where(empty, 1.0, total)))


def ctc_loss(log_probs: mx.array, targets: mx.array, input_lengths, target_lengths, blank: int = 0,
             reduction: str = "mean", zero_infinity: bool = False) -> mx.array:
    """CTC loss with torch.nn.CTCLoss's arguments, semantics and numbers.

    Args:
        log_probs: ``(T, B, C)`` log-probabilities (log_softmax over C), time-major as in torch.
        targets: ``(B, S)`` label ids padded past each target's length (blank never among them).
        input_lengths, target_lengths: ``(B,)`` valid frames and labels of each sequence.
        blank: the blank class.
        reduction: ``"mean"`` (each loss divided by its target length, then the batch mean),
            ``"sum"`` or ``"none"`` (``(B,)``).
        zero_infinity: impossible alignments (input too short) give 0 and zero gradients
            instead of inf.

    The gradient with respect to ``log_probs`` is written out (the beta recursion, below), not
    MLX's autodiff of the alpha loop.
    """
    if reduction not in CTC_REDUCTIONS:
        raise ValueError(f"reduction must be one of {CTC_REDUCTIONS}, got {reduction!r}")
    if log_probs.ndim != 3:
        raise ValueError(f"log_probs must be (T, B, C), got shape {tuple(log_probs.shape)}")
    T, B, C = log_probs.shape
    if T < 1 or not 0 <= blank < C:
        raise ValueError(f"log_probs (T, B, C) = {(T, B, C)} needs T >= 1 and blank in [0, C), got blank {blank}")
    _check_ctc_host_inputs(targets, input_lengths, target_lengths, T, B, C, blank)
    targets = mx.array(targets).astype(mx.int32)
    if targets.ndim != 2 or targets.shape[0] != B:
        raise ValueError(f"targets must be (B, S) = ({B}, S) padded label ids, got shape {tuple(targets.shape)}")
    input_lengths = mx.array(input_lengths).astype(mx.int32)
    target_lengths = mx.array(target_lengths).astype(mx.int32)
    if input_lengths.shape != (B,) or target_lengths.shape != (B,):
        raise ValueError(f"input_lengths and target_lengths must be ({B},), got {tuple(input_lengths.shape)} "
                         f"and {tuple(target_lengths.shape)}")
    # Padding past each length may hold anything (-1 often): it and the labels of a sequence no
    # alignment can read (a length outside [0, S], a label outside [0, C) or equal to the blank)
    # become an in-range label, so no path gathers out of bounds; such a sequence's loss is NaN.
    S = targets.shape[1]
    inside = mx.arange(S)[None, :] < target_lengths[:, None]  # (B, S)
    label_ok = (targets >= 0) & (targets < C) & (targets != blank)
    usable = (target_lengths >= 0) & (target_lengths <= S) & mx.all(label_ok | ~inside, axis=1)  # (B,)
    safe_targets = mx.where(inside & label_ok, targets, (blank + 1) % C)
    safe_lengths = mx.where(usable, target_lengths, 0)
    if native.can_run_ctc(log_probs):  # the same recursions as one C++ primitive (csrc/ctc.h)
        losses = native.ctc_losses(log_probs, safe_targets, input_lengths, safe_lengths, blank)
    else:
        losses, _ = _ctc_losses(log_probs, safe_targets, input_lengths, safe_lengths, blank)  # alphas for the vjp
    losses = mx.where(usable, losses, mx.nan)
    if zero_infinity:
        losses = mx.where(mx.isinf(losses), 0.0, losses)
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return (losses / mx.maximum(target_lengths, 1).astype(losses.dtype)).mean()


def _check_ctc_host_inputs(targets, input_lengths, target_lengths, T: int, B: int, C: int, blank: int) -> None:
    """Name lengths and labels that no alignment can use, for inputs given as lists or NumPy arrays.

    (MLX arrays are not read back here: that would stop a compiled step. With them the loss of
    such a sequence is NaN, and nothing is read out of bounds.)
    """
    if any(isinstance(a, mx.array) for a in (targets, input_lengths, target_lengths)):
        return
    targets, inputs, lengths = np.asarray(targets), np.asarray(input_lengths), np.asarray(target_lengths)
    if targets.ndim != 2 or inputs.shape != (B,) or lengths.shape != (B,):
        return  # the shape checks below name it
    S = targets.shape[1]
    for b in range(B):
        if not 0 <= lengths[b] <= S:
            raise ValueError(f"target_lengths[{b}] is {lengths[b]}, targets hold {S} labels per row")
        if not 0 <= inputs[b] <= T:
            raise ValueError(f"input_lengths[{b}] is {inputs[b]}, log_probs hold {T} frames")
        labels = targets[b, : lengths[b]]
        bad = labels[(labels < 0) | (labels >= C) | (labels == blank)]
        if bad.size:
            raise ValueError(f"targets[{b}] holds label {bad[0]}: labels must be in [0, {C}) and not the blank {blank}")


def _extended(targets: mx.array, target_lengths: mx.array, blank: int):
    """l' ``(B, L)``, where a skip from s-2 is allowed ``(B, L)``, and which positions lie inside each l'."""
    B, S = targets.shape
    L = 2 * S + 1
    extended = mx.full((B, L), blank, dtype=mx.int32)
    if S:
        extended = extended.at[:, 1::2].add(targets - blank)
    previous_two = mx.concatenate([mx.full((B, 2), -1, dtype=mx.int32), extended[:, :-2]], axis=1)
    skip_allowed = (extended != blank) & (extended != previous_two)  # (B, L)
    valid = mx.arange(L)[None, :] < (2 * target_lengths[:, None] + 1)  # (B, L): inside each l'
    return extended, skip_allowed, valid


def _ctc_alphas(emissions, skip_allowed, valid, input_lengths):
    """alpha_t ``(T, B, L)`` of the module comment; steps past an input's length keep its alphas."""
    T, B, L = emissions.shape
    neg_inf = mx.full((B, 1), -mx.inf, dtype=emissions.dtype)
    positions = mx.arange(L)[None, :]
    alpha = mx.where(valid & (positions < 2), emissions[0], -mx.inf)
    alphas = [alpha]
    for t in range(1, T):
        step = mx.concatenate([neg_inf, alpha[:, :-1]], axis=1)
        skip = mx.where(skip_allowed, mx.concatenate([neg_inf, neg_inf, alpha[:, :-2]], axis=1), -mx.inf)
        advanced = mx.where(valid, _safe_logsumexp(alpha, step, skip) + emissions[t], -mx.inf)
        alpha = mx.where((t < input_lengths)[:, None], advanced, alpha)
        alphas.append(alpha)
    return mx.stack(alphas)


def _ctc_end(alpha_last, target_lengths):
    """-log P(l | x) from the final alphas ``(B, L)``: the paths ending in l's last label or the blank after it."""
    last = mx.take_along_axis(alpha_last, (2 * target_lengths)[:, None], axis=1)[:, 0]
    before_last = mx.take_along_axis(alpha_last, mx.maximum(2 * target_lengths - 1, 0)[:, None], axis=1)[:, 0]
    before_last = mx.where(target_lengths > 0, before_last, -mx.inf)
    return -_safe_logsumexp(last, before_last)


def _emissions(log_probs, extended):
    """y_t(l'_s): ``(T, B, L)`` log-probabilities of each position's label."""
    T, B, _ = log_probs.shape
    return mx.take_along_axis(log_probs, mx.broadcast_to(extended[None], (T, B, extended.shape[1])), axis=2)


@mx.custom_function
def _ctc_losses(log_probs, targets, input_lengths, target_lengths, blank):
    """``(losses (B,), alphas (T, B, L))``: the alphas are kept for the backward pass, which reads them."""
    extended, skip_allowed, valid = _extended(targets, target_lengths, blank)
    alphas = _ctc_alphas(_emissions(log_probs, extended), skip_allowed, valid, input_lengths)
    return _ctc_end(alphas[-1], target_lengths), alphas


@_ctc_losses.vjp
def _ctc_losses_vjp(primals, cotangents, outputs):
    """d loss_b / d log_probs[t, b, c] = -sum over s with l'_s = c of exp(alpha_t(s) + beta_t(s) - y_t(l'_s) + loss_b),

    with beta the same recursion run backwards from each input's last frame::

        beta_{T_b-1}(s) = y_{T_b-1}(l'_s) for the last label and the blank after it
        beta_t(s) = logsumexp(beta_{t+1}(s), beta_{t+1}(s+1), beta_{t+1}(s+2) if l'_{s+2} may skip to s) + y_t(l'_s)
    """
    log_probs, targets, input_lengths, target_lengths, blank = primals
    (cotangent, _), (losses, alphas) = cotangents, outputs  # the alphas are an output for this pass only
    T, B, C = log_probs.shape
    extended, skip_allowed, valid = _extended(targets, target_lengths, blank)
    L = extended.shape[1]
    emissions = _emissions(log_probs, extended)  # (T, B, L)
    neg_inf = mx.full((B, 1), -mx.inf, dtype=log_probs.dtype)
    positions = mx.arange(L)[None, :]
    ends = (positions == 2 * target_lengths[:, None]) | (positions == 2 * target_lengths[:, None] - 1)  # (B, L)
    skip_from = mx.concatenate([skip_allowed[:, 2:], mx.zeros((B, 2), dtype=mx.bool_)], axis=1)  # s+2 may skip to s
    beta = mx.full((B, L), -mx.inf, dtype=log_probs.dtype)
    posteriors = [None] * T
    for t in range(T - 1, -1, -1):
        stay = beta
        step = mx.concatenate([beta[:, 1:], neg_inf], axis=1)
        skip = mx.where(skip_from, mx.concatenate([beta[:, 2:], neg_inf, neg_inf], axis=1), -mx.inf)
        inner = mx.where(valid, _safe_logsumexp(stay, step, skip) + emissions[t], -mx.inf)
        start = mx.where(valid & ends, emissions[t], -mx.inf)  # the input's last frame
        beta = mx.where((t == input_lengths - 1)[:, None], start,
                        mx.where((t < input_lengths - 1)[:, None], inner, -mx.inf))
        posteriors[t] = alphas[t] + beta - emissions[t]  # log(alpha beta / y): every path through (t, s)
    log_gamma = mx.stack(posteriors) + losses[None, :, None]  # (T, B, L): log P(path through (t, s) | x)
    finite = ~mx.isinf(losses)  # impossible alignments have no gradient here (zero_infinity masks their value)
    gamma = mx.where(finite[None, :, None], mx.exp(log_gamma), 0.0)
    one_hot = (extended[:, :, None] == mx.arange(C)[None, None, :]).astype(log_probs.dtype)  # (B, L, C)
    grad = -mx.einsum("tbl,blc->tbc", gamma, one_hot) * cotangent[None, :, None]
    return grad, mx.zeros_like(targets), mx.zeros_like(input_lengths), mx.zeros_like(target_lengths), None
