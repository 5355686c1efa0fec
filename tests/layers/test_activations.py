"""The fused tanh and sigmoid against float64 references."""

import mlx.core as mx
import numpy as np

from mlxseq.layers import activations


def test_tanh_and_sigmoid_accuracy():
    x = np.concatenate([np.linspace(-40, 40, 400_001), [0.0, 1e-30, -1e-30, 1e-8, 7.905, -7.906, 1e4, -1e4]])
    x = x.astype(np.float32)
    reference = np.tanh(x.astype(np.float64))
    y = np.array(mx.compile(activations.tanh)(mx.array(x)))
    assert np.abs(y - reference).max() < 4e-7
    assert np.all(np.abs(y) <= 1.0)
    assert np.array_equal(np.sign(y), np.sign(reference))
    # relative accuracy where tanh(x) ~ x (no absolute-error floor near 0)
    small = np.float32([1e-8, -3e-9, 1e-20, 1e-3])
    np.testing.assert_allclose(np.array(activations.tanh(mx.array(small))), np.tanh(small), rtol=3e-7)
    s = np.array(mx.compile(activations.sigmoid)(mx.array(x)))
    assert np.abs(s - (0.5 + 0.5 * np.tanh(0.5 * x.astype(np.float64)))).max() < 3e-7


def test_fast_exp_and_log_softmax_against_float64():
    x = np.linspace(-86, 0, 200_001).astype(np.float32)
    y = np.array(activations.exp_nonpositive(mx.array(x)))
    ref = np.exp(x.astype(np.float64))
    assert (np.abs(y - ref) / ref).max() < 2e-7
    assert np.array(activations.exp_nonpositive(mx.array([-1000.0])))[0] < 2e-38

    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((6, 300)) * 8).astype(np.float32)
    cot = rng.standard_normal((6, 300)).astype(np.float32)
    ref = logits.astype(np.float64) - np.log(np.exp(logits.astype(np.float64)).sum(-1, keepdims=True))
    out = np.array(activations.log_softmax(mx.array(logits)))
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-5)
    grad = np.array(mx.grad(lambda v: (activations.log_softmax(v) * mx.array(cot)).sum())(mx.array(logits)))
    ref_grad = cot - np.exp(ref) * cot.sum(-1, keepdims=True)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-6, atol=1e-5)
