"""Atomic writes: the old file survives a failed write; the new one gets the usual mode."""

import os

import pytest

from mlxseq.system.files import atomic_write, write_bytes, write_text


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "data.bin"
    write_bytes(path, b"old")

    def crash(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, crash)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["data.bin"]


def test_new_file_in_a_new_folder_with_the_umask_mode(tmp_path):
    path = tmp_path / "deep" / "er" / "note.txt"
    write_text(path, "grüße\n")
    assert path.read_text(encoding="utf-8") == "grüße\n"
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
