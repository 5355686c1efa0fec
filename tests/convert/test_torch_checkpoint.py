"""Both torch.save layouts, read without torch, against torch.load bit for bit.

Files are written by the installed torch; the reader runs in a subprocess in
which ``import torch`` fails, and its results are compared with
``torch.load(weights_only=True)`` in this process.
"""

from __future__ import annotations

import pickle
import struct
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch

from checkpoint_builders import (load_without_torch, pickle_of, plain, rewrite_zip, tensor_body,
                                 write_legacy_checkpoint, write_zip_checkpoint)
from mlxseq.convert import CheckpointError, TorchDtype, load_torch_checkpoint

FORMATS = ["zip", "legacy"]


def save(obj, path, layout):
    torch.save(obj, path, _use_new_zipfile_serialization=(layout == "zip"))
    return path


def parity_object():
    """One object holding every tensor layout and container the reader must handle."""
    torch.manual_seed(0)
    base = torch.randn(4, 6)
    shared = torch.randn(8)
    bf16_specials = torch.tensor([1.0, -2.5, 0.1, 3.0e38, float("inf"), -float("inf"), float("nan"),
                                  -0.0, 1.0e-39], dtype=torch.bfloat16)
    every_bf16 = torch.from_numpy(np.arange(1 << 16, dtype=np.uint16).view(np.int16)).view(torch.bfloat16)
    return {
        "lstm": torch.nn.LSTM(3, 2, num_layers=2, bidirectional=True).state_dict(),
        "base": base,
        "transposed": base.t(),
        "row_slice": base[1:3],
        "column_slice": base[:, 2:5],
        "strided": base[::2, 1::3],
        "shared_twice": (shared, shared),
        "shared_view": shared.view(2, 4),
        "shared_slice": shared[3:7],
        "expanded": torch.arange(3.0).reshape(3, 1).expand(3, 4),
        "fp16": torch.randn(3, 2).half(),
        "bf16": bf16_specials,
        "every_bf16": every_bf16,
        "fp64": torch.randn(2, 3, dtype=torch.float64),
        "int64": torch.arange(-3, 3),
        "int32": torch.tensor([2**31 - 1, -(2**31)], dtype=torch.int32),
        "int16": torch.tensor([-7, 300], dtype=torch.int16),
        "int8": torch.tensor([-128, 127], dtype=torch.int8),
        "uint8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "complex": torch.tensor([1 + 2j, -3j], dtype=torch.complex64),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 3),
        "parameter": torch.nn.Parameter(torch.randn(2, 2)),
        "nested": {"list": [torch.ones(2), (torch.zeros(1), 3, "x")], "tuple": (1.5, None, True, 2**70)},
        "ordered": OrderedDict(b=torch.ones(1), a=2),
        "size": torch.Size([2, 3]),
        "dtype": torch.float16,
        "text": "model",
        "bytes": b"\x00\xff",
        "set": {1, 2},
    }


def assert_same(loaded, expected, where="obj"):
    """``loaded`` (reader) equals ``expected`` (torch.load): same types, same bits."""
    if isinstance(expected, torch.Tensor):
        reference = expected.detach().resolve_conj()
        reference = (reference.float() if reference.dtype == torch.bfloat16 else reference).numpy()
        assert isinstance(loaded, np.ndarray), where
        assert (loaded.dtype, loaded.shape) == (reference.dtype, reference.shape), where
        assert np.ascontiguousarray(loaded).tobytes() == np.ascontiguousarray(reference).tobytes(), where
    elif isinstance(expected, torch.Size):
        assert type(loaded) is tuple and loaded == tuple(expected), where
    elif isinstance(expected, torch.dtype):
        assert loaded == TorchDtype(str(expected).removeprefix("torch.")), where
    elif isinstance(expected, dict):
        assert type(loaded) is type(expected) and list(loaded) == list(expected), where
        assert getattr(loaded, "_metadata", None) == getattr(expected, "_metadata", None), where
        for key in expected:
            assert_same(loaded[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert type(loaded) is type(expected) and len(loaded) == len(expected), where
        for index, (a, b) in enumerate(zip(loaded, expected)):
            assert_same(a, b, f"{where}[{index}]")
    else:
        assert type(loaded) is type(expected) and loaded == expected, where


@pytest.fixture(scope="module")
def parity_files(tmp_path_factory):
    """Each layout written by torch and read once, without torch, in a subprocess."""
    folder = tmp_path_factory.mktemp("parity")
    paths = [save(parity_object(), folder / f"{layout}.pt", layout) for layout in FORMATS]
    results = load_without_torch(paths, folder / "results.pkl")
    return {layout: (path, result) for layout, path, result in zip(FORMATS, paths, results)}


@pytest.mark.parametrize("layout", FORMATS)
def test_matches_torch_load_bit_for_bit(parity_files, layout):
    path, result = parity_files[layout]
    assert result[0] == "ok", result
    assert_same(result[1], torch.load(path, weights_only=True))


@pytest.mark.parametrize("layout", FORMATS)
def test_bfloat16_is_widened_exactly(parity_files, layout):
    loaded = parity_files[layout][1][1]["every_bf16"]
    bits = np.arange(1 << 16, dtype=np.uint32) << 16  # bfloat16 is the top half of a float32
    assert loaded.dtype == np.float32 and loaded.view(np.uint32).tolist() == bits.tolist()


@pytest.mark.parametrize("layout", FORMATS)
def test_state_dict_of_lstm_keeps_names_and_order(parity_files, layout):
    lstm = parity_files[layout][1][1]["lstm"]
    assert type(lstm) is OrderedDict
    assert list(lstm)[:4] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert lstm["weight_ih_l1_reverse"].shape == (8, 4)


@pytest.mark.parametrize("layout", FORMATS)
def test_arrays_are_writable_copies(tmp_path, layout):
    shared = torch.arange(4.0)
    path = save({"a": shared, "b": shared[1:]}, tmp_path / "shared.pt", layout)
    loaded = load_torch_checkpoint(path)
    loaded["a"][1] = 100.0  # views of one storage are independent arrays
    assert loaded["b"].tolist() == [1.0, 2.0, 3.0]


def test_legacy_storage_views_are_resolved(tmp_path):
    # torch < 1.6 could save a storage that is a slice of another storage:
    # persistent id ('storage', type, root_key, location, root_numel, (view_key, offset, numel)).
    pid = (b"(" + plain("storage") + b"ctorch\nFloatStorage\n" + plain("root") + plain("cpu") + plain(6)
           + plain(("view", 2, 3)) + b"tQ")
    body = (b"ctorch._utils\n_rebuild_tensor\n(" + pid + plain(1) + plain((2,)) + plain((1,)) + b"tR")
    data = struct.pack("<6f", 0, 1, 2, 3, 4, 5)
    path = write_legacy_checkpoint(tmp_path / "views.pt", pickle_of(body), [("root", 6, data)])
    assert load_torch_checkpoint(path).tolist() == [3.0, 4.0]


def test_big_endian_zip_is_byteswapped(tmp_path):
    path = tmp_path / "big.pt"
    with zipfile.ZipFile(path, "w") as out:
        out.writestr("big/data.pkl", pickle_of(tensor_body(numel=2, size=(2,))))
        out.writestr("big/byteorder", "big")
        out.writestr("big/data/0", struct.pack(">2f", 1.5, -2.0))
    assert load_torch_checkpoint(path).tolist() == [1.5, -2.0]


# -- files that are wrong ---------------------------------------------------------


def small_checkpoint(folder, layout):
    torch.manual_seed(1)
    obj = {"gru": torch.nn.GRU(2, 2).state_dict(), "half": torch.randn(3).half(),
           "ids": torch.arange(4), "meta": {"epoch": 3, "names": ["a", "b"]}}
    return save(obj, folder / f"small_{layout}.pt", layout)


@pytest.mark.parametrize("layout", FORMATS)
def test_every_truncation_is_a_checkpoint_error(tmp_path, layout):
    data = small_checkpoint(tmp_path, layout).read_bytes()
    cut = tmp_path / "cut.pt"
    for end in sorted(set(np.linspace(1, len(data) - 1, 60).astype(int)) | {1, 2, len(data) - 1}):
        cut.write_bytes(data[:end])
        with pytest.raises(CheckpointError, match="cut.pt"):
            load_torch_checkpoint(cut)


def test_zip_without_data_pkl(tmp_path):
    path = tmp_path / "nodata.pt"
    with zipfile.ZipFile(path, "w") as out:
        out.writestr("archive/version", "3")
    with pytest.raises(CheckpointError, match="no data.pkl"):
        load_torch_checkpoint(path)


def test_torchscript_archive_is_named(tmp_path):
    path = tmp_path / "script.pt"
    with zipfile.ZipFile(path, "w") as out:
        out.writestr("script/constants.pkl", pickle.dumps((), protocol=2))
        out.writestr("script/code/__torch__.py", "")
    with pytest.raises(CheckpointError, match="TorchScript"):
        load_torch_checkpoint(path)


def test_missing_storage_record(tmp_path):
    source = save({"w": torch.ones(3)}, tmp_path / "w.pt", "zip")
    target = rewrite_zip(source, tmp_path / "missing.pt",
                         lambda name, data: None if "/data/" in name else data)
    with pytest.raises(CheckpointError, match=r"missing\.pt: missing storage record w/data/0"):
        load_torch_checkpoint(target)


def test_legacy_storage_missing_from_the_key_list(tmp_path):
    path = write_legacy_checkpoint(tmp_path / "nokey.pt", pickle_of(tensor_body()), [])
    with pytest.raises(CheckpointError, match="missing storage record for key '0'"):
        load_torch_checkpoint(path)


@pytest.mark.parametrize("layout", FORMATS)
def test_storage_shorter_than_its_tensor(tmp_path, layout):
    # The pickle's tensor needs 6 elements; its storage declares (and holds) 4.
    body = pickle_of(tensor_body(numel=4, size=(2, 3), stride=(3, 1)))
    data = struct.pack("<4f", 1, 2, 3, 4)
    if layout == "zip":
        path = write_zip_checkpoint(tmp_path / "short.pt", body, {"0": data})
    else:
        path = write_legacy_checkpoint(tmp_path / "short.pt", body, [("0", 4, data)])
    with pytest.raises(CheckpointError, match=r"needs 6 elements of storage '0', which holds 4"):
        load_torch_checkpoint(path)


@pytest.mark.parametrize("layout", FORMATS)
def test_storage_record_shorter_than_declared(tmp_path, layout):
    body = pickle_of(tensor_body(numel=4))
    data = struct.pack("<3f", 1, 2, 3)
    if layout == "zip":
        path = write_zip_checkpoint(tmp_path / "short.pt", body, {"0": data})
        message = "declares 16 bytes but the file can hold at most 12"
    else:
        path = write_legacy_checkpoint(tmp_path / "short.pt", body, [("0", 3, data)])
        message = "holds 12 bytes but the checkpoint declares 16"
    with pytest.raises(CheckpointError, match=message):
        load_torch_checkpoint(path)


@pytest.mark.parametrize("storage_class, message", [
    ("QInt8Storage", "unsupported storage dtype torch.qint8"),
    ("FancyStorage", "unknown storage dtype: the pickle names 'torch.FancyStorage'"),
])
def test_unknown_storage_dtype(tmp_path, storage_class, message):
    path = write_zip_checkpoint(tmp_path / "odd.pt", pickle_of(tensor_body(storage_class)), {"0": bytes(16)})
    with pytest.raises(CheckpointError, match=message):
        load_torch_checkpoint(path)


def test_a_corrupt_tar_header_is_named(tmp_path):
    path = tmp_path / "old.pt"
    path.write_bytes(bytes(257) + b"ustar" + bytes(250))
    with pytest.raises(CheckpointError, match="truncated or corrupt tar archive"):
        load_torch_checkpoint(path)


def test_pickle_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "plain.pt"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_torch_checkpoint(path)
