"""Gate activations written as arithmetic that MLX fuses and vectorises.

MLX's CPU backend evaluates ``mx.tanh``, ``mx.sigmoid`` and ``mx.exp`` one
element at a time (about 50 million elements per second), which made them the
largest cost of a recurrent step. The rational approximation below (Eigen's
``generic_fast_tanh_float``) is only multiplies, adds and one divide, which
``mx.compile`` turns into a vectorised kernel: about 10x faster, with a maximum
absolute error of 4e-7 against float64 ``tanh`` (``mx.tanh`` itself: 1e-7).

The polynomials are evaluated in Estrin's form, not Horner's, to keep the
dependency chain short: MLX splits fused kernels at a fixed graph depth.
"""

import mlx.core as mx

# tanh(x) ~= x * P(x^2) / Q(x^2) on [-c, c]; beyond c, float32 tanh is +-1.
_CLAMP = 7.90531110763549805
_P = (
    4.89352455891786e-03,
    6.37261928875436e-04,
    1.48572235717979e-05,
    5.12229709037114e-08,
    -8.60467152213735e-11,
    2.00018790482477e-13,
    -2.76076847742355e-16,
)
_Q = (
    4.89352518554385e-03,
    2.26843463243900e-03,
    1.18534705686654e-04,
    1.19825839466702e-06,
)


def _relu(v):
    # Exact, and vectorised: MLX's maximum checks for NaN element by element,
    # which keeps the compiler from vectorising a fused kernel that uses it.
    return 0.5 * (v + mx.abs(v))


def _clamp(x):
    """x clipped to [-c, c]; exactly x inside the range."""
    return x - _relu(x - _CLAMP) + _relu(-x - _CLAMP)


def tanh(x: mx.array) -> mx.array:
    """Hyperbolic tangent, accurate to 4e-7 absolute, fusable by ``mx.compile``."""
    x = _clamp(x)
    y = x * x
    y2 = y * y
    y4 = y2 * y2
    p = (_P[0] + _P[1] * y) + (_P[2] + _P[3] * y) * y2
    p = p + ((_P[4] + _P[5] * y) + _P[6] * y2) * y4
    q = (_Q[0] + _Q[1] * y) + (_Q[2] + _Q[3] * y) * y2
    return x * p / q


def sigmoid(x: mx.array) -> mx.array:
    """Logistic function as 0.5 + 0.5 * tanh(x / 2) (absolute error < 3e-7)."""
    return 0.5 + 0.5 * tanh(0.5 * x)
