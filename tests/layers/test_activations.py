"""The fused tanh, sigmoid, exp and log_softmax (native and graph) against float64 references."""

import mlx.core as mx
import numpy as np
import pytest

from mlxseq.decoding.search import _log_softmax
from mlxseq.layers import activations
from tests.support.native_paths import on_path


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


@pytest.mark.parametrize("shape", [(5, 512), (3, 7, 11), (64, 16, 64)])
def test_tanh_outside_a_compiled_function_and_its_gradient(shape):
    # attention and the decoder's output call it eagerly while decoding: a kernel of its own there
    x = np.random.default_rng(0).normal(scale=4, size=shape).astype(np.float32)
    reference = np.tanh(x.astype(np.float64))
    assert np.abs(np.array(activations.tanh(mx.array(x))) - reference).max() < 4e-7
    gradient = np.array(mx.grad(lambda v: activations.tanh(v).sum())(mx.array(x)))
    assert np.abs(gradient - (1.0 - reference**2)).max() < 1e-6


def test_on_a_gpu_the_builtin_functions_are_used(monkeypatch):
    # there they are fused kernels and the arithmetic forms the slower (docs/speed.md); the check that
    # the dispatch follows the default device runs where a GPU is (the parity suite on MLX's CUDA backend)
    x = mx.array(np.linspace(-9, 9, 1001, dtype=np.float32))
    arithmetic = [np.array(f(x)) for f in (activations.tanh, activations.sigmoid, activations.exp_nonpositive)]
    monkeypatch.setattr(activations, "_on_gpu", lambda: True)
    builtin = (mx.tanh(x), mx.sigmoid(x), mx.exp(x))
    for f, expected, before in zip((activations.tanh, activations.sigmoid, activations.exp_nonpositive), builtin, arithmetic):
        got = np.array(f(x))
        assert np.array_equal(got, np.array(expected))
        assert not np.array_equal(got, before)  # the arithmetic forms differ in the last bits somewhere


def test_fast_exp_against_float64():
    x = np.linspace(-86, 0, 200_001).astype(np.float32)
    y = np.array(activations.exp_nonpositive(mx.array(x)))
    ref = np.exp(x.astype(np.float64))
    assert (np.abs(y - ref) / ref).max() < 2e-7
    assert np.array(activations.exp_nonpositive(mx.array([-1000.0])))[0] < 2e-38


@pytest.mark.parametrize("path", ["native", "graph"])
@pytest.mark.parametrize("shape", [(6, 300), (2, 70, 5000)])  # the second is split among threads natively
def test_log_softmax_against_float64(path, shape, monkeypatch):
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal(shape) * 8).astype(np.float32)
    cot = rng.standard_normal(shape).astype(np.float32)
    ref = logits.astype(np.float64) - np.log(np.exp(logits.astype(np.float64)).sum(-1, keepdims=True))
    ref_grad = cot - np.exp(ref) * cot.sum(-1, keepdims=True)
    with on_path(path, monkeypatch, "log_softmax"):
        out = np.array(activations.log_softmax(mx.array(logits)))
        grad = np.array(mx.grad(lambda v: (activations.log_softmax(v) * mx.array(cot)).sum())(mx.array(logits)))
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-5)
    # the gradient's rounding follows the sum of each row's cotangents (float32, V terms)
    scale = np.abs(cot.sum(-1)).max() * (1e-6 if path == "native" else 5e-6)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-6, atol=scale)


@pytest.mark.parametrize("path", ["native", "graph"])
def test_the_decoders_log_softmax_keeps_minus_infinity(path, monkeypatch):
    logits = np.array([[0.0, -np.inf, 2.0, 1e4], [-np.inf, 3.0, -np.inf, -1.0]], np.float32)
    finite = np.isfinite(logits)
    with on_path(path, monkeypatch, "log_softmax"):
        out = np.array(_log_softmax(mx.array(logits)))
    assert np.all(np.isneginf(out[~finite]))
    ref = np.where(finite, logits, -1e30).astype(np.float64)
    ref = ref - ref.max(-1, keepdims=True) - np.log(np.exp(ref - ref.max(-1, keepdims=True)).sum(-1, keepdims=True))
    np.testing.assert_allclose(out[finite], ref[finite], atol=1e-6)
