"""The native recurrence (``mlxseq._native``, built from ``csrc/`` when mlxseq is installed).

It runs one layer-direction's whole recurrence as one MLX primitive on CPU streams: the
input projections a chunk of steps (about 1,024 rows) at a time, each step one product
into a preallocated buffer and the gate math as vectorised C++; its gradient is a second
primitive walking the steps back, which turns each chunk's gradients of the projections
into dx and the weight gradients (GEMMs over the chunk). No ``(T, B, G)`` array of
projections or of their gradients is ever held. mlxseq uses it for float32 RNN, GRU and LSTM layers on the
CPU; GPU streams, other dtypes and the cell variants (peepholes, Cho's GRU) run the MLX
graph of ``mlxseq.layers.scan``. Both give the same numbers to float32 rounding.

The steps' products are oneDNN matmuls where oneDNN is installed (the ``onednn-cpu-gomp``
wheel, a dependency on Linux x86-64) and a scan has 4 steps or more: the weight every step
reuses is reordered once per scan into the blocked layout its kernels read fastest. Otherwise
they call the process's ``cblas_sgemm`` (the OpenBLAS mlxseq loads for MLX). The CTC loss
(:func:`ctc_losses`), the label-smoothed cross-entropy (:func:`smoothed_nll`: one pass
for the log-sum-exp, one for the gradient, with a vectorised exp), ``log_softmax`` and beam
search's choice of the best candidates (:func:`top_k`) are primitives of the same module.
``MLXSEQ_NATIVE_BLAS`` chooses: ``default`` (oneDNN if installed, else cblas), ``onednn``
(required), ``blas`` (the process's cblas_sgemm) or ``mkl`` (MKL's packed-weight GEMM,
``pip install mkl``). docs/speed.md has what each measured.

``MLXSEQ_NATIVE=0`` keeps the MLX graph everywhere; :func:`describe` says which path is in
use and why (``mlxseq info``).
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import sys
from contextlib import contextmanager

import mlx.core as mx

from mlxseq.system import blas

CELL_KINDS = {"rnn_tanh": 0, "rnn_relu": 1, "lstm": 2, "gru": 3}  # csrc/recurrence.h CellKind

_state: dict = {"module": None, "reason": "not loaded yet", "enabled": True}


def _load() -> None:
    if _state["reason"] != "not loaded yet":
        return
    if os.environ.get("MLXSEQ_NATIVE", "1") == "0":
        _state["reason"] = "MLXSEQ_NATIVE=0"
        return
    try:
        from mlxseq import _native
    except ImportError as error:
        _state["reason"] = f"not built ({error}); reinstall mlxseq where a C++ compiler is present"
        return
    running = importlib.metadata.version("mlx")
    if _native.mlx_version != running:
        _state["reason"] = f"built against mlx {_native.mlx_version}, running {running}: reinstall mlxseq"
        return
    _state["module"], _state["reason"] = _native, ""
    _choose_blas(_native)


BLAS_CHOICES = ("default", "onednn", "blas", "mkl")


def _choose_blas(module) -> None:
    choice = os.environ.get("MLXSEQ_NATIVE_BLAS", "default")
    if choice not in BLAS_CHOICES:
        _state["module"], _state["reason"] = None, f"MLXSEQ_NATIVE_BLAS must be one of {', '.join(BLAS_CHOICES)}, got {choice!r}"
        return
    if choice == "blas" or not sys.platform.startswith("linux"):
        return
    if choice == "mkl":
        _use_mkl(module)
        return
    path = find_onednn()
    why = "oneDNN is not installed (pip install onednn-cpu-gomp)" if path is None else module.use_onednn(path)
    if why and choice == "onednn":
        _state["module"], _state["reason"] = None, f"MLXSEQ_NATIVE_BLAS=onednn but {why}"
    elif why and path is not None:
        _state["onednn_note"] = why  # default: the process's cblas_sgemm, with the reason in describe()


def find_onednn() -> str | None:
    """libdnnl of the ``onednn-cpu-gomp`` wheel or of the system; None if absent."""
    return blas.find_library("onednn-cpu-gomp", "dnnl")


def _use_mkl(module) -> None:
    path = blas.find_mkl()
    if path is None:
        _state["module"], _state["reason"] = None, "MLXSEQ_NATIVE_BLAS=mkl but MKL is not installed (pip install mkl)"
        return
    try:
        mkl = ctypes.CDLL(path)
        functions = [ctypes.cast(getattr(mkl, name), ctypes.c_void_p).value
                     for name in ("cblas_sgemm", "cblas_sgemm_pack_get_size", "cblas_sgemm_pack", "cblas_sgemm_compute")]
    except (OSError, AttributeError) as error:
        _state["module"], _state["reason"] = None, f"MLXSEQ_NATIVE_BLAS=mkl but {path} did not load ({error})"
        return
    _state["mkl"] = mkl  # kept loaded for the process's lifetime
    module.use_blas(*functions, f"MKL ({path}), packed weights")


def available() -> bool:
    """Whether the native recurrence is built, loadable and not switched off."""
    _load()
    return _state["module"] is not None and _state["enabled"]


def describe() -> str:
    """One line for ``mlxseq info``: the recurrence path in use and why."""
    _load()
    if _state["module"] is None:
        return f"MLX graph ({_state['reason']})"
    if not _state["enabled"]:
        return "MLX graph (native recurrence switched off in this process)"
    note = f"; oneDNN not used: {_state['onednn_note']}" if "onednn_note" in _state else ""
    return f"native on CPU (products from {_state['module'].blas_name()}{note}); MLX graph on GPUs"


@contextmanager
def disabled():
    """Run the block on the MLX graph only (parity tests run both paths in one process)."""
    before = _state["enabled"]
    _state["enabled"] = False
    try:
        yield
    finally:
        _state["enabled"] = before


def can_run(math, xp: mx.array, params: tuple) -> bool:
    """Whether this scan can take the native path: a standard cell, float32, on the CPU."""
    return (math.name in CELL_KINDS and not params and xp.dtype == mx.float32
            and mx.default_device() == mx.cpu and available())


def recurrence(math, x, h0, extra0, w_hh, b_hh, w_hr, mask, reverse, differentiable: bool, w_ih=None, bias=None):
    """``(outputs (T, B, P), h_T, extra_T)`` as :func:`mlxseq.layers.scan.scan` returns them.

    ``x``: the input projections ``xp (T, B, G)``, or with ``w_ih`` (and ``bias``) the layer's
    inputs ``(T, B, D)``, projected inside the primitive a chunk of steps at a time.
    ``differentiable``: also keep, stacked over time, what the native backward pass reads
    (as the MLX graph's scan does when traced); an inference call keeps nothing.
    """
    c0 = extra0[0] if extra0 else None
    mask = None if mask is None else mask.reshape(mask.shape[0], mask.shape[1]).astype(mx.float32)
    results = _state["module"].recurrence(CELL_KINDS[math.name], x, h0, c0, w_ih, bias, w_hh, b_hh, w_hr, mask,
                                          reverse, differentiable)
    return results[0], results[1], tuple(results[2 : 2 + math.num_extra])


def can_run_ctc(log_probs: mx.array) -> bool:
    """Whether :func:`mlxseq.losses.ctc_loss` can take the native CTC primitive: float32 on the CPU."""
    return log_probs.dtype == mx.float32 and mx.default_device() == mx.cpu and available()


def can_run_rows(x: mx.array) -> bool:
    """Whether the native primitives over rows (cross-entropy, log_softmax, top_k) can take ``x``:
    float32 on the CPU."""
    return x.dtype == mx.float32 and mx.default_device() == mx.cpu and available()


def smoothed_nll(logits: mx.array, targets: mx.array, smoothing: float) -> mx.array:
    """``(N,)`` label-smoothed cross-entropy of logits ``(N, V)``, differentiable in ``logits``."""
    return _state["module"].smoothed_nll(logits, targets, smoothing)[0]


def log_softmax(x: mx.array) -> mx.array:
    """log_softmax ``(N, V)`` over the rows of float32 ``x`` ``(N, V)``, differentiable."""
    return _state["module"].log_softmax(x)


def top_k(x: mx.array, k: int) -> tuple[mx.array, mx.array]:
    """``(indices (N, k), values (N, k))``: the k largest entries of each row of float32 ``x (N, M)``,
    largest first, equal values in index order."""
    indices, values = _state["module"].top_k(x, k)
    return indices, values


def ctc_losses(log_probs, targets, input_lengths, target_lengths, blank: int) -> mx.array:
    """``(B,)`` CTC losses (inf where no alignment exists), differentiable in ``log_probs``."""
    return _state["module"].ctc_loss(log_probs, targets, input_lengths, target_lengths, blank)[0]
