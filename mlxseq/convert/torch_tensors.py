"""PyTorch tensors as numpy arrays, rebuilt without torch.

A torch checkpoint pickles each tensor as a call such as
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` whose
``storage`` is a persistent id: a key naming a block of raw bytes stored
outside the pickle. :class:`TensorAssembler` stands in for torch here:

1. ``persistent_load`` turns each storage id into a :class:`TorchStorage`
   (the same object for the same key, so shared storages stay shared);
2. each rebuild call checks the view against the storage's declared size and
   returns an empty numpy array of the tensor's shape;
3. once the reader has the storages' bytes (in the legacy format they follow
   the pickle), :meth:`TensorAssembler.fill` copies every view into its array.

numpy has no bfloat16, so bfloat16 tensors come back as float32 holding the
same values exactly: the 16 stored bits become the top half of a float32
(bfloat16 is float32 with the low 16 mantissa bits cut off).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .errors import CheckpointError
from .pickled_objects import PickledGlobal

# torch dtype name -> numpy type code of its stored elements (before byte order).
_STORED_CODES = {
    "float32": "f4", "float64": "f8", "float16": "f2", "bfloat16": "u2",
    "int8": "i1", "uint8": "u1", "int16": "i2", "int32": "i4", "int64": "i8",
    "uint16": "u2", "uint32": "u4", "uint64": "u8", "bool": "u1",
    "complex64": "c8", "complex128": "c16",
}
# dtypes torch can store but numpy cannot hold: name -> bytes per element.
_UNSUPPORTED_SIZES = {
    "complex32": 4, "float8_e5m2": 1, "float8_e4m3fn": 1, "float8_e5m2fnuz": 1,
    "float8_e4m3fnuz": 1, "float8_e8m0fnu": 1, "float4_e2m1fn_x2": 1, "qint8": 1,
    "qint32": 4, "quint8": 1, "quint4x2": 1, "quint2x4": 1, "bits8": 1, "bits16": 2,
    "bits1x8": 1, "bits2x4": 1, "bits4x2": 1,
}
_DTYPE_ALIASES = {
    "float": "float32", "double": "float64", "half": "float16", "short": "int16",
    "int": "int32", "long": "int64", "cfloat": "complex64", "cdouble": "complex128",
    "chalf": "complex32",
}
# Legacy typed storage classes (torch.FloatStorage, torch.cuda.HalfStorage, ...).
_STORAGE_CLASSES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128", "QInt8Storage": "qint8",
    "QInt32Storage": "qint32", "QUInt8Storage": "quint8",
    "QUInt4x2Storage": "quint4x2", "QUInt2x4Storage": "quint2x4",
}
# A view may repeat elements (stride 0, from expand()); copying it can then
# need far more memory than the file holds, so such copies are capped.
_MAX_EXPANDED_BYTES = 1 << 26
# Every tensor is returned as its own copy, so many tensors over one storage
# multiply it; all copies together may take at most this many times the stored
# bytes (tied weights viewed twice and widened from bfloat16: 4), plus one
# expanded view's worth.
_MAX_COPIES_PER_STORED_BYTE = 4


@dataclass(frozen=True)
class TorchDtype:
    """A torch dtype named by a checkpoint, e.g. ``TorchDtype("bfloat16")``."""

    name: str

    @property
    def itemsize(self) -> int:
        if self.name in _STORED_CODES:
            return np.dtype(_STORED_CODES[self.name]).itemsize
        return _UNSUPPORTED_SIZES[self.name]

    @property
    def numpy(self) -> np.dtype | None:
        """The dtype of the arrays this reader returns (bfloat16 -> float32), or None."""
        if self.name == "bfloat16":
            return np.dtype(np.float32)
        if self.name == "bool":
            return np.dtype(np.bool_)
        code = _STORED_CODES.get(self.name)
        return None if code is None else np.dtype(code)

    def stored(self, byteorder: str) -> np.dtype:
        """The numpy dtype of the raw stored elements in the file's byte order."""
        return np.dtype(_STORED_CODES[self.name]).newbyteorder("<" if byteorder == "little" else ">")


@dataclass(frozen=True)
class StorageType:
    """A storage class named by a checkpoint (``torch.FloatStorage``, ``torch.UntypedStorage``)."""

    class_path: str
    dtype: TorchDtype


class TorchStorage:
    """A block of tensor bytes from a checkpoint; tensors are views into it.

    Appears in results only where a checkpoint saved a bare storage;
    :meth:`numpy` turns it into a 1-D array.

    Attributes:
        key: the storage's name in the file (``data/<key>`` in a zip).
        dtype: element type the checkpoint declared.
        numel: element count the checkpoint declared.
    """

    def __init__(self, key: str, dtype: TorchDtype, numel: int, byteorder: str = "little",
                 view_of: tuple[TorchStorage, int] | None = None):
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.byteorder = byteorder
        self._view_of = view_of
        self._data: bytes | None = None

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    @property
    def is_view(self) -> bool:
        """Whether this storage is a slice of another one (legacy files only)."""
        return self._view_of is not None

    @property
    def has_data(self) -> bool:
        return self._view_of[0].has_data if self._view_of is not None else self._data is not None

    def set_data(self, data: bytes) -> None:
        if self._view_of is not None:
            raise CheckpointError(f"storage {self.key!r} is a view but the file stores data for it")
        if len(data) < self.nbytes:
            raise CheckpointError(
                f"storage {self.key!r} holds {len(data)} bytes but the checkpoint declares {self.nbytes}"
            )
        self._data = data

    @property
    def data(self) -> bytes | memoryview:
        if self._view_of is not None:
            root, offset = self._view_of
            start = offset * self.dtype.itemsize
            return memoryview(root.data)[start:start + self.nbytes]
        if self._data is None:
            raise CheckpointError(f"storage {self.key!r} is used by the pickle but has no data record")
        return self._data

    def numpy(self) -> np.ndarray:
        """The storage's elements as a 1-D array (bfloat16 as float32)."""
        if self.dtype.numpy is None:
            raise CheckpointError(f"storage {self.key!r} has unsupported dtype torch.{self.dtype.name}")
        stored = np.frombuffer(self.data, self.dtype.stored(self.byteorder), self.numel)
        return _to_result(stored, self.dtype)

    def __repr__(self) -> str:
        return f"TorchStorage(key={self.key!r}, dtype={self.dtype.name}, numel={self.numel})"


def dtype_named(name: str) -> TorchDtype | None:
    """The TorchDtype for a ``torch.<name>`` attribute, or None if it is not a dtype."""
    name = _DTYPE_ALIASES.get(name, name)
    if name in _STORED_CODES or name in _UNSUPPORTED_SIZES:
        return TorchDtype(name)
    return None


def _to_result(stored: np.ndarray, dtype: TorchDtype) -> np.ndarray:
    """Stored elements -> returned values: exact bfloat16 widening, bool as 0/1."""
    if dtype.name == "bfloat16":
        return (stored.astype(np.uint32) << 16).view(np.float32)
    if dtype.name == "bool":
        return stored != 0
    return stored.astype(dtype.numpy)


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(type(v) is int and v >= 0 for v in value):
        raise CheckpointError(f"corrupt tensor record: {what} is not a tuple of non-negative ints")
    return tuple(value)


@dataclass
class _PendingCopy:
    out: np.ndarray
    storage: TorchStorage
    dtype: TorchDtype
    offset: int
    strides: tuple[int, ...]
    negate: bool
    conjugate: bool


class TensorAssembler:
    """Rebuilds the tensors of one checkpoint as numpy arrays (see module docstring).

    Args:
        byteorder: ``"little"`` or ``"big"``, how the file stores numbers.
        available_bytes: ``key -> int``, an upper bound on the bytes the file
            can hold for a storage, so a corrupt size fails before allocating.
    """

    def __init__(self, byteorder: str, available_bytes: Callable[[str], int]):
        self.byteorder = byteorder
        self._available_bytes = available_bytes
        self.storages: dict[str, TorchStorage] = {}
        self._pending: list[_PendingCopy] = []
        self._globals = self._torch_globals()
        self._stored_bytes = 0  # of the storages the pickle named so far
        self._copied_bytes = 0  # of the arrays rebuilt so far

    # -- pickle callbacks ------------------------------------------------------
    def persistent_load(self, pid: Any) -> Any:
        """Resolve ``('storage', type, key, location, numel[, view])`` or ``('module', cls, ...)``."""
        if not isinstance(pid, tuple) or not pid:
            raise CheckpointError(f"unknown persistent id of type {type(pid).__name__}")
        kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if kind == "module" and len(pid) == 4:
            return pid[1]  # whole-module pickles (legacy); the class was resolved already
        if kind != "storage" or len(pid) not in (5, 6):
            raise CheckpointError(f"unknown persistent id {str(kind)[:40]!r} with {len(pid)} fields")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, StorageType):
            raise CheckpointError("corrupt storage record: its type is not a torch storage class")
        if not isinstance(key, str) or type(numel) is not int or numel < 0:
            raise CheckpointError("corrupt storage record: bad key or size")
        storage = self.storages.get(key)
        if storage is None:
            storage = TorchStorage(key, storage_type.dtype, numel, self.byteorder)
            available = self._available_bytes(key)
            if storage.nbytes > available:
                raise CheckpointError(
                    f"storage {key!r} declares {storage.nbytes} bytes "
                    f"but the file can hold at most {available}"
                )
            self.storages[key] = storage
            self._stored_bytes += storage.nbytes
        view = pid[5] if len(pid) == 6 else None
        return storage if view is None else self._storage_view(storage, view)

    def _storage_view(self, root: TorchStorage, view: Any) -> TorchStorage:
        # Legacy files could save a storage that is a slice of another one.
        if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[0], str)
                and all(type(v) is int and v >= 0 for v in view[1:])):
            raise CheckpointError("corrupt storage view record")
        view_key, offset, numel = view
        if offset + numel > root.numel:
            raise CheckpointError(f"storage view {view_key!r} runs past the end of storage {root.key!r}")
        if view_key not in self.storages:
            self.storages[view_key] = TorchStorage(view_key, root.dtype, numel, root.byteorder,
                                                   view_of=(root, offset))
        return self.storages[view_key]

    def rebuild(self, storage: Any, offset: Any, size: Any, stride: Any,
                dtype: TorchDtype | None = None, metadata: Any = None) -> np.ndarray:
        """An array for ``storage`` viewed at ``offset`` with ``size``/``stride`` (elements)."""
        if not isinstance(storage, TorchStorage):
            raise CheckpointError("corrupt tensor record: its storage is not a storage")
        dtype = storage.dtype if dtype is None else dtype
        if not isinstance(dtype, TorchDtype):
            raise CheckpointError("corrupt tensor record: its dtype is not a torch dtype")
        if dtype.numpy is None:
            raise CheckpointError(
                f"tensor of unsupported storage dtype torch.{dtype.name} (storage {storage.key!r})")
        if type(offset) is not int or offset < 0:
            raise CheckpointError("corrupt tensor record: bad storage offset")
        shape, strides = _ints(size, "size"), _ints(stride, "stride")
        if len(shape) != len(strides):
            raise CheckpointError("corrupt tensor record: size and stride differ in length")
        numel = int(np.prod(shape, dtype=object)) if shape else 1
        capacity = storage.nbytes // dtype.itemsize
        if numel:
            needed = offset + sum((n - 1) * s for n, s in zip(shape, strides)) + 1
            if needed > capacity:
                raise CheckpointError(
                    f"tensor of shape {shape} needs {needed} elements of storage {storage.key!r}, "
                    f"which holds {capacity}"
                )
            if numel > capacity and numel * dtype.itemsize > _MAX_EXPANDED_BYTES:
                raise CheckpointError(f"tensor of shape {shape} repeats its storage beyond the copy limit")
        self._copied_bytes += numel * dtype.numpy.itemsize
        budget = _MAX_COPIES_PER_STORED_BYTE * self._stored_bytes + _MAX_EXPANDED_BYTES
        if self._copied_bytes > budget:
            raise CheckpointError(
                f"the tensors would take more memory than the file holds: {self._copied_bytes:,} bytes "
                f"as arrays for {self._stored_bytes:,} stored (views of one storage repeated); refused")
        flags = metadata if isinstance(metadata, dict) else {}
        out = np.empty(shape, dtype.numpy)
        self._pending.append(_PendingCopy(out, storage, dtype, offset, strides,
                                          bool(flags.get("neg")), bool(flags.get("conj"))))
        return out

    def fill(self) -> None:
        """Copy every rebuilt tensor's values from its storage (after the bytes are read)."""
        for job in self._pending:
            if job.out.size == 0:
                continue
            stored = job.dtype.stored(self.byteorder)
            data = job.storage.data
            base = np.frombuffer(data, stored, len(data) // stored.itemsize)
            view = as_strided(base[job.offset:], job.out.shape,
                              [s * stored.itemsize for s in job.strides], writeable=False)
            values = _to_result(view, job.dtype)
            if job.conjugate:
                values = np.conj(values)
            if job.negate:
                values = np.negative(values)
            job.out[...] = values
        self._pending.clear()

    # -- globals ---------------------------------------------------------------
    def find_global(self, path: str) -> Any:
        """The torch global at ``path`` (rebuild function, storage class, dtype), or None."""
        if path in self._globals:
            return self._globals[path]
        module, _, name = path.rpartition(".")
        if module in ("torch", "torch.cuda", "torch.storage") and name.endswith("Storage"):
            if name == "UntypedStorage":
                return StorageType(path, TorchDtype("uint8"))
            if name in _STORAGE_CLASSES:
                return StorageType(path, TorchDtype(_STORAGE_CLASSES[name]))
            raise CheckpointError(f"unknown storage dtype: the pickle names '{path}'")
        if module == "torch":
            return dtype_named(name)
        return None

    def _torch_globals(self) -> dict[str, PickledGlobal]:
        rebuild = self.rebuild

        def tensor_v1(storage, offset, size, stride):
            return rebuild(storage, offset, size, stride)

        def tensor_v2(storage, offset, size, stride, requires_grad, hooks, metadata=None):
            return rebuild(storage, offset, size, stride, metadata=metadata)

        def tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None):
            return rebuild(storage, offset, size, stride, dtype=dtype, metadata=metadata)

        def parameter(data, requires_grad=True, hooks=None, state=None):
            if not isinstance(data, np.ndarray):
                raise CheckpointError("corrupt parameter record: its data is not a tensor")
            return data

        def from_type(func, new_type, args, state):
            # Tensor subclasses and tensors with Python attributes; keep the values.
            if not isinstance(func, PickledGlobal) or not isinstance(args, tuple):
                raise CheckpointError("corrupt tensor subclass record")
            return parameter(func.call(args))

        def size(dims=()):
            return tuple(_ints(dims, "torch.Size"))

        def device(kind, index=None):
            if not isinstance(kind, str) or not (index is None or type(index) is int):
                raise CheckpointError("corrupt torch.device record")
            return kind if index is None else f"{kind}:{index}"

        def not_callable(*args):
            raise CheckpointError("the pickle calls torch.Tensor directly")

        # TorchScript's data.pkl wraps typed values: restore_type_tag(value, "List[str]") is the value,
        # build_tensorlist([...]) / build_intlist([...]) the list itself.
        def restore_type_tag(value, type_tag=None):
            return value

        def build_list(values=()):
            if not isinstance(values, (list, tuple)):
                raise CheckpointError("corrupt TorchScript list record")
            return list(values)

        entries = {
            "torch._utils._rebuild_tensor": tensor_v1,
            "torch._utils._rebuild_tensor_v2": tensor_v2,
            "torch._utils._rebuild_tensor_v3": tensor_v3,
            "torch._utils._rebuild_parameter": parameter,
            "torch._utils._rebuild_parameter_with_state": parameter,
            "torch.nn.parameter.Parameter": parameter,
            # torch <= 0.3: a Variable (what Parameter derived from) pickles like a Parameter
            "torch.autograd.variable.Variable": parameter,
            "torch.autograd.Variable": parameter,
            "torch._tensor._rebuild_from_type_v2": from_type,
            "torch.Size": size,
            "torch.device": device,
            "torch.Tensor": not_callable,
            "torch.jit._pickle.restore_type_tag": restore_type_tag,
            "torch.jit._pickle.build_tensorlist": build_list,
            "torch.jit._pickle.build_intlist": build_list,
            "torch.jit._pickle.build_doublelist": build_list,
            "torch.jit._pickle.build_boollist": build_list,
        }
        return {path: PickledGlobal(path, call, call) for path, call in entries.items()}
