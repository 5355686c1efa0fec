"""Gate activations written as arithmetic that MLX fuses and vectorises.

MLX's CPU backend evaluates ``mx.tanh``, ``mx.sigmoid`` and ``mx.exp`` one
element at a time (about 50 million elements per second), which made them the
largest cost of a recurrent step. The rational approximation below (Eigen's
``generic_fast_tanh_float``) is only multiplies, adds and one divide, which
``mx.compile`` turns into a vectorised kernel: about 10x faster, with a maximum
absolute error of 4e-7 against float64 ``tanh`` (``mx.tanh`` itself: 1e-7).

The polynomials are evaluated in Estrin's form, not Horner's, to keep the
dependency chain short: MLX splits fused kernels at a fixed graph depth.

On a GPU the built-in functions are used instead: there they are single fused
kernels, and the arithmetic forms were the slower (on an NVIDIA H200 with MLX's
CUDA backend, a GRU's 50 compiled gate steps took 3.9 ms with them, 1.6 ms with
``mx.sigmoid`` and ``mx.tanh``). ``mx.compile`` keys its traces on the default
device, so a function compiled on one device and called on the other is traced
again for it.
"""

import mlx.core as mx

from mlxseq.system import native

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


def _on_gpu() -> bool:
    """Whether operations now go to a GPU (the default device)."""
    return mx.default_device().type == mx.DeviceType.gpu


def tanh(x: mx.array) -> mx.array:
    """Hyperbolic tangent, accurate to 4e-7 absolute, fusable by ``mx.compile`` (``mx.tanh`` on a GPU).

    Called outside a compiled function it is one fused kernel of its own (traced once per
    shape): its dozen element-wise operations one by one were slower than ``mx.tanh`` on a
    decoder step's few rows."""
    if _on_gpu():
        return mx.tanh(x)
    return _fused_tanh(x)


@mx.compile
def _fused_tanh(x: mx.array) -> mx.array:
    x = _clamp(x)
    y = x * x
    y2 = y * y
    y4 = y2 * y2
    p = (_P[0] + _P[1] * y) + (_P[2] + _P[3] * y) * y2
    p = p + ((_P[4] + _P[5] * y) + _P[6] * y2) * y4
    q = (_Q[0] + _Q[1] * y) + (_Q[2] + _Q[3] * y) * y2
    return x * p / q


def sigmoid(x: mx.array) -> mx.array:
    """Logistic function as 0.5 + 0.5 * tanh(x / 2) (absolute error < 3e-7; ``mx.sigmoid`` on a GPU)."""
    if _on_gpu():
        return mx.sigmoid(x)
    return 0.5 + 0.5 * tanh(0.5 * x)


# exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2] (Cody-Waite
# split of ln 2), exp(r) by Cephes' expf polynomial, 2^n by writing the exponent bits.
# MLX's own exp runs one element at a time; this is about 10x faster on the CPU.
_LOG2E = 1.4426950408889634
_LN2_HI = 0.693145751953125
_LN2_LO = 1.428606765330187e-06
_EXP_C = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
_ROUND = 12582912.0  # 1.5 * 2^23: adding and subtracting it rounds a float32 to an integer


def exp_nonpositive(x: mx.array) -> mx.array:
    """exp(x) for finite x <= 0 (as after subtracting a maximum), relative error < 2e-7 above x = -87.

    Inputs below -87 give exp(-87) ~ 1.6e-38 instead of smaller numbers; -inf is not supported.
    On a GPU: ``mx.exp``.
    """
    if _on_gpu():
        return mx.exp(x)
    x = x + _relu(-87.0 - x)  # max(x, -87); exactly x above -87
    n = (x * _LOG2E + _ROUND) - _ROUND
    r = (x - n * _LN2_HI) - n * _LN2_LO
    z = r * r
    c = _EXP_C
    p = (c[0] * r + c[1]) * z + (c[2] * r + c[3])
    p = (p * z + (c[4] * r + c[5])) * z + r + 1.0
    two_n = mx.view((n.astype(mx.int32) + 127) << 23, mx.float32)
    return p * two_n


def log_softmax(x: mx.array) -> mx.array:
    """log_softmax over the last axis of float32 logits, with the fast exp in both passes.

    On the CPU with mlxseq's native extension it is one primitive (and its gradient another):
    the compiled graph below makes several passes over ``x`` (the cross-entropy over a
    (2048, 5000) batch took 207 ms that way, 8 ms as a primitive). There ``-inf`` logits stay
    ``-inf``; the graph needs finite logits.
    """
    native_form = native_log_softmax(x)
    return _graph_log_softmax(x) if native_form is None else native_form


def native_log_softmax(x: mx.array) -> mx.array | None:
    """log_softmax of float32 ``x`` by the native primitive, or None where it cannot run."""
    if not native.can_run_rows(x) or x.size == 0:
        return None
    return native.log_softmax(x.reshape(-1, x.shape[-1])).reshape(x.shape)


@mx.custom_function
def _graph_log_softmax(x: mx.array) -> mx.array:
    shifted = x - mx.stop_gradient(x.max(axis=-1, keepdims=True))
    return shifted - mx.log(exp_nonpositive(shifted).sum(axis=-1, keepdims=True))


@_graph_log_softmax.vjp
def _log_softmax_vjp(primals, cotangent, output):
    # d/dx_i of sum_j g_j (x_j - logsumexp(x)) = g_i - softmax(x)_i * sum_j g_j
    return (cotangent - exp_nonpositive(output) * cotangent.sum(axis=-1, keepdims=True),)
