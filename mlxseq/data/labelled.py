"""Labelled text for classification: TSV files of ``text<TAB>label``, with file:line errors.

Each line is one example: the text, a tab, the label (or several labels joined by
``label_separator`` for multi-label data). A first line whose label field is
``label`` or ``labels`` is a header (GLUE's ``sentence<TAB>label``) and is
skipped; blank lines are skipped. Files are UTF-8, plain or gzip.

Public API::

    read_labelled(path, *, header="auto", label_separator=None) -> LabelledCorpus
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mlxseq.data.corpus import DataError, PathLike, _file_lines

HEADER_LABELS = ("label", "labels")


@dataclass
class LabelledCorpus:
    """Examples of one file.

    Attributes:
        texts: the texts, surrounding whitespace stripped.
        labels: the labels of each example (one for single-label data).
        line_numbers: the 1-based line of each example in the file.
        path: the file read.
    """

    texts: list[str] = field(repr=False)
    labels: list[list[str]] = field(repr=False)
    line_numbers: list[int] = field(repr=False)
    path: str = ""

    def __len__(self) -> int:
        return len(self.texts)


# A config's or the command line's ``header`` option -> read_labelled's ``header`` argument.
HEADER_OPTIONS = {"auto": "auto", "skip": True, "none": False}


def read_labelled(
    path: PathLike,
    *,
    header: bool | Literal["auto"] = "auto",
    label_separator: str | None = None,
) -> LabelledCorpus:
    """Read a ``text<TAB>label`` file.

    Args:
        path: plain or gzip-compressed UTF-8 file.
        header: True skips the first line, False reads it as an example, ``"auto"``
            skips it when its label field is ``label`` or ``labels``.
        label_separator: split the label field into several labels (multi-label data),
            e.g. ``","``; None: the whole field is one label.

    Raises:
        DataError: missing file, bad UTF-8, a line without exactly one tab, an empty
            text or label (the message names file and line), or a file without examples.
    """
    lines = _file_lines(path)
    texts, labels, numbers = [], [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if number == 1 and header is not False:
            if header is True or (len(fields) == 2 and fields[1].strip().lower() in HEADER_LABELS):
                continue
        if len(fields) != 2:
            found = "no tab" if len(fields) == 1 else f"{len(fields)} tab-separated fields"
            raise DataError(f"expected text<TAB>label, found {found}", path, number)
        text, field_ = fields[0].strip(), fields[1].strip()
        if not text:
            raise DataError("empty text before the tab", path, number)
        parts = field_.split(label_separator) if label_separator else [field_]
        parts = [p.strip() for p in parts]
        if not field_ or not all(parts):
            raise DataError(f"empty label in {field_!r}", path, number)
        texts.append(text)
        labels.append(parts)
        numbers.append(number)
    if not texts:
        raise DataError("no examples (expected lines of text<TAB>label)", path)
    return LabelledCorpus(texts, labels, numbers, str(path))
