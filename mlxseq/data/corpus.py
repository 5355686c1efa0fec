"""Readers for text corpora: parallel sentence files and plain text, with file:line errors.

Files are UTF-8, plain or gzip-compressed (recognised by their magic bytes, so a
``.gz`` suffix is neither needed nor trusted). Every failure is a
:class:`DataError` whose message starts with ``path:line:`` (or ``path:`` when no
single line is at fault), as a compiler reports it.

Public API::

    read_parallel(src_path, tgt_path, *, max_length=None, length=len) -> ParallelCorpus
    read_lines(paths) -> list[str]          # one entry per line, newlines stripped
    read_text(paths) -> str                 # whole text, for character or contiguous LMs
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator, Sequence, Union

PathLike = Union[str, "os.PathLike[str]"]

_GZIP_MAGIC = b"\x1f\x8b"


class DataError(ValueError):
    """A data file could not be read: missing, empty, not UTF-8, or inconsistent.

    Attributes:
        path: the file at fault (for a mismatch of two files, the source file).
        line: the 1-based line number at fault, or ``None`` for the whole file.
    """

    def __init__(self, message: str, path: PathLike | None = None, line: int | None = None):
        self.path = None if path is None else os.fspath(path)
        self.line = line
        where = "" if self.path is None else f"{self.path}:" + ("" if line is None else f"{line}:")
        super().__init__(f"{where} {message}" if where else message)


class MissingFileError(DataError, FileNotFoundError):
    """A data file does not exist; catchable as DataError or FileNotFoundError."""


@dataclass(frozen=True)
class ReadStats:
    """What :func:`read_parallel` kept and skipped, so a caller can log it.

    Attributes:
        lines: lines in each of the two files (they are equal, or reading fails).
        kept: pairs returned.
        empty: pairs skipped because either side is empty or whitespace-only.
        too_long: pairs skipped because either side exceeds ``max_length``.
    """

    lines: int
    kept: int
    empty: int
    too_long: int


@dataclass
class ParallelCorpus:
    """Aligned sentence pairs from two files.

    Attributes:
        source: source sentences, newlines stripped, other whitespace untouched.
        target: target sentences, aligned with ``source``.
        line_numbers: the 1-based line number each kept pair had in the files,
            so a later error (a tokenizer, a model) can still point at the file.
        stats: counts of kept and skipped pairs.
    """

    # Lists of thousands of sentences stay out of the repr; the stats say enough.
    source: list[str] = field(repr=False)
    target: list[str] = field(repr=False)
    line_numbers: list[int] = field(repr=False)
    stats: ReadStats

    def __len__(self) -> int:
        return len(self.source)

    def pairs(self) -> Iterator[tuple[str, str]]:
        """Iterate ``(source, target)`` pairs."""
        return zip(self.source, self.target)


def _read_bytes(path: PathLike) -> bytes:
    """Return the decompressed content of ``path``, or raise DataError naming it."""
    if not os.path.exists(path):
        raise MissingFileError("no such file", path)
    if os.path.isdir(path):
        raise DataError("is a directory, expected a text file", path)
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(f"corrupt or truncated gzip data ({error})", path) from None
    return data


def _decode_error(path: PathLike, data: bytes, error: UnicodeDecodeError) -> DataError:
    """Turn a UnicodeDecodeError at byte ``error.start`` of ``data`` into a file:line error."""
    line = data.count(b"\n", 0, error.start) + 1
    column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
    bad = data[error.start : error.end].hex(" ")
    return DataError(f"invalid UTF-8 (byte {bad} at column {column}): {error.reason}", path, line)


def _decode(path: PathLike, data: bytes) -> str:
    """Decode UTF-8 strictly, dropping a leading byte-order mark (some editors write one)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _decode_error(path, data, error) from None
    return text[1:] if text.startswith("\ufeff") else text


def _file_lines(path: PathLike) -> list[str]:
    """Lines of one file: split on ``\\n`` only, each with a trailing ``\\r`` removed.

    Splitting on ``\\n`` alone (not str.splitlines) keeps line numbers equal to
    what ``wc -l`` and editors show: U+2028 or a form feed inside a sentence
    must not create a line.
    """
    text = _decode(path, _read_bytes(path))
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":  # a final newline ends the last line, it does not start one
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _as_paths(paths: PathLike | Sequence[PathLike]) -> list[PathLike]:
    if isinstance(paths, (str, os.PathLike)):
        return [paths]
    paths = list(paths)
    if not paths:
        raise DataError("no files given")
    return paths


def read_lines(paths: PathLike | Sequence[PathLike]) -> list[str]:
    """Read the lines of one or more files, in order, newlines and ``\\r`` stripped.

    Args:
        paths: a file or a sequence of files, plain or gzip-compressed UTF-8.

    Raises:
        DataError: a file is missing, a directory, corrupt gzip, or invalid UTF-8
            (the message names file and line).
    """
    lines: list[str] = []
    for path in _as_paths(paths):
        lines.extend(_file_lines(path))
    return lines


def read_stream_lines(stream: BinaryIO, name: str = "standard input") -> Iterator[str]:
    """The lines of a binary stream as they arrive, newlines and ``\r`` stripped.

    Raises:
        DataError: a line is not UTF-8 text (the message names ``name`` and the line).
    """
    for number, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataError(f"{name}, line {number}: not UTF-8 text (byte {error.start + 1} of the line)") from None
        yield line.rstrip("\r\n")


def read_text(paths: PathLike | Sequence[PathLike]) -> str:
    """Read the whole text of one or more files, for character or contiguous-token models.

    Files are joined in order; a newline is inserted after a file that does not
    end with one, so its last line does not run into the next file's first.
    ``\\r\\n`` becomes ``\\n`` (a Windows file must not teach a model ``\\r``).

    Args:
        paths: a file or a sequence of files, plain or gzip-compressed UTF-8.

    Raises:
        DataError: as :func:`read_lines`, and for a file with no text at all.
    """
    parts = []
    for path in _as_paths(paths):
        if parts and not parts[-1].endswith("\n"):
            parts.append("\n")
        text = _decode(path, _read_bytes(path)).replace("\r\n", "\n")
        if not text:
            raise DataError("file is empty", path)
        parts.append(text)
    return "".join(parts)


def read_parallel(
    src_path: PathLike,
    tgt_path: PathLike,
    *,
    max_length: int | None = None,
    length: Callable[[str], int] = len,
) -> ParallelCorpus:
    """Read aligned source and target files, one sentence per line.

    Line ``i`` of ``src_path`` is the translation of line ``i`` of ``tgt_path``.
    A pair is skipped (and counted in ``stats``) when either side is empty or
    whitespace-only, or when either side is longer than ``max_length``.

    Length is measured by ``length``: characters by default; pass
    ``lambda s: len(s.split())`` for words or ``lambda s: len(tok.encode(s))``
    for tokens of a trained tokenizer. (The tokenizer is usually trained on
    this very corpus, so a token filter is applied in a second call once it exists.)

    Args:
        src_path, tgt_path: plain or gzip-compressed UTF-8 files.
        max_length: keep pairs whose sides both have ``length(side) <= max_length``;
            ``None`` (default) keeps every non-empty pair.
        length: the measure for ``max_length``. Default: ``len`` (characters).

    Raises:
        DataError: a file is missing, empty, not UTF-8 (names file and line), or
            the two files have different numbers of lines (names both and both counts).
    """
    if max_length is not None and max_length < 1:
        raise ValueError(f"max_length must be a positive integer or None, got {max_length}")
    source_lines = _file_lines(src_path)
    target_lines = _file_lines(tgt_path)
    for path, lines in ((src_path, source_lines), (tgt_path, target_lines)):
        if not lines:
            raise DataError("file is empty (0 lines), expected one sentence per line", path)
    if len(source_lines) != len(target_lines):
        raise DataError(
            f"line counts differ: {os.fspath(src_path)} has {len(source_lines)} lines, "
            f"{os.fspath(tgt_path)} has {len(target_lines)}; line i of one must translate line i "
            "of the other",
            src_path,
        )
    source, target, numbers = [], [], []
    empty = too_long = 0
    for number, (src, tgt) in enumerate(zip(source_lines, target_lines), start=1):
        if not src.strip() or not tgt.strip():
            empty += 1
        elif max_length is not None and (length(src) > max_length or length(tgt) > max_length):
            too_long += 1
        else:
            source.append(src)
            target.append(tgt)
            numbers.append(number)
    stats = ReadStats(lines=len(source_lines), kept=len(source), empty=empty, too_long=too_long)
    return ParallelCorpus(source, target, numbers, stats)

