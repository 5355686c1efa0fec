"""Reads that stop at the region's end instead of trusting lengths from the file."""

from __future__ import annotations

import io

import pytest

from mlxseq.convert import CheckpointError
from mlxseq.convert.bounded_stream import BoundedStream


def test_reads_stop_at_the_end_of_the_region():
    stream = BoundedStream(io.BytesIO(b"abcdefgh"), end=6, start=2)
    assert stream.read(3) == b"cde" and stream.remaining == 1
    with pytest.raises(CheckpointError, match="2 bytes wanted at byte 5, 1 left"):
        stream.read(2)
    with pytest.raises(CheckpointError, match="-1 bytes wanted"):
        stream.read(-1)


def test_a_file_shorter_than_claimed_is_an_error():
    stream = BoundedStream(io.BytesIO(b"abc"), end=10, start=0)
    with pytest.raises(CheckpointError, match="file ended early at byte 3"):
        stream.read(5)


def test_lines_need_a_newline_within_the_limit():
    stream = BoundedStream(io.BytesIO(b"os\nsystem-and-more\n"), end=19, start=0)
    assert stream.readline(limit=8) == b"os"
    with pytest.raises(CheckpointError, match="unterminated or overlong line"):
        stream.readline(limit=8)
