"""Recurrent weights stored quantized in a model folder (``mlxseq quantize``).

``nn.quantize`` covers Linear and Embedding layers, which compute with ``mx.quantized_matmul``.
The recurrent layers' matrices (``weight_ih_l{k}``, ``weight_hh_l{k}``, ``weight_hr_l{k}``, with
``_reverse``) are stored the same way, MLX's affine quantization in groups along each row::

    w_q, scales, biases = mx.quantize(w, group_size, bits)    stored as name, name.scales, name.biases
    w = mx.dequantize(w_q, scales, biases, group_size, bits)   when the folder loads

and are dequantized once at load time: the recurrence then multiplies full-precision matrices
holding exactly the quantized values (on the CPU, MLX's quantized matmul at every step would be
several times slower than the float products; see docs/models-and-import.md).
"""

from __future__ import annotations

import re

import mlx.core as mx

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
