"""Hand-built pickles and checkpoint files for the reader's tests.

Real ``torch.save`` files cover what torch writes; these builders cover what
an attacker or a corrupt disk could write: arbitrary globals, lying sizes,
missing records. Pickle bodies are byte strings of protocol-2 opcodes that
leave one object on the stack; :func:`pickle_of` wraps them into a pickle.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_SYS_INFO = {"protocol_version": 1001, "little_endian": True,
                   "type_sizes": {"short": 2, "int": 4, "long": 4}}


def plain(value) -> bytes:
    """Opcodes that push ``value`` (plain data only), without PROTO and STOP."""
    return pickle.dumps(value, protocol=2)[2:-1]


def global_op(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def call_op(module: str, name: str, *args) -> bytes:
    """Opcodes for ``module.name(*args)`` with plain-data arguments."""
    return global_op(module, name) + plain(tuple(args)) + b"R"


def pickle_of(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


def storage_pid(storage_class: str, key: str, numel: int) -> bytes:
    """Opcodes for torch's persistent id ('storage', torch.<class>, key, 'cpu', numel)."""
    return (b"(" + plain("storage") + global_op("torch", storage_class) + plain(key)
            + plain("cpu") + plain(numel) + b"tQ")


def tensor_body(storage_class: str = "FloatStorage", key: str = "0", numel: int = 4,
                offset: int = 0, size=(4,), stride=(1,)) -> bytes:
    """Opcodes for ``torch._utils._rebuild_tensor_v2`` as torch.save writes it."""
    return (global_op("torch._utils", "_rebuild_tensor_v2") + b"("
            + storage_pid(storage_class, key, numel) + plain(offset) + plain(tuple(size))
            + plain(tuple(stride)) + b"\x89" + call_op("collections", "OrderedDict") + b"tR")


def write_zip_checkpoint(path: Path, data_pkl: bytes, storages: dict[str, bytes] | None = None,
                         archive: str = "archive", extra: dict[str, bytes] | None = None) -> Path:
    """A zip-format checkpoint with the given data.pkl and storage records."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
        out.writestr(f"{archive}/data.pkl", data_pkl)
        out.writestr(f"{archive}/byteorder", "little")
        for key, data in (storages or {}).items():
            out.writestr(f"{archive}/data/{key}", data)
        for name, data in (extra or {}).items():
            out.writestr(f"{archive}/{name}", data)
        out.writestr(f"{archive}/version", "3\n")
    return path


def write_legacy_checkpoint(path: Path, object_pickle: bytes,
                            storages: list[tuple[str, int, bytes]] = ()) -> Path:
    """A legacy-format checkpoint: header, object pickle, key list, (count, bytes) records."""
    parts = [pickle.dumps(MAGIC_NUMBER, protocol=2), pickle.dumps(1001, protocol=2),
             pickle.dumps(LEGACY_SYS_INFO, protocol=2), object_pickle,
             pickle.dumps([key for key, _, _ in storages], protocol=2)]
    for _, count, data in storages:
        parts.append(count.to_bytes(8, "little", signed=True) + data)
    path.write_bytes(b"".join(parts))
    return path


def rewrite_zip(source: Path, target: Path, change) -> Path:
    """Copy a zip, passing each (name, bytes) through ``change``; None drops the entry."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as new:
        for name in old.namelist():
            data = change(name, old.read(name))
            if data is not None:
                new.writestr(name, data)
    return target


_LOAD_WITHOUT_TORCH = """
import json, pickle, sys
sys.modules["torch"] = None  # any import of torch or torch.* now raises ImportError
from mlxseq.convert import CheckpointError, load_torch_checkpoint
paths, allow, out = json.loads(sys.argv[1])
results = []
for path in paths:
    try:
        results.append(("ok", load_torch_checkpoint(path, allow=allow)))
    except CheckpointError as error:
        results.append(("error", type(error).__name__, str(error)))
assert sys.modules["torch"] is None, "the reader imported torch"
with open(out, "wb") as file:
    pickle.dump(results, file)
"""


def load_without_torch(paths: list[Path], out: Path, allow=()) -> list[tuple]:
    """Load ``paths`` in a fresh interpreter where torch cannot be imported.

    Returns one ``("ok", result)`` or ``("error", type name, message)`` per path.
    """
    argument = json.dumps([[str(p) for p in paths], list(allow), str(out)])
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    completed = subprocess.run([sys.executable, "-c", _LOAD_WITHOUT_TORCH, argument],
                               env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    with open(out, "rb") as file:
        return pickle.load(file)  # written by our own subprocess: trusted
