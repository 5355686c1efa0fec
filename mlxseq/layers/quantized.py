"""Recurrent weight matrices kept quantized in memory, and the products the recurrence takes with them.

A matrix ``W`` (N, K) is held as MLX's affine quantization in groups along each row
(``mx.quantize``: ``W ~ scales * q + biases`` per group of ``group_size`` columns), and products
with it are ``mx.quantized_matmul``: on a GPU they read 4-8x fewer bytes per step than the float
matrix. :func:`product` takes either kind, so the scan and the input projections are written
once::

    product(x, w_t)            = x @ w_t           w_t: W^T as an array, or QuantizedMatrix(W).T
    product(x, w_t, add=c)     = c + x @ w_t

Quantized matrices are constants, not parameters: gradients flow to a layer's inputs and
states through them, and training needs the float matrices (MLXSEQ_QUANTIZED_RECURRENCE=0).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import mlx.core as mx


@dataclass(frozen=True)
class QuantizedMatrix:
    """``W`` (N, K) as ``packed`` (N, K * bits / 32) uint32, ``scales`` and ``biases`` (N, K / group_size).

    ``transposed``: this object stands for ``W^T`` (K, N), as ``.T`` gives it; a product
    ``x @ W^T`` is what a recurrence takes.
    """

    packed: mx.array
    scales: mx.array
    biases: mx.array
    group_size: int
    bits: int
    transposed: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        rows, columns = self.packed.shape[0], self.packed.shape[1] * 32 // self.bits
        return (columns, rows) if self.transposed else (rows, columns)

    @property
    def dtype(self) -> mx.Dtype:
        return self.scales.dtype

    @property
    def T(self) -> QuantizedMatrix:
        return replace(self, transposed=not self.transposed)

    def __getitem__(self, index) -> QuantizedMatrix:
        """Rows of ``W`` (``w[a:b]``), or the same columns of ``W^T`` (``w_t[:, a:b]``)."""
        if self.transposed:
            if not (isinstance(index, tuple) and len(index) == 2 and index[0] == slice(None)):
                raise IndexError("a transposed quantized matrix takes only column slices [:, a:b]")
            index = index[1]
        return replace(self, packed=self.packed[index], scales=self.scales[index], biases=self.biases[index])

    def scale_rows(self, factors: mx.array) -> QuantizedMatrix:
        """``diag(factors) @ W`` (``factors`` (N,)): each row's scales and biases times its factor."""
        factors = factors.reshape(-1, 1).astype(self.scales.dtype)
        return replace(self, scales=self.scales * factors, biases=self.biases * factors)

    def dequantize(self) -> mx.array:
        """The float matrix (``W`` or ``W^T``) holding exactly the quantized values."""
        w = mx.dequantize(self.packed, self.scales, self.biases, group_size=self.group_size, bits=self.bits)
        return w.T if self.transposed else w


def product(x: mx.array, w_t, add: mx.array | None = None) -> mx.array:
    """``add + x @ w_t`` (``add`` optional), ``w_t`` (K, N) an array or a transposed :class:`QuantizedMatrix`."""
    if isinstance(w_t, QuantizedMatrix):
        if not w_t.transposed:
            raise ValueError("product takes W^T: pass QuantizedMatrix(...).T")
        y = mx.quantized_matmul(x, w_t.packed, w_t.scales, w_t.biases, transpose=True,
                                group_size=w_t.group_size, bits=w_t.bits)  # (..., N)
        return y if add is None else add + y
    return x @ w_t if add is None else mx.addmm(add, x, w_t)


def is_quantized(*weights) -> bool:
    """Whether any of ``weights`` (arrays, None or quantized matrices) is a :class:`QuantizedMatrix`."""
    return any(isinstance(w, QuantizedMatrix) for w in weights)
