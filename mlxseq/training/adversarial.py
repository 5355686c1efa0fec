"""Adversarial training on embeddings (Miyato et al. 2017, "Adversarial Training Methods for
Semi-Supervised Text Classification"): the loss is also taken at the embeddings moved a small
step along the loss's gradient. The classification task builds its loss with it
(:func:`mlxseq.tasks.classification.make_loss`).
"""

import mlx.core as mx


def adversarial_step(gradient: mx.array, epsilon: float, lengths: mx.array | None = None) -> mx.array:
    """``r = eps * g / ||g||_2`` (B, T, E) for the embedding gradient ``g``, the norm over each
    example's (T, E) (Miyato et al. 2017); zero where an example's loss is flat. With ``lengths``
    (B,) the radius grows with the text, ``eps * sqrt(length)``: each token moves by eps on
    average (root mean square), so a two-word phrase is not moved further per word than a long
    sentence."""
    g = gradient.astype(mx.float32)
    norm = mx.sqrt(mx.sum(g * g, axis=(1, 2), keepdims=True))  # (B, 1, 1)
    radius = epsilon if lengths is None else epsilon * mx.sqrt(lengths.astype(mx.float32))[:, None, None]
    return (radius * g / mx.maximum(norm, 1e-12)).astype(gradient.dtype)
