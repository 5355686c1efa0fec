"""The loss of classification training, and the label arrays it reads.

:func:`make_loss` builds ``loss(model, batch) -> (summed loss, examples)`` for plain
batches, distillation (teachers' probabilities) and nested spans, with adversarial training
as a ``value_and_grad`` of its own; :func:`label_array` turns label lists into the arrays
batches carry. Text and feature-vector classification share both.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
from mlx.utils import tree_map

from mlxseq.losses import classification_loss, distillation_loss, span_loss
from mlxseq.training.adversarial import adversarial_step


def make_loss(smoothing: float, adversarial: float = 0.0, per_token: bool = False, teacher_weight: float | None = None,
              spans: bool = False):
    """``loss(model, batch) -> (summed loss, examples)``; with ``teacher_weight`` (distillation)
    batches end with the teachers' probabilities and the loss is :func:`distillation_loss`;
    with ``spans`` (:class:`SpanBatches`) they end with ``starts, ends, labels, weights`` and the
    loss is :func:`span_loss` of :meth:`Classifier.classify_spans` (the count: the summed weight).

    With ``adversarial = eps > 0`` the function also carries ``value_and_grad(model, batch)``,
    which :class:`mlxseq.training.step.TrainStep` uses instead of differentiating ``loss``: the
    loss at the embeddings plus the loss at the embeddings moved by ``adversarial_step`` of their
    gradient (its radius ``eps * sqrt(length)`` with ``per_token``), and the parameter gradients
    of that sum. No gradient of a gradient; the encoder's inputs ``e`` (embeddings, spellings)
    are computed and differentiated once::

        e = inputs(W_in)                                   embedding (and character encoder)
        L1, dL1/dW, g1 = loss(e),  g1 = dL1/de             clean pass
        L2, dL2/dW, g2 = loss(e + r),  r = eps g1/||g1||   perturbed pass, r a constant
        dW_in = (de/dW_in)^T (g1 + g2)                     one backward pass through the inputs
    """

    taught = teacher_weight is not None
    n_targets = 4 if spans else 2 if taught else 1  # (starts, ends,) labels (, soft / weights) end each batch

    def target_loss(model, embeddings, lengths, targets):
        if spans:
            starts, ends, labels, weights = targets
            return span_loss(model.classify_spans(embeddings, lengths, starts, ends), labels, weights, smoothing)
        logits = model.classify(embeddings, lengths)
        if taught:
            return distillation_loss(logits, *targets, teacher_weight, smoothing)
        return classification_loss(logits, *targets, smoothing)

    def loss(model, batch):
        tokens, lengths, *spellings = batch[:-n_targets]  # (chars, char_lengths, spelling_ids)
        return target_loss(model, model.embed(tokens, lengths, *spellings), lengths, batch[-n_targets:])

    if adversarial <= 0:
        return loss

    def classified(params, embeddings, model, lengths, targets):
        model.update(params)
        return target_loss(model, embeddings, lengths, targets)

    def projected_inputs(params, cotangent, model, tokens, spellings):
        """<inputs(params), cotangent>: its gradient is the vector-Jacobian product of the inputs."""
        model.update(params)
        return mx.sum(model.inputs(tokens, *spellings) * cotangent)

    classified_grads = mx.value_and_grad(classified, argnums=(0, 1))
    inputs_vjp = mx.grad(projected_inputs)

    def value_and_grad(model, batch):
        (tokens, lengths, *spellings), targets = batch[:-n_targets], batch[-n_targets:]
        tokens = model.drop_words(tokens)  # once: both passes read the same words
        params = model.trainable_parameters()
        e = mx.stop_gradient(model.inputs(tokens, *spellings))  # (B, T, input_size)
        (clean, count), (grads, clean_grad) = classified_grads(params, e, model, lengths, targets)
        r = mx.stop_gradient(adversarial_step(clean_grad, adversarial, lengths if per_token else None))
        (perturbed, _), (more, perturbed_grad) = classified_grads(params, e + r, model, lengths, targets)
        input_grads = inputs_vjp(params, clean_grad + perturbed_grad, model, tokens, spellings)
        model.update(params)
        return (clean + perturbed, count), tree_map(lambda a, b, c: a + b + c, grads, more, input_grads)

    loss.value_and_grad = value_and_grad
    return loss


def label_array(examples: list[list[str]], names: list[str], multi: bool) -> np.ndarray:
    """Class ids ``(N,)`` int32, or for multi-label data 0/1 rows ``(N, C)`` float32, in the order of ``names``."""
    index = {name: i for i, name in enumerate(names)}
    if not multi:
        return np.array([index[example[0]] for example in examples], dtype=np.int32)
    labels = np.zeros((len(examples), len(names)), dtype=np.float32)
    for row, example in enumerate(examples):
        labels[row, [index[g] for g in example]] = 1.0
    return labels
