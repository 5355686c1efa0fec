"""The public entry point: formats by suffix, errors that name the file, fuzzing."""

from __future__ import annotations

import contextlib
import os
import signal

import mlx.core as mx
import numpy as np
import pytest
import torch

from mlxseq.convert import CheckpointError, load_torch_checkpoint


class Hang(BaseException):
    """Raised by the time guard; a BaseException so the reader cannot wrap it."""


@contextlib.contextmanager
def time_limit(seconds: float):
    def expire(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- safetensors and npz ---------------------------------------------------------


def test_safetensors_round_trip_with_bfloat16(tmp_path):
    weights = {
        "w": mx.array([[1.0, -2.0], [0.5, 3.0]]),
        "half": mx.array([0.25, -1.0], dtype=mx.float16),
        "ids": mx.array([1, -7], dtype=mx.int32),
        "bf16": mx.array([1.0, -2.5, 0.15625, 3.0e38], dtype=mx.bfloat16),
    }
    path = tmp_path / "model.safetensors"
    mx.save_safetensors(str(path), weights)
    loaded = load_torch_checkpoint(path)
    assert sorted(loaded) == sorted(weights)
    assert loaded["w"].dtype == np.float32 and loaded["w"].tolist() == [[1.0, -2.0], [0.5, 3.0]]
    assert loaded["half"].dtype == np.float16 and loaded["ids"].dtype == np.int32
    expected_bits = np.array(weights["bf16"].view(mx.uint16)).astype(np.uint32) << 16
    assert loaded["bf16"].dtype == np.float32
    assert loaded["bf16"].view(np.uint32).tolist() == expected_bits.tolist()


def test_npz_round_trip(tmp_path):
    arrays = {"a": np.arange(6, dtype=np.int64).reshape(2, 3), "b": np.array([True, False]),
              "c": np.float16([1.5])}
    np.savez(tmp_path / "w.npz", **arrays)
    loaded = load_torch_checkpoint(tmp_path / "w.npz")
    assert sorted(loaded) == ["a", "b", "c"]
    for name, value in arrays.items():
        assert loaded[name].dtype == value.dtype and np.array_equal(loaded[name], value)


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_npz_with_an_object_array_is_refused(tmp_path):
    marker = tmp_path / "ran"
    np.savez(tmp_path / "evil.npz", ok=np.ones(2), bad=np.array([Exploit(marker)], dtype=object))
    with pytest.raises(CheckpointError, match=r"evil\.npz: array 'bad' is an object array"):
        load_torch_checkpoint(tmp_path / "evil.npz")
    assert not marker.exists()


@pytest.mark.parametrize("name", ["w.safetensors", "w.npz"])
def test_truncated_array_files_are_checkpoint_errors(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".npz"):
        np.savez(path, a=np.arange(100.0))
    else:
        mx.save_safetensors(str(path), {"a": mx.arange(100.0)})
    data = path.read_bytes()
    for end in (0, 8, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:end])
        with pytest.raises(CheckpointError, match=name):
            load_torch_checkpoint(path)


# -- paths and garbage -------------------------------------------------------------


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_torch_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError):
        load_torch_checkpoint(tmp_path)  # a directory is not a checkpoint file either


def test_empty_file(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt: the file is empty"):
        load_torch_checkpoint(tmp_path / "empty.pt")


@pytest.mark.parametrize("seed", range(5))
def test_garbage_bytes(tmp_path, seed):
    path = tmp_path / "garbage.bin"
    path.write_bytes(np.random.default_rng(seed).bytes(2000))
    with pytest.raises(CheckpointError, match="garbage.bin"):
        load_torch_checkpoint(path)


def test_foreign_exceptions_are_wrapped_with_the_file_name(tmp_path):
    # A zip whose data.pkl entry claims a compression method zipfile lacks.
    path = tmp_path / "odd.pt"
    torch.save({"w": torch.ones(2)}, path)
    data = bytearray(path.read_bytes())
    header = data.index(b"PK\x03\x04")
    data[header + 8:header + 10] = (99).to_bytes(2, "little")  # local header method
    central = data.index(b"PK\x01\x02")
    data[central + 10:central + 12] = (99).to_bytes(2, "little")  # central directory method
    path.write_bytes(bytes(data))
    message = r"odd\.pt: corrupt or unreadable checkpoint \(NotImplementedError"
    with pytest.raises(CheckpointError, match=message):
        load_torch_checkpoint(path)


# -- fuzz ----------------------------------------------------------------------------


def fuzz_source(folder, layout):
    torch.manual_seed(2)
    obj = {"lstm": torch.nn.LSTM(2, 2).state_dict(), "bf16": torch.randn(3).bfloat16(),
           "view": torch.arange(6.0).reshape(2, 3).t(), "meta": {"step": 10, "tags": ("a", 2.5)}}
    path = folder / f"fuzz_{layout}.pt"
    torch.save(obj, path, _use_new_zipfile_serialization=(layout == "zip"))
    return path.read_bytes()


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_fuzzed_files_load_or_raise_checkpoint_error(tmp_path, layout):
    source = fuzz_source(tmp_path, layout)
    rng = np.random.default_rng(1234 if layout == "zip" else 4321)
    path = tmp_path / "fuzzed.pt"
    outcomes = {"loaded": 0, "refused": 0}
    for case in range(150):
        data = bytearray(source)
        if case % 3 == 0:
            data = data[: int(rng.integers(1, len(data)))]
        for _ in range(int(rng.integers(1, 5))):
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
        path.write_bytes(bytes(data))
        with time_limit(5.0):
            try:
                load_torch_checkpoint(path)
                outcomes["loaded"] += 1
            except CheckpointError as error:
                assert str(error).startswith(f"{path}: "), error
                outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and sum(outcomes.values()) == 150
