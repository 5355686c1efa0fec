"""Every training loss, over padded batches (padding never contributes): token cross-entropy with
label smoothing, classification (one label, several labels, spans, distillation) and CTC."""

import mlx.core as mx

from mlxseq.layers.activations import log_softmax


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
    log_probs = log_softmax(logits.astype(mx.float32))
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
    """
    if reduction not in CTC_REDUCTIONS:
        raise ValueError(f"reduction must be one of {CTC_REDUCTIONS}, got {reduction!r}")
    if log_probs.ndim != 3:
        raise ValueError(f"log_probs must be (T, B, C), got shape {tuple(log_probs.shape)}")
    T, B, C = log_probs.shape
    targets = mx.array(targets).astype(mx.int32)
    if targets.ndim != 2 or targets.shape[0] != B:
        raise ValueError(f"targets must be (B, S) = ({B}, S) padded label ids, got shape {tuple(targets.shape)}")
    input_lengths = mx.array(input_lengths).astype(mx.int32)
    target_lengths = mx.array(target_lengths).astype(mx.int32)
    S = targets.shape[1]
    L = 2 * S + 1
    # l' per sequence: (B, L), blanks at even positions.
    extended = mx.full((B, L), blank, dtype=mx.int32)
    if S:
        extended = extended.at[:, 1::2].add(targets - blank)
    previous_two = mx.concatenate([mx.full((B, 2), -1, dtype=mx.int32), extended[:, :-2]], axis=1)
    skip_allowed = (extended != blank) & (extended != previous_two)  # (B, L)
    positions = mx.arange(L)[None, :]
    valid = positions < (2 * target_lengths[:, None] + 1)  # (B, L): inside each extended sequence
    emissions = mx.take_along_axis(log_probs, mx.broadcast_to(extended[None], (T, B, L)), axis=2)  # (T, B, L)
    neg_inf = mx.full((B, 1), -mx.inf, dtype=log_probs.dtype)
    alpha = mx.where(positions < 2, emissions[0], -mx.inf)
    alpha = mx.where(valid, alpha, -mx.inf)
    for t in range(1, T):
        stay = alpha
        step = mx.concatenate([neg_inf, alpha[:, :-1]], axis=1)
        skip = mx.where(skip_allowed, mx.concatenate([neg_inf, neg_inf, alpha[:, :-2]], axis=1), -mx.inf)
        advanced = mx.where(valid, _safe_logsumexp(stay, step, skip) + emissions[t], -mx.inf)
        alpha = mx.where((t < input_lengths)[:, None], advanced, alpha)
    last = mx.take_along_axis(alpha, (2 * target_lengths)[:, None], axis=1)[:, 0]
    before_last = mx.take_along_axis(alpha, mx.maximum(2 * target_lengths - 1, 0)[:, None], axis=1)[:, 0]
    before_last = mx.where(target_lengths > 0, before_last, -mx.inf)
    losses = -_safe_logsumexp(last, before_last)  # (B,)
    if zero_infinity:
        losses = mx.where(mx.isinf(losses), 0.0, losses)
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return (losses / mx.maximum(target_lengths, 1).astype(losses.dtype)).mean()
