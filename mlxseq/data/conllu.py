"""CoNLL-U (Universal Dependencies) sentences for tagging: words and their UPOS or XPOS tags.

A sentence is a block of ``#`` comment lines and one line per token with ten
tab-separated columns (ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC),
ended by a blank line. Only syntactic words are read: multi-word token ranges
(``3-4``, e.g. "don't" over do + n't) and empty nodes (``8.1``) are skipped, as
UD's tagging evaluation does. Errors name file and line.

Public API::

    read_conllu(path, tag_column="upos") -> list[Sentence]
    format_conllu(words, tags=None, tag_column="upos", comments=()) -> str   # one block
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Literal, Sequence

from mlxseq.data.corpus import DataError, PathLike, _file_lines

COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")
TAG_COLUMNS = ("upos", "xpos")
_RANGE = re.compile(r"^[1-9][0-9]*-[1-9][0-9]*$")
_EMPTY_NODE = re.compile(r"^[0-9]+\.[1-9][0-9]*$")


@dataclass
class Sentence:
    """One sentence's syntactic words.

    Attributes:
        words: FORM of each word.
        tags: the tag column of each word, or None when read without tags.
        line: the 1-based line where the sentence's block starts.
        comments: its ``#`` lines, without the ``#`` and the space after it.
        lines: the line of each word.
    """

    words: list[str]
    tags: list[str] | None
    line: int
    comments: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list, repr=False)


def read_conllu(path: PathLike, tag_column: Literal["upos", "xpos"] | None = "upos") -> list[Sentence]:
    """Read the sentences of a CoNLL-U file (plain or gzip UTF-8).

    Args:
        tag_column: ``"upos"`` or ``"xpos"``; each word must have one (not ``_``).
            None reads words only (text to tag).

    Raises:
        DataError: a token line without 10 columns, a malformed or out-of-order ID,
            an empty FORM, a missing tag, or a file without sentences (file and line named).
    """
    if tag_column is not None and tag_column not in TAG_COLUMNS:
        raise ValueError(f"tag_column must be one of {TAG_COLUMNS} or None, got {tag_column!r}")
    column = None if tag_column is None else COLUMNS.index(tag_column)
    sentences: list[Sentence] = []
    current: Sentence | None = None
    for number, line in enumerate(_file_lines(path), start=1):
        if not line.strip():
            if current is not None:
                if not current.words:
                    raise DataError("sentence without words (only comments)", path, current.line)
                sentences.append(current)
            current = None
            continue
        if current is None:
            current = Sentence([], None if column is None else [], number)
        if line.startswith("#"):
            current.comments.append(line[1:].strip())
            continue
        fields = line.split("\t")
        if len(fields) != len(COLUMNS):
            raise DataError(f"expected 10 tab-separated columns (ID FORM ... MISC), got {len(fields)}", path, number)
        word_id = fields[0]
        if _RANGE.match(word_id) or _EMPTY_NODE.match(word_id):
            continue  # multi-word token ranges and empty nodes are not syntactic words
        if not word_id.isdigit():
            raise DataError(f"bad ID {word_id!r}: expected an integer, a range n-m or an empty node n.k", path, number)
        if int(word_id) != len(current.words) + 1:
            raise DataError(f"ID {word_id} out of sequence: expected {len(current.words) + 1}", path, number)
        if not fields[1]:
            raise DataError("empty FORM", path, number)
        current.words.append(fields[1])
        current.lines.append(number)
        if column is not None:
            tag = fields[column]
            if not tag or tag == "_":
                raise DataError(f"word {word_id} has no {tag_column.upper()} tag ({tag!r})", path, number)
            current.tags.append(tag)
    if current is not None:
        if not current.words:
            raise DataError("sentence without words (only comments)", path, current.line)
        sentences.append(current)  # a last sentence without the closing blank line
    if not sentences:
        raise DataError("no sentences in this CoNLL-U file", path)
    return sentences


def format_conllu(
    words: Sequence[str],
    tags: Sequence[str] | None = None,
    tag_column: Literal["upos", "xpos"] = "upos",
    comments: Iterable[str] = (),
) -> str:
    """One sentence as a CoNLL-U block (ending with its blank line); unknown columns are ``_``."""
    if tags is not None and len(tags) != len(words):
        raise ValueError(f"{len(words)} words but {len(tags)} tags")
    lines = [f"# {c}" for c in comments]
    for i, word in enumerate(words):
        row = [str(i + 1), word] + ["_"] * 8
        if tags is not None:
            row[COLUMNS.index(tag_column)] = tags[i]
        lines.append("\t".join(row))
    return "\n".join(lines) + "\n\n"
