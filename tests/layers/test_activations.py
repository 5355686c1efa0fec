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
