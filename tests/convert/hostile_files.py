"""Generators of hostile and odd checkpoint files: small files that ask for huge work or memory.

Each writes one file into a folder and returns its path; the tests load them in
a subprocess capped in memory and time (tests/convert/test_hostile_files.py).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from tests.convert.checkpoint_builders import (global_op, pickle_of, plain, storage_pid, write_legacy_checkpoint,
                                               write_zip_checkpoint)

MIB = 1 << 20


def _get(index: int) -> bytes:
    return b"h" + bytes([index]) if index < 256 else b"j" + index.to_bytes(4, "little")


def _put(index: int) -> bytes:
    return b"q" + bytes([index]) if index < 256 else b"r" + index.to_bytes(4, "little")


def tuple_dag(depth: int = 60) -> bytes:
    """Opcodes pushing t_depth, where t_0 = () and t_k = (t_{k-1}, t_{k-1}): 2^depth nodes as a tree."""
    body = b")" + _put(0) + b"0"
    for k in range(1, depth + 1):
        body += _get(k - 1) + _get(k - 1) + b"\x86" + _put(k) + (b"0" if k < depth else b"")
    return body


def list_dag(depth: int = 60) -> bytes:
    """The same with lists: l_k = [l_{k-1}, l_{k-1}]."""
    body = b"]" + _put(0) + b"0"
    for k in range(1, depth + 1):
        body += b"(" + _get(k - 1) + _get(k - 1) + b"l" + _put(k) + (b"0" if k < depth else b"")
    return body


def dag_as_dict_key(folder: Path) -> Path:
    """A 500-byte zip checkpoint whose dict key would take 2^60 steps to hash."""
    return write_zip_checkpoint(folder / "dag_key.pt", pickle_of(b"}" + tuple_dag() + b"Ns"))


def dag_into_frozenset(folder: Path) -> Path:
    return write_zip_checkpoint(folder / "dag_frozenset.pt", pickle_of(
        global_op("__builtin__", "frozenset") + tuple_dag() + b"\x85\x85R"))


def list_dag_into_str(folder: Path) -> Path:
    """builtins.str of a list DAG: its text would be 2^60 characters long."""
    return write_zip_checkpoint(folder / "dag_str.pt", pickle_of(
        global_op("builtins", "str") + list_dag() + b"\x85R"))


def _tensor(key: str, numel: int, size: tuple, stride: tuple, memo_storage: int | None = None) -> bytes:
    """``_rebuild_tensor_v2`` of storage ``key``; the persistent id is memoised once and fetched again."""
    if memo_storage is None:
        storage = storage_pid("FloatStorage", key, numel)
    else:
        storage = _get(memo_storage)
    return (global_op("torch._utils", "_rebuild_tensor_v2") + b"(" + storage + plain(0) + plain(tuple(size))
            + plain(tuple(stride)) + b"\x89" + global_op("collections", "OrderedDict") + b")R" + b"tR")


def many_views_of_one_storage(folder: Path, records: int = 50, storage_mib: int = 16) -> Path:
    """``records`` whole-storage tensors over one stored storage: each copy would take ``storage_mib``."""
    numel = storage_mib * MIB // 4
    first = (global_op("torch._utils", "_rebuild_tensor_v2") + b"(" + storage_pid("FloatStorage", "0", numel)
             + _put(1000) + plain(0) + plain((numel,)) + plain((1,)) + b"\x89"
             + global_op("collections", "OrderedDict") + b")R" + b"tR")
    rest = b"".join(_tensor("0", numel, (numel,), (1,), memo_storage=1000) for _ in range(records - 1))
    return write_zip_checkpoint(folder / "many_views.pt", pickle_of(b"(" + first + rest + b"l"),
                                {"0": bytes(storage_mib * MIB)})


def stride_zero_tensors(folder: Path, records: int = 1000) -> Path:
    """A legacy file of ``records`` tensors of 2^24 elements, each repeating one stored float (stride 0)."""
    numel = 1 << 24  # 64 MiB each once copied: at the per-tensor limit
    first = (global_op("torch._utils", "_rebuild_tensor_v2") + b"(" + storage_pid("FloatStorage", "0", 1)
             + _put(1000) + plain(0) + plain((numel,)) + plain((0,)) + b"\x89"
             + global_op("collections", "OrderedDict") + b")R" + b"tR")
    rest = b"".join(_tensor("0", 1, (numel,), (0,), memo_storage=1000) for _ in range(records - 1))
    return write_legacy_checkpoint(folder / "stride_zero.pt", pickle_of(b"(" + first + rest + b"l"),
                                   [("0", 1, bytes(4))])


def deflate_bomb(folder: Path, inflated_mib: int = 512) -> Path:
    """A zip checkpoint whose compressed data.pkl inflates to ``inflated_mib`` MiB (a huge BINBYTES8)."""
    path = folder / "bomb.pt"
    payload = inflated_mib * MIB
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("archive/data.pkl", "w", force_zip64=True) as member:
            member.write(b"\x80\x02\x8e" + payload.to_bytes(8, "little"))
            zeros = bytes(16 * MIB)
            for _ in range(inflated_mib // 16):
                member.write(zeros)
            member.write(b".")
        archive.writestr("archive/byteorder", "little")
    return path


def deep_dicts(folder: Path, depth: int = 50_000) -> Path:
    """A state dict 50,000 dicts deep, built from the memo with constant bytes per level."""
    body = [b"}" + _put(0)]
    for k in range(1, depth):
        body.append(_get(k - 1) + b"X\x01\x00\x00\x00a}" + _put(k) + b"s0")  # d_{k-1}["a"] = d_k = {}
    return write_zip_checkpoint(folder / "deep.pt", pickle_of(b"".join(body)))


def cyclic_dict(folder: Path) -> Path:
    """A dict that holds itself: {"model": <itself>, "w": tensor}."""
    body = b"}" + _put(0) + b"X\x05\x00\x00\x00model" + _get(0) + b"s"
    return write_zip_checkpoint(folder / "cyclic.pt", pickle_of(body))


def list_dag_checkpoint(folder: Path) -> Path:
    """A checkpoint that is a list DAG 60 levels deep: 2^60 lists to walk as a tree."""
    return write_zip_checkpoint(folder / "list_dag.pt", pickle_of(list_dag()))
