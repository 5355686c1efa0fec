"""The two file layouts ``torch.save`` writes, read without torch.

Zip (torch >= 1.6)::

    <archive>/data.pkl        the pickled object; tensors refer to storages by key
    <archive>/byteorder       "little" or "big" (absent in old files: little)
    <archive>/data/<key>      raw bytes of each storage

Legacy (torch < 1.6, ``_use_new_zipfile_serialization=False``): one stream of
consecutive pickles and raw data::

    pickle(MAGIC_NUMBER) pickle(PROTOCOL_VERSION) pickle(sys_info)
    pickle(object)                 storages as ('storage', type, key, location, numel, view)
    pickle([key, ...])             the storages that follow, in this order
    for each key: int64 element count (little endian), then count * itemsize bytes

The tar layout of torch 0.1 (early 2017) is read by :mod:`.torch_tar`.
"""

from __future__ import annotations

import os
import struct
import zipfile
from typing import Any

from .errors import CheckpointError
from .pickle_globals import GlobalResolver
from .torch_tar import is_tar_checkpoint, read_tar_checkpoint
from .torch_tensors import TensorAssembler
from .bounded_stream import BoundedStream
from .unpickler import load_pickle

# A member may inflate at most this many times its compressed size (torch
# stores members uncompressed; deflate reaches about 1,000x on zeros).
MAX_INFLATION = 100
_SMALL_MEMBER = 1 << 20  # bytes any member may inflate to, whatever its ratio

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
ZIP_SIGNATURE = b"PK\x03\x04"


def read_zip_checkpoint(path: str, allow: tuple[str, ...]) -> Any:
    """Load a zip-format ``torch.save`` file (see module docstring)."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        raise CheckpointError(f"truncated or corrupt zip archive ({error})") from None
    with archive:
        infos = {info.filename: info for info in archive.infolist()}
        prefix = _archive_prefix(infos)
        byteorder = _byteorder(archive, infos, prefix)

        def available_bytes(key: str) -> int:
            info = infos.get(f"{prefix}data/{key}")
            if info is None:
                raise CheckpointError(f"missing storage record {prefix}data/{key}")
            return _member_size(info)

        assembler = TensorAssembler(byteorder, available_bytes)
        info = infos[f"{prefix}data.pkl"]
        with archive.open(info) as pickled:  # streamed: never more in memory than the objects it builds
            stream = BoundedStream(pickled, _member_size(info), start=0)
            result = load_pickle(stream, GlobalResolver(allow, assembler.find_global),
                                 assembler.persistent_load)
        for storage in assembler.storages.values():
            if not storage.is_view:
                storage.set_data(archive.read(f"{prefix}data/{storage.key}"))
        assembler.fill()
    return result


def _member_size(info: zipfile.ZipInfo) -> int:
    """The declared size of a zip member, refused when it inflates past :data:`MAX_INFLATION`."""
    if info.file_size > max(MAX_INFLATION * info.compress_size, _SMALL_MEMBER):
        raise CheckpointError(
            f"zip member {info.filename} inflates {info.compress_size:,} bytes to {info.file_size:,} "
            f"(more than {MAX_INFLATION}x): refused as a decompression bomb")
    return info.file_size


def _archive_prefix(infos: dict[str, zipfile.ZipInfo]) -> str:
    """The folder holding data.pkl (``torch.save`` names it after the file)."""
    candidates = sorted((name for name in infos if name == "data.pkl" or name.endswith("/data.pkl")),
                        key=lambda name: name.count("/"))
    if not candidates:
        if any(name.endswith("constants.pkl") for name in infos):
            raise CheckpointError(
                "this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint")
        raise CheckpointError("zip archive has no data.pkl: not a torch.save checkpoint")
    return candidates[0][: -len("data.pkl")]


def _byteorder(archive: zipfile.ZipFile, infos: dict[str, zipfile.ZipInfo], prefix: str) -> str:
    name = f"{prefix}byteorder"
    if name not in infos:
        return "little"  # files from before the record existed were written on little-endian machines
    if infos[name].file_size > 16:
        raise CheckpointError("corrupt byteorder record")
    value = archive.read(name)
    if value not in (b"little", b"big"):
        raise CheckpointError(f"unknown byte order {value[:16]!r}")
    return value.decode("ascii")


def read_legacy_checkpoint(path: str, allow: tuple[str, ...]) -> Any:
    """Load a legacy-format ``torch.save`` file (see module docstring)."""
    size = os.path.getsize(path)
    with open(path, "rb") as file:
        head = file.read(512)
        if is_tar_checkpoint(head):
            return read_tar_checkpoint(path, allow)
        if head.startswith(ZIP_SIGNATURE):
            raise CheckpointError("truncated or corrupt zip archive (no central directory)")
        stream = BoundedStream(file, size, start=0)
        _read_header(stream)
        # Storage data is always written little endian (torch swaps on big-endian hosts).
        assembler = TensorAssembler("little", lambda key: stream.remaining)
        result = load_pickle(stream, GlobalResolver(allow, assembler.find_global),
                             assembler.persistent_load)
        keys = load_pickle(stream, GlobalResolver())
        if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
            raise CheckpointError("corrupt storage key list")
        for key in keys:
            _read_legacy_storage(stream, assembler, key)
    missing = [s.key for s in assembler.storages.values() if not s.has_data]
    if missing:
        raise CheckpointError(f"missing storage record for key {missing[0]!r}")
    assembler.fill()
    return result


def _read_header(stream: BoundedStream) -> None:
    plain = GlobalResolver()  # the header holds only numbers and a dict
    try:
        magic = load_pickle(stream, plain)
    except CheckpointError:
        magic = None
    if magic != MAGIC_NUMBER:
        raise CheckpointError("not a PyTorch checkpoint: neither a zip archive nor a legacy torch.save file")
    version = load_pickle(stream, plain)
    if version != PROTOCOL_VERSION:
        raise CheckpointError(f"unsupported legacy protocol version {version!r}")
    load_pickle(stream, plain)  # sys_info: endianness and C type sizes, not needed


def _read_legacy_storage(stream: BoundedStream, assembler: TensorAssembler, key: str) -> None:
    storage = assembler.storages.get(key)
    if storage is None:
        # The element size comes from the pickle; without it the data cannot be skipped.
        raise CheckpointError(f"storage {key!r} is listed in the file but never used by the pickle")
    (count,) = struct.unpack("<q", stream.read(8))
    storage.set_data(stream.read(count * storage.dtype.itemsize))
