"""torch 0.1's tar-format ``torch.save`` files (early 2017), written member by member as
torch/serialization.py of that era wrote them: ``sys_info``, ``pickle`` (tensors and storages
as persistent ids ``str(key)``, module classes as ``(class, source file, source)``), ``tensors``
(metadata records) and ``storages`` (element counts and raw data, then views)."""

from __future__ import annotations

import io
import pickle
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
import torch

import mlxseq
from mlxseq.convert import CheckpointError, load_torch_checkpoint
from tests.convert.checkpoint_builders import REPO_ROOT, global_op, pickle_of, plain


def _record(*fields: bytes) -> bytes:
    return pickle_of(b"(" + b"".join(fields) + b"t")


def _tensors_member(tensors: dict[int, tuple[int, np.ndarray, int]]) -> bytes:
    """key -> (storage key, array view parameters: the array itself for sizes/strides, offset)."""
    out = [pickle.dumps(len(tensors), protocol=2)]
    for key, (storage_key, array, offset) in tensors.items():
        out.append(_record(plain(key), plain(storage_key), global_op("torch", "FloatTensor")))
        strides = [s // array.itemsize for s in array.strides]
        out.append(struct.pack("<ii", array.ndim, 0) + struct.pack(f"<{array.ndim}q", *array.shape)
                   + struct.pack(f"<{array.ndim}q", *strides) + struct.pack("<q", offset))
    return b"".join(out)


def _storages_member(storages: dict[int, np.ndarray], views=(), location="cuda:0") -> bytes:
    out = [pickle.dumps(len(storages), protocol=2)]
    for key, values in storages.items():
        out.append(_record(plain(key), plain(location), global_op("torch.cuda", "FloatStorage")))
        out.append(struct.pack("<q", values.size) + values.astype("<f4").tobytes())
    out.append(pickle.dumps(list(views), protocol=2))
    return b"".join(out)


def write_tar_checkpoint(path: Path, object_pickle: bytes, tensors: bytes, storages: bytes) -> Path:
    sys_info = pickle.dumps({"protocol_version": 1000, "little_endian": True,
                             "type_sizes": {"short": 2, "int": 4, "long": 8}}, protocol=2)
    with tarfile.open(path, "w:", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("sys_info", sys_info), ("pickle", object_pickle), ("tensors", tensors),
                           ("storages", storages)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _parameter(key: int) -> bytes:
    """torch 0.1's Parameter: REDUCE of the class on its tensor, BUILD of (requires_grad, volatile, hooks)."""
    hooks = global_op("collections", "OrderedDict") + b")R"
    return (global_op("torch.nn.parameter", "Parameter") + b"(" + plain(str(key)) + b"Q" + b"tR"
            + b"(" + b"\x88" + b"\x89" + hooks + b"t" + b"b")


def _ordered_dict(items: list[tuple[str, bytes]]) -> bytes:
    body = global_op("collections", "OrderedDict") + b")R"
    if items:
        body += b"(" + b"".join(plain(name) + value for name, value in items) + b"u"
    return body


@pytest.fixture
def lstm():
    torch.manual_seed(0)
    return torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True)


def _members(lstm, share_one_storage: bool):
    """Each parameter a tensor over a storage of its own, or all of them views into one flat storage."""
    names = list(lstm.state_dict())
    values = [v.numpy() for v in lstm.state_dict().values()]
    keys = {name: 1000 + 10 * i for i, name in enumerate(names)}  # the tensors' _cdata in the file
    if share_one_storage:
        flat = np.concatenate([v.ravel() for v in values])
        starts = np.cumsum([0] + [v.size for v in values])[:-1]
        tensors = {keys[n]: (7, v, int(s)) for n, v, s in zip(names, values, starts)}
        storages = _storages_member({7: flat})
    else:
        tensors = {keys[n]: (keys[n] + 1, v, 0) for n, v in zip(names, values)}
        storages = _storages_member({keys[n] + 1: v.ravel() for n, v in zip(names, values)})
    return names, keys, _tensors_member(tensors), storages


@pytest.mark.parametrize("share_one_storage", [False, True])
def test_a_tar_state_dict_loads_as_its_values(tmp_path, lstm, share_one_storage):
    names, keys, tensors, storages = _members(lstm, share_one_storage)
    state = _ordered_dict([(name, plain(str(keys[name])) + b"Q") for name in names])
    path = write_tar_checkpoint(tmp_path / "lstm.pt", pickle_of(state), tensors, storages)
    loaded = load_torch_checkpoint(path)
    assert list(loaded) == names
    for name, value in lstm.state_dict().items():
        np.testing.assert_array_equal(loaded[name], value.numpy())


CONVERT_WITHOUT_TORCH = """
import sys
sys.modules["torch"] = None  # any import of torch now fails
from mlxseq.cli import app
sys.argv = ["mlxseq", "convert", *sys.argv[1:]]
app()
"""


def test_a_whole_module_saved_by_torch_0_1_converts_to_its_outputs_without_torch(tmp_path, lstm):
    names, keys, tensors, storages = _members(lstm, share_one_storage=False)
    module_class = b"(" + global_op("torch.nn.modules.rnn", "LSTM") + plain("/usr/lib/torch/nn/modules/rnn.py") \
        + plain("class LSTM(RNNBase): ...") + b"t" + b"Q"  # persistent id (class, source file, source)
    attributes = b"}" + b"(" + plain("_parameters") + _ordered_dict([(n, _parameter(keys[n])) for n in names]) \
        + plain("_buffers") + _ordered_dict([]) + plain("_modules") + _ordered_dict([]) \
        + plain("_backend") + global_op("torch.nn.backends.thnn", "_get_thnn_function_backend") + b")R" \
        + plain("training") + b"\x88" + plain("hidden_size") + plain(4) + b"u"
    body = module_class + b")" + b"\x81" + attributes + b"b"  # NEWOBJ of the class, BUILD of its __dict__
    path = write_tar_checkpoint(tmp_path / "model.pt", pickle_of(body), tensors, storages)
    done = subprocess.run([sys.executable, "-c", CONVERT_WITHOUT_TORCH, str(path), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert "LSTM(input_size=3, hidden_size=4, num_layers=2, bias=True, bidirectional=True" in done.stdout
    x = torch.randn(2, 5, 3)
    layer = mlxseq.load(tmp_path / "out")
    expected = lstm(x.transpose(0, 1))[0].transpose(0, 1).detach().numpy()
    np.testing.assert_allclose(np.array(layer(mx.array(x.numpy()))[0]), expected, atol=1e-5)


@pytest.mark.parametrize("change, message", [
    (lambda m: {**m, "storages": m["storages"][:-40]}, "truncated or corrupt"),
    (lambda m: {k: v for k, v in m.items() if k != "tensors"}, "tar archive without tensors"),
    (lambda m: {**m, "storages": pickle.dumps(10**12, protocol=2)}, "a count of 1000000000000 does not fit"),
    (lambda m: {**m, "pickle": pickle_of(plain("99") + b"Q")}, "tensor or storage '99' the file does not hold"),
    (lambda m: {**m, "pickle": pickle_of(global_op("os", "system") + plain(("echo",)) + b"R")},
     "refusing to load the global 'os.system'"),
])
def test_a_broken_or_hostile_tar_checkpoint_is_one_clear_error(tmp_path, lstm, change, message):
    names, keys, tensors, storages = _members(lstm, share_one_storage=False)
    state = _ordered_dict([(name, plain(str(keys[name])) + b"Q") for name in names])
    members = change({"pickle": pickle_of(state), "tensors": tensors, "storages": storages})
    path = tmp_path / "broken.pt"
    with tarfile.open(path, "w:", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_torch_checkpoint(path)


def test_a_storage_declaring_more_elements_than_its_member_holds_is_refused_before_allocating(tmp_path, lstm):
    names, keys, tensors, _ = _members(lstm, share_one_storage=False)
    lying = pickle.dumps(1, protocol=2) + _record(plain(5), plain("cpu"), global_op("torch", "FloatStorage")) \
        + struct.pack("<q", 1 << 40) + b"\0" * 16
    state = _ordered_dict([])
    path = write_tar_checkpoint(tmp_path / "lying.pt", pickle_of(state), pickle.dumps(0, protocol=2), lying)
    with pytest.raises(CheckpointError, match="declares 4398046511104 bytes but the file can hold at most"):
        load_torch_checkpoint(path)
