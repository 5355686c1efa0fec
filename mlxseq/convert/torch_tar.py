"""The tar layout of ``torch.save`` (torch 0.1, early 2017), read without torch.

A tar archive of four members, each a sequence of pickles and raw records::

    sys_info   pickle({"protocol_version": 1000, "little_endian": ..., "type_sizes": ...})
    pickle     the pickled object; a tensor or storage is the persistent id str(key), a
               module class the persistent id (class, source file, source)
    tensors    pickle(count), then per tensor: pickle((key, storage key, tensor class)),
               int32 ndim, 4 bytes of padding, ndim int64 sizes, ndim int64 strides,
               int64 storage offset (little endian)
    storages   pickle(count), then per storage: pickle((key, location, storage class)),
               int64 element count, the elements; then pickle([(view key, root key,
               offset, size), ...]) for storages that were slices of others

Members are read in place (nothing is extracted to disk); sizes declared in the
records are checked against the member's size before anything is allocated.
"""

from __future__ import annotations

import struct
import tarfile
from typing import Any

import numpy as np

from .bounded_stream import BoundedStream
from .errors import CheckpointError
from .pickle_globals import GlobalResolver
from .torch_tensors import StorageType, TensorAssembler, TorchStorage
from .unpickler import load_pickle

MEMBERS = ("pickle", "tensors", "storages")
MAX_DIMENSIONS = 64


def is_tar_checkpoint(head: bytes) -> bool:
    """Whether the first 512 bytes of a file are a tar header (``ustar`` at byte 257)."""
    return head[257:262] == b"ustar"


def read_tar_checkpoint(path: str, allow: tuple[str, ...]) -> Any:
    """Load a tar-format ``torch.save`` file (see module docstring)."""
    try:
        archive = tarfile.open(path, mode="r:")
    except tarfile.TarError as error:
        raise CheckpointError(f"truncated or corrupt tar archive ({error})") from None
    with archive:
        members = {}
        for member in archive:
            if member.name in MEMBERS and member.isreg():
                members[member.name] = member
        missing = [name for name in MEMBERS if name not in members]
        if missing:
            raise CheckpointError(f"tar archive without {', '.join(missing)}: not a torch.save checkpoint")
        assembler = TensorAssembler("little", lambda key: members["storages"].size)
        resolver = GlobalResolver(allow, lambda path: _tensor_class(path) or assembler.find_global(path))
        objects: dict[str, Any] = {}  # key -> storage or tensor
        with archive.extractfile(members["storages"]) as file:
            _read_storages(BoundedStream(file, members["storages"].size, start=0), resolver, assembler, objects)
        with archive.extractfile(members["tensors"]) as file:
            _read_tensors(BoundedStream(file, members["tensors"].size, start=0), resolver, assembler, objects)

        def persistent_load(pid: Any) -> Any:
            if isinstance(pid, tuple) and len(pid) == 3:
                return pid[0]  # (module class, source file, source): the class, a record
            key = pid.decode("ascii", "replace") if isinstance(pid, bytes) else pid
            if not isinstance(key, str) or key not in objects:
                raise CheckpointError(f"the pickle names a tensor or storage {str(key)[:40]!r} the file does not hold")
            return objects[key]

        with archive.extractfile(members["pickle"]) as file:
            result = load_pickle(BoundedStream(file, members["pickle"].size, start=0), resolver, persistent_load)
    assembler.fill()
    return result


def _tensor_class(path: str) -> str | None:
    """``torch.FloatTensor`` (or ``torch.cuda.FloatTensor``) as a name: the tensors record names its class."""
    module, _, name = path.rpartition(".")
    return path if module in ("torch", "torch.cuda") and name.endswith("Tensor") and name[:1].isupper() else None


def _count(stream: BoundedStream, what: str, record_bytes: int) -> int:
    count = load_pickle(stream, GlobalResolver())
    if type(count) is not int or count < 0 or count * record_bytes > stream.remaining:
        raise CheckpointError(f"corrupt {what} record: a count of {str(count)[:20]} does not fit the member")
    return count


def _read_storages(stream, resolver, assembler: TensorAssembler, objects: dict) -> None:
    types = {}
    for _ in range(_count(stream, "storages", 9)):
        record = load_pickle(stream, resolver)
        if not (isinstance(record, tuple) and len(record) == 3 and isinstance(record[2], StorageType)):
            raise CheckpointError("corrupt storages record: expected (key, location, storage class)")
        key, location, storage_type = str(record[0]), record[1], record[2]
        (numel,) = struct.unpack("<q", stream.read(8))
        if numel < 0:
            raise CheckpointError(f"corrupt storages record: storage {key!r} has {numel} elements")
        storage = assembler.persistent_load(("storage", storage_type, key, location, numel))
        storage.set_data(stream.read(numel * storage.dtype.itemsize))
        objects[key], types[key] = storage, storage_type
    views = load_pickle(stream, GlobalResolver())
    if not isinstance(views, list):
        raise CheckpointError("corrupt storages record: the list of storage views is missing")
    for view in views:
        if not (isinstance(view, tuple) and len(view) == 4 and str(view[1]) in objects):
            raise CheckpointError("corrupt storage view record")
        target, root, offset, numel = str(view[0]), str(view[1]), view[2], view[3]
        objects[target] = assembler.persistent_load(
            ("storage", types[root], root, None, objects[root].numel, (target, offset, numel)))


def _read_tensors(stream, resolver, assembler: TensorAssembler, objects: dict) -> None:
    for _ in range(_count(stream, "tensors", 16)):
        record = load_pickle(stream, resolver)
        if not (isinstance(record, tuple) and len(record) == 3):
            raise CheckpointError("corrupt tensors record: expected (key, storage key, tensor class)")
        key, storage_key = str(record[0]), record[1]
        ndim, _padding = struct.unpack("<ii", stream.read(8))
        if not 0 <= ndim <= MAX_DIMENSIONS:
            raise CheckpointError(f"corrupt tensors record: tensor {key!r} has {ndim} dimensions")
        size = struct.unpack(f"<{ndim}q", stream.read(8 * ndim))
        stride = struct.unpack(f"<{ndim}q", stream.read(8 * ndim))
        (offset,) = struct.unpack("<q", stream.read(8))
        if storage_key is None:  # a tensor without storage: empty
            objects[key] = np.zeros((0,), np.float32)
            continue
        storage = objects.get(str(storage_key))
        if not isinstance(storage, TorchStorage):
            raise CheckpointError(f"tensor {key!r} names storage {str(storage_key)[:40]!r}, which the file does not hold")
        objects[key] = assembler.rebuild(storage, offset, size, stride)
