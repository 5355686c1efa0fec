"""mlxseq.losses.ctc_loss against torch.nn.functional.ctc_loss: values and gradients, on the native
CTC primitive (when built) and on the MLX graph."""

import mlx.core as mx
import numpy as np
import pytest
import torch

from mlxseq.losses import ctc_loss
from mlxseq.system import native


@pytest.fixture(autouse=True, params=["native", "graph"])
def ctc_path(request, monkeypatch):
    """Every test on both paths; the native one checks that the primitive really ran."""
    if request.param == "graph":
        with native.disabled():
            yield "graph"
        return
    if not native.available():
        pytest.skip(f"native CTC unavailable: {native.describe()}")
    calls, run = [], native.ctc_losses
    monkeypatch.setattr(native, "ctc_losses", lambda *args: calls.append(1) or run(*args))
    yield "native"
    assert calls or request.node.name.startswith("test_bad_arguments"), "the native CTC primitive was not called"


def _both(logits, targets, input_lengths, target_lengths, **options):
    """(torch loss, torch grad, mlxseq loss, mlxseq grad) of the loss of log_softmax(logits)."""
    t_logits = torch.tensor(logits, requires_grad=True)
    t_loss = torch.nn.functional.ctc_loss(t_logits.log_softmax(2), torch.tensor(targets), torch.tensor(input_lengths),
                                          torch.tensor(target_lengths), **options)
    t_loss.sum().backward()

    def loss(x):
        return ctc_loss(x - mx.logsumexp(x, axis=2, keepdims=True), mx.array(targets), input_lengths, target_lengths,
                        **options)

    m_loss = loss(mx.array(logits))
    m_grad = mx.grad(lambda x: loss(x).sum())(mx.array(logits))
    return t_loss.detach().numpy(), t_logits.grad.numpy(), np.array(m_loss), np.array(m_grad)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_random_batches_match_torch(seed, reduction):
    rng = np.random.default_rng(seed)
    T, B, C = int(rng.integers(5, 30)), int(rng.integers(1, 6)), int(rng.integers(3, 9))
    S = int(rng.integers(1, max(2, T // 2)))
    targets = rng.integers(1, C, (B, S))
    targets[0, : min(S, 3)] = 1  # repeated labels need a blank between them
    input_lengths = rng.integers(max(1, T // 2), T + 1, B)
    target_lengths = np.minimum(rng.integers(0, S + 1, B), (input_lengths - 1) // 2)
    t_loss, t_grad, m_loss, m_grad = _both(rng.standard_normal((T, B, C)).astype(np.float32), targets,
                                           input_lengths, target_lengths, reduction=reduction)
    np.testing.assert_allclose(m_loss, t_loss, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m_grad, t_grad, atol=1e-5)


def test_targets_as_long_as_the_input_allows_and_a_blank_that_is_not_zero():
    rng = np.random.default_rng(7)
    T, B, C = 6, 2, 4
    targets = np.array([[0, 1, 2, 0, 1, 2], [1, 1, 1, 0, 0, 0]])  # blank=3; row 1 needs 5 frames for "1 1 1"
    t_loss, t_grad, m_loss, m_grad = _both(rng.standard_normal((T, B, C)).astype(np.float32), targets, [6, 5], [6, 3],
                                           blank=3, reduction="none")
    assert np.isfinite(t_loss).all()
    np.testing.assert_allclose(m_loss, t_loss, rtol=1e-5)
    np.testing.assert_allclose(m_grad, t_grad, atol=1e-5)


@pytest.mark.parametrize("zero_infinity", [False, True])
def test_impossible_alignments(zero_infinity):
    rng = np.random.default_rng(3)
    targets = np.array([[1, 1, 1], [1, 2, 1]])  # "1 1 1" needs 5 frames: impossible in 3
    t_loss, t_grad, m_loss, m_grad = _both(rng.standard_normal((4, 2, 3)).astype(np.float32), targets, [3, 4], [3, 3],
                                           reduction="none", zero_infinity=zero_infinity)
    if zero_infinity:
        assert m_loss[0] == 0.0 and not np.any(m_grad[:, 0])
    else:
        assert np.isinf(m_loss[0]) and np.isinf(t_loss[0])
    np.testing.assert_allclose(m_loss[1], t_loss[1], rtol=1e-5)
    np.testing.assert_allclose(m_grad[:, 1], t_grad[:, 1], atol=1e-5)


def test_bad_arguments_name_what_was_expected():
    with pytest.raises(ValueError, match="reduction must be one of"):
        ctc_loss(mx.zeros((2, 1, 3)), mx.array([[1]]), [2], [1], reduction="avg")
    with pytest.raises(ValueError, match=r"log_probs must be \(T, B, C\)"):
        ctc_loss(mx.zeros((2, 3)), mx.array([[1]]), [2], [1])
    with pytest.raises(ValueError, match=r"targets must be \(B, S\) = \(1, S\)"):
        ctc_loss(mx.zeros((2, 1, 3)), mx.array([1]), [2], [1])
    with pytest.raises(ValueError, match=r"needs T >= 1 and blank in \[0, C\), got blank 3"):
        ctc_loss(mx.zeros((2, 1, 3)), [[1]], [2], [1], blank=3)
    log_probs = mx.zeros((4, 2, 3))
    for targets, inputs, lengths, match in [
        ([[1, 2], [1, 0]], [4, 4], [2, 3], r"target_lengths\[1\] is 3, targets hold 2 labels per row"),
        ([[1, 2], [1, 0]], [4, 5], [2, 1], r"input_lengths\[1\] is 5, log_probs hold 4 frames"),
        ([[1, 3], [1, 0]], [4, 4], [2, 1], r"targets\[0\] holds label 3: labels must be in \[0, 3\)"),
        ([[1, 2], [0, 1]], [4, 4], [2, 2], r"targets\[1\] holds label 0: .* not the blank 0"),
    ]:
        with pytest.raises(ValueError, match=match):
            ctc_loss(log_probs, targets, inputs, lengths)
    with pytest.raises(ValueError, match=r"input_lengths and target_lengths must be \(2,\)"):
        ctc_loss(log_probs, mx.array([[1, 2], [1, 2]]), mx.array([4]), mx.array([2, 2]))


def test_labels_no_alignment_can_read_give_nan_not_a_read_out_of_bounds(ctc_path):
    """MLX arrays are not read back before the loss (a compiled step could not): a label past C, a
    target longer than its row or a label equal to the blank makes that sequence's loss NaN with no
    gradient, the other sequences' losses stay as they are, and padding may hold anything."""
    rng = np.random.default_rng(11)
    logits = mx.array(rng.standard_normal((5, 4, 4)).astype(np.float32))
    log_probs = logits - mx.logsumexp(logits, axis=2, keepdims=True)
    inputs = mx.array([5, 5, 5, 5])
    targets = mx.array([[1, 2, -1], [1, 1_000_000, 2], [2, 1, 3], [0, 1, 2]])
    lengths = mx.array([2, 2, 9, 2])

    def loss(lp):
        return ctc_loss(lp, targets, inputs, lengths, reduction="none")

    losses = np.array(loss(log_probs))
    alone = float(ctc_loss(log_probs[:, :1], [[1, 2]], [5], [2], reduction="none")[0])  # padding -1 vs none
    assert np.isfinite(losses[0]) and losses[0] == pytest.approx(alone, rel=1e-6)
    assert np.isnan(losses[1:]).all()
    grad = np.array(mx.grad(lambda lp: mx.where(mx.isnan(loss(lp)), 0.0, loss(lp)).sum())(log_probs))
    assert np.isfinite(grad).all() and grad[:, 0].any() and not grad[:, 1:].any()
