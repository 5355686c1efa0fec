"""Tests of mlxseq/data/labelled.py: TSV examples, headers, multi-label, file:line errors."""

import gzip

import pytest

from mlxseq.data import DataError
from mlxseq.data.labelled import read_labelled


def test_glue_style_file_with_header_and_trailing_spaces(tmp_path):
    path = tmp_path / "dev.tsv.gz"
    path.write_bytes(gzip.compress(b"sentence\tlabel\nit 's a charming journey . \t1\n\nunflinchingly bleak \t0\n"))
    corpus = read_labelled(path)
    assert corpus.texts == ["it 's a charming journey .", "unflinchingly bleak"]
    assert corpus.labels == [["1"], ["0"]] and corpus.line_numbers == [2, 4]


def test_header_setting_and_multi_label(tmp_path):
    path = tmp_path / "tags.tsv"
    path.write_text("first text\tsports,news\nsecond\tnews\n")
    assert read_labelled(path, header=True).texts == ["second"]
    corpus = read_labelled(path, label_separator=",")
    assert corpus.labels == [["sports", "news"], ["news"]]


@pytest.mark.parametrize("content, line, message", [
    ("good\t1\nno tab here\n", 2, "expected text<TAB>label, found no tab"),
    ("a\tb\tc\n", 1, "found 3 tab-separated fields"),
    ("ok\t1\n \t0\n", 2, "empty text before the tab"),
    ("ok\t\n", 1, "empty label"),
])
def test_malformed_lines_name_file_and_line(tmp_path, content, line, message):
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as caught:
        read_labelled(path)
    assert str(caught.value).startswith(f"{path}:{line}:")


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.tsv").write_text("sentence\tlabel\n")
    with pytest.raises(DataError, match="no examples"):
        read_labelled(tmp_path / "empty.tsv")
    with pytest.raises(DataError, match="no such file"):
        read_labelled(tmp_path / "missing.tsv")
