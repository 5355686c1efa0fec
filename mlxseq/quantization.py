"""Recurrent weights stored quantized in a model folder (``mlxseq quantize``).

``nn.quantize`` covers Linear and Embedding layers, which compute with ``mx.quantized_matmul``.
The recurrent layers' matrices (``weight_ih_l{k}``, ``weight_hh_l{k}``, ``weight_hr_l{k}``, with
``_reverse``) are stored the same way, MLX's affine quantization in groups along each row::

    w_q, scales, biases = mx.quantize(w, group_size, bits)    stored as name, name.scales, name.biases
    w = mx.dequantize(w_q, scales, biases, group_size, bits)   when the folder loads

How they compute once loaded (:func:`keeps_recurrent_quantized`): on a GPU the recurrent layers
keep them quantized (:class:`~mlxseq.layers.quantized.QuantizedMatrix`) and every step's
products are ``mx.quantized_matmul``, which reads 4-8x fewer bytes; on the CPU they are
dequantized once at load time and the recurrence multiplies float matrices holding exactly the
quantized values (MLX's CPU quantized matmul at every step is several times slower than the
float products; see docs/models-and-import.md). ``MLXSEQ_QUANTIZED_RECURRENCE=1`` or ``0``
chooses either way on any device.
"""

from __future__ import annotations

import os
import re

import mlx.core as mx
import mlx.nn as nn

from mlxseq.layers.quantized import QuantizedMatrix

RECURRENT_WEIGHT = re.compile(r"(^|\.)weight_(ih|hh|hr)_l\d+(_reverse)?$")
PARTS = (".scales", ".biases")


def quantize_recurrent(weights: dict[str, mx.array], bits: int, group_size: int) -> tuple[dict[str, mx.array], int]:
    """``weights`` with every recurrent matrix whose rows split into groups stored quantized; and how many."""
    stored, count = dict(weights), 0
    for name, value in weights.items():
        if (RECURRENT_WEIGHT.search(name) and value.ndim == 2 and value.shape[-1] % group_size == 0
                and mx.issubdtype(value.dtype, mx.floating)):
            packed, scales, biases = mx.quantize(value.astype(mx.float32), group_size=group_size, bits=bits)
            stored[name], stored[name + ".scales"], stored[name + ".biases"] = packed, scales.astype(value.dtype), \
                biases.astype(value.dtype)
            count += 1
    return stored, count


def dequantize_recurrent(weights: dict[str, mx.array], bits: int, group_size: int) -> dict[str, mx.array]:
    """The full-precision weights of a folder :func:`quantize_recurrent` wrote (float32 matrices).

    Raises ``ValueError`` naming a quantized matrix whose scales or biases are missing or do not fit.
    """
    def part_of_recurrent(name: str) -> bool:  # Linear/Embedding scales and biases belong to their modules
        return name.endswith(PARTS) and bool(RECURRENT_WEIGHT.search(name[: -len(".scales")]))

    restored = {name: value for name, value in weights.items() if not part_of_recurrent(name)}
    for name in [n for n in weights if part_of_recurrent(n) and n.endswith(".scales")]:
        base = name[: -len(".scales")]
        packed, scales, biases = weights.get(base), weights[name], weights.get(base + ".biases")
        if packed is None or biases is None or packed.dtype != mx.uint32:
            raise ValueError(f"{name}: a quantized weight needs {base} (uint32), {base}.scales and {base}.biases")
        columns = packed.shape[-1] * 32 // bits
        if packed.ndim != 2 or scales.shape != biases.shape or scales.shape != (packed.shape[0], columns // group_size):
            raise ValueError(f"{base}: packed {tuple(packed.shape)} and scales {tuple(scales.shape)} do not fit "
                             f"{bits}-bit groups of {group_size}")
        restored[base] = mx.dequantize(packed, scales.astype(mx.float32), biases.astype(mx.float32),
                                       group_size=group_size, bits=bits)
    for name, value in restored.items():
        if RECURRENT_WEIGHT.search(name) and value.dtype == mx.uint32:
            raise ValueError(f"{name} is stored quantized but {name}.scales is missing")
    return restored


def keeps_recurrent_quantized() -> bool:
    """Whether loaded recurrent layers compute with their quantized matrices (see the module's text)."""
    choice = os.environ.get("MLXSEQ_QUANTIZED_RECURRENCE", "")
    if choice not in ("", "0", "1"):
        raise ValueError(f"MLXSEQ_QUANTIZED_RECURRENCE must be 0 or 1, not {choice!r}")
    return choice == "1" if choice else mx.default_device() != mx.cpu


def keep_recurrent_quantized(model: nn.Module, weights: dict[str, mx.array], bits: int, group_size: int) -> int:
    """Put the quantized recurrent matrices of ``weights`` (as a folder stores them) into ``model``'s
    recurrent layers in place of their float parameters; returns how many.

    The model has loaded the dequantized weights before: names and shapes are checked.
    """
    modules = dict(model.named_modules())
    count = 0
    for name in [n for n in weights if n.endswith(".scales") and RECURRENT_WEIGHT.search(n[: -len(".scales")])]:
        base = name[: -len(".scales")]
        owner, _, leaf = base.rpartition(".")
        module = modules[owner]
        matrix = QuantizedMatrix(weights[base], weights[name].astype(module[leaf].dtype),
                                 weights[base + ".biases"].astype(module[leaf].dtype), group_size, bits)
        del module[leaf]  # no longer a (trainable) parameter: getattr finds the quantized matrix
        object.__setattr__(module, leaf, matrix)
        count += 1
    return count
