"""Tensor rebuilding from storages: views, bounds, dtypes, without torch files."""

from __future__ import annotations

import numpy as np
import pytest

from mlxseq.convert import CheckpointError, TorchDtype
from mlxseq.convert.torch_tensors import StorageType, TensorAssembler


def assembler_with(values: np.ndarray, storage_class="FloatStorage", dtype="float32", byteorder="little"):
    """An assembler holding one storage '0' with ``values`` as its bytes."""
    assembler = TensorAssembler(byteorder, lambda key: values.nbytes)
    kind = StorageType(f"torch.{storage_class}", TorchDtype(dtype))
    storage = assembler.persistent_load(("storage", kind, "0", "cpu", values.nbytes // kind.dtype.itemsize))
    storage.set_data(values.tobytes())
    return assembler, storage


def test_offset_and_strides_select_the_same_elements_as_numpy():
    values = np.arange(24, dtype=np.float32)
    assembler, storage = assembler_with(values)
    # rows 1..2 of a (4, 6) matrix, every second column, transposed: offset 6, size (3, 2), stride (2, 6)
    out = assembler.rebuild(storage, 6, (3, 2), (2, 6))
    assembler.fill()
    np.testing.assert_array_equal(out, values.reshape(4, 6)[1:3, ::2].T)
    assert out.flags.c_contiguous and out.flags.writeable


def test_bfloat16_bits_become_the_top_half_of_float32():
    bits = np.array([0x3F80, 0xC020, 0x7F80, 0xFF80, 0x7FC1, 0x0001, 0x8000], dtype=np.uint16)
    assembler, storage = assembler_with(bits, "BFloat16Storage", "bfloat16")
    out = assembler.rebuild(storage, 0, (7,), (1,))
    assembler.fill()
    assert out.dtype == np.float32
    assert out.view(np.uint32).tolist() == [int(b) << 16 for b in bits]
    assert out[:4].tolist() == [1.0, -2.5, np.inf, -np.inf]
    np.testing.assert_array_equal(storage.numpy().view(np.uint32), out.view(np.uint32))


def test_untyped_storage_is_viewed_with_the_tensor_dtype():
    values = np.array([1.5, -2.0, 3.25], dtype=np.float64)
    assembler, storage = assembler_with(values, "UntypedStorage", "uint8")
    out = assembler.rebuild(storage, 1, (2,), (1,), dtype=TorchDtype("float64"))
    assembler.fill()
    assert out.tolist() == [-2.0, 3.25]


def test_big_endian_storage_is_swapped():
    values = np.array([1.5, -2.0], dtype=">f4")
    assembler, storage = assembler_with(values, byteorder="big")
    out = assembler.rebuild(storage, 0, (2,), (1,))
    assembler.fill()
    assert out.dtype == np.dtype("float32") and out.tolist() == [1.5, -2.0]


def test_bool_storage_gives_bool_arrays():
    assembler, storage = assembler_with(np.array([0, 1, 2], dtype=np.uint8), "BoolStorage", "bool")
    out = assembler.rebuild(storage, 0, (3,), (1,))
    assembler.fill()
    assert out.dtype == np.bool_ and out.tolist() == [False, True, True]


def test_conjugate_and_negative_bits_are_applied():
    values = np.array([1 + 2j, 3 - 1j], dtype=np.complex64)
    assembler, storage = assembler_with(values, "ComplexFloatStorage", "complex64")
    conj = assembler.rebuild(storage, 0, (2,), (1,), metadata={"conj": True})
    neg = assembler.rebuild(storage, 0, (2,), (1,), metadata={"neg": True})
    assembler.fill()
    assert conj.tolist() == [1 - 2j, 3 + 1j] and neg.tolist() == [-1 - 2j, -3 + 1j]


@pytest.mark.parametrize("offset, size, stride, message", [
    (0, (5,), (1,), "needs 5 elements of storage '0', which holds 4"),
    (3, (2,), (1,), "needs 5 elements"),
    (0, (2, 2), (3, 1), "needs 5 elements"),
    (-1, (1,), (1,), "bad storage offset"),
    (0, (2,), (1, 1), "size and stride differ"),
    (0, (2.0,), (1,), "size is not a tuple of non-negative ints"),
    (0, (1 << 22, 1 << 10), (0, 0), "repeats its storage beyond the copy limit"),
])
def test_views_outside_their_storage_are_refused(offset, size, stride, message):
    assembler, storage = assembler_with(np.arange(4, dtype=np.float32))
    with pytest.raises(CheckpointError, match=message):
        assembler.rebuild(storage, offset, size, stride)


def test_small_expanded_views_are_copied():
    assembler, storage = assembler_with(np.arange(2, dtype=np.float32))
    out = assembler.rebuild(storage, 0, (3, 2), (0, 1))
    assembler.fill()
    assert out.tolist() == [[0, 1]] * 3


def test_empty_tensor_needs_no_storage_bytes():
    assembler, storage = assembler_with(np.zeros(0, dtype=np.float32))
    out = assembler.rebuild(storage, 0, (0, 3), (3, 1))
    assembler.fill()
    assert out.shape == (0, 3)


def test_unsupported_dtype_is_named():
    assembler, storage = assembler_with(np.zeros(4, dtype=np.uint8), "UntypedStorage", "uint8")
    with pytest.raises(CheckpointError, match="unsupported storage dtype torch.float8_e4m3fn"):
        assembler.rebuild(storage, 0, (4,), (1,), dtype=TorchDtype("float8_e4m3fn"))


def test_declared_size_beyond_the_file_fails_before_reading():
    assembler = TensorAssembler("little", lambda key: 100)
    kind = StorageType("torch.FloatStorage", TorchDtype("float32"))
    with pytest.raises(CheckpointError, match="declares 4000000 bytes but the file can hold at most 100"):
        assembler.persistent_load(("storage", kind, "0", "cpu", 10**6))


def test_same_key_gives_the_same_storage():
    assembler = TensorAssembler("little", lambda key: 64)
    kind = StorageType("torch.FloatStorage", TorchDtype("float32"))
    first = assembler.persistent_load(("storage", kind, "0", "cpu", 4))
    assert assembler.persistent_load(("storage", kind, "0", "cuda:0", 4)) is first


@pytest.mark.parametrize("pid, message", [
    (("storage", "torch.FloatStorage", "0", "cpu", 4), "not a torch storage class"),
    (("storage",), "unknown persistent id 'storage' with 1 fields"),
    (("tensor", 1, 2, 3, 4), "unknown persistent id 'tensor'"),
    ("0", "unknown persistent id of type str"),
])
def test_malformed_persistent_ids(pid, message):
    with pytest.raises(CheckpointError, match=message):
        TensorAssembler("little", lambda key: 64).persistent_load(pid)


def test_storage_without_data_is_named_when_used():
    assembler = TensorAssembler("little", lambda key: 64)
    kind = StorageType("torch.FloatStorage", TorchDtype("float32"))
    storage = assembler.persistent_load(("storage", kind, "7", "cpu", 4))
    assembler.rebuild(storage, 0, (4,), (1,))
    with pytest.raises(CheckpointError, match="storage '7' is used by the pickle but has no data record"):
        assembler.fill()
