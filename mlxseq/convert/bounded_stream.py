"""Reading a file region where every short or oversized read is a CheckpointError."""

from __future__ import annotations

from typing import BinaryIO

from .errors import CheckpointError


class BoundedStream:
    """Reads from a binary file but never past ``end``; short reads are errors."""

    def __init__(self, fileobj: BinaryIO, end: int, start: int | None = None):
        self._file = fileobj
        self.position = fileobj.tell() if start is None else start
        self.end = end
        if start is not None:
            fileobj.seek(start)

    @property
    def remaining(self) -> int:
        return self.end - self.position

    def read(self, n: int) -> bytes:
        if n < 0 or n > self.remaining:
            raise CheckpointError(
                f"truncated or corrupt data: {n} bytes wanted at byte {self.position}, "
                f"{self.remaining} left"
            )
        data = self._file.read(n)
        if len(data) != n:
            raise CheckpointError(f"file ended early at byte {self.position + len(data)}")
        self.position += n
        return data

    def readline(self, limit: int | None = None) -> bytes:
        """A newline-terminated line (text opcodes) of at most ``limit`` bytes, without its newline."""
        line = self._file.readline(self.remaining if limit is None else min(limit, self.remaining))
        self.position += len(line)
        if not line.endswith(b"\n"):
            raise CheckpointError(
                f"corrupt pickle: unterminated or overlong line before byte {self.position}")
        return line[:-1]
