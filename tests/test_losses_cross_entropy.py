"""mlxseq.losses' label-smoothed cross-entropy against torch.nn.functional.cross_entropy: values and
gradients, on the native primitive (when built) and on the MLX graph."""

import mlx.core as mx
import numpy as np
import pytest
import torch

from mlxseq.losses import label_smoothed_cross_entropy, smoothed_nll
from mlxseq.system import native
from tests.support.native_paths import on_path


@pytest.fixture(params=["native", "graph"])
def path(request, monkeypatch):
    with on_path(request.param, monkeypatch, "smoothed_nll"):
        yield request.param


def _torch(logits, targets, weights, smoothing):
    """Per-position losses and d(sum of weights * losses)/d logits, in float64."""
    x = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    V = logits.shape[-1]
    losses = torch.nn.functional.cross_entropy(x.reshape(-1, V), torch.tensor(targets).reshape(-1).long(),
                                               reduction="none", label_smoothing=smoothing)
    (losses * torch.tensor(weights, dtype=torch.float64).reshape(-1)).sum().backward()
    return losses.detach().numpy().reshape(targets.shape), x.grad.numpy()


# (N, V) with N and V such that rows are split among threads (200 x 5000) or not, and a 3-D batch
@pytest.mark.parametrize("shape, V", [((5,), 3), ((200,), 5000), ((4, 9), 700), ((2, 3), 70_000)])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_values_and_gradients_match_torch(path, shape, V, smoothing):
    rng = np.random.default_rng(V)
    logits = (rng.standard_normal(shape + (V,)) * 4).astype(np.float32)
    targets = rng.integers(0, V, shape)
    weights = rng.standard_normal(shape).astype(np.float32)
    t_loss, t_grad = _torch(logits, targets, weights, smoothing)

    def weighted(x):
        return (smoothed_nll(x, mx.array(targets), smoothing) * mx.array(weights)).sum()

    losses = smoothed_nll(mx.array(logits), mx.array(targets), smoothing)
    grad = mx.grad(weighted)(mx.array(logits))
    np.testing.assert_allclose(np.array(losses), t_loss, rtol=1e-5, atol=2e-5)
    # the graph's gradient reads exp(log_softmax), whose rounding grows with V: 2e-4 at 70,000
    np.testing.assert_allclose(np.array(grad), t_grad, rtol=1e-4, atol=2e-6 if path == "native" else 5e-4)
    compiled = mx.compile(mx.grad(weighted))(mx.array(logits))
    np.testing.assert_allclose(np.array(compiled), np.array(grad), rtol=1e-6, atol=1e-7)


def test_padding_adds_nothing_and_gets_no_gradient(path):
    rng = np.random.default_rng(0)
    logits = mx.array(rng.standard_normal((3, 4, 50)).astype(np.float32))
    targets = mx.array([[5, 7, 0, 0], [9, 0, 0, 0], [1, 2, 3, 4]])
    total, count = label_smoothed_cross_entropy(logits, targets, pad_id=0, smoothing=0.1)
    kept = np.array(targets) != 0
    t_loss, _ = _torch(np.array(logits), np.array(targets), kept.astype(np.float32), 0.1)
    assert count.item() == kept.sum()
    np.testing.assert_allclose(total.item(), t_loss[kept].sum(), rtol=1e-5)
    grad = np.array(mx.grad(lambda x: label_smoothed_cross_entropy(x, targets, 0, 0.1)[0])(logits))
    assert np.all(grad[~kept] == 0) and np.all(np.abs(grad[kept]).sum(axis=-1) > 0)


def test_huge_logits_and_half_precision_stay_finite(path):
    logits = np.array([[1e4, -1e4, 0.0, 3e4], [-3e4, -3e4, -3e4, -3e4]], np.float32)
    targets = np.array([0, 2])
    t_loss, t_grad = _torch(logits, targets, np.ones(2, np.float32), 0.1)
    losses = smoothed_nll(mx.array(logits), mx.array(targets), 0.1)
    np.testing.assert_allclose(np.array(losses), t_loss, rtol=1e-6)
    grad = mx.grad(lambda x: smoothed_nll(x, mx.array(targets), 0.1).sum())(mx.array(logits))
    np.testing.assert_allclose(np.array(grad), t_grad, atol=1e-6)
    half = mx.array(logits[:, :3] / 1e4).astype(mx.float16)
    found = smoothed_nll(half, mx.array(targets), 0.0)
    assert found.dtype == mx.float32
    np.testing.assert_allclose(np.array(found), _torch(logits[:, :3] / 1e4, targets, np.ones(2), 0.0)[0], rtol=1e-3)


def test_a_class_id_outside_the_vocabulary_gives_nan_not_a_read_out_of_bounds():
    if not native.available():
        pytest.skip(f"native cross-entropy unavailable: {native.describe()}")
    logits = mx.zeros((3, 10))
    losses = smoothed_nll(logits, mx.array([1, 10, -1]), 0.1)
    assert np.isfinite(losses[0].item()) and np.isnan(np.array(losses[1:])).all()
    grad = mx.grad(lambda x: smoothed_nll(x, mx.array([1, 10, -1]), 0.1)[0])(logits)
    assert np.isfinite(np.array(grad)).all()
