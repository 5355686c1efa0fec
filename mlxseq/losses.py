"""Training losses over padded batches; padding never contributes."""

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
