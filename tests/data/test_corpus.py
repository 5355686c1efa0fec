"""Tests of mlxseq/data/corpus.py: parallel and plain readers, and their file:line errors."""

import gzip

import pytest

from mlxseq.data.corpus import DataError, MissingFileError, read_lines, read_parallel, read_text


def write(path, text, *, compress=False):
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def test_reads_aligned_pairs_and_strips_newlines_and_carriage_returns(tmp_path):
    src = write(tmp_path / "a.en", "one\r\ntwo  spaced \nthree")  # no final newline
    tgt = write(tmp_path / "a.de", "eins\nzwei\r\ndrei\n")
    corpus = read_parallel(src, tgt)
    assert corpus.source == ["one", "two  spaced ", "three"]
    assert corpus.target == ["eins", "zwei", "drei"]
    assert list(corpus.pairs())[1] == ("two  spaced ", "zwei")
    assert corpus.line_numbers == [1, 2, 3]


def test_mismatched_line_counts_name_both_files_and_counts(tmp_path):
    src = write(tmp_path / "train.en", "a\nb\nc\n")
    tgt = write(tmp_path / "train.de", "x\ny\n")
    with pytest.raises(DataError) as caught:
        read_parallel(src, tgt)
    message = str(caught.value)
    assert f"{src} has 3 lines" in message
    assert f"{tgt} has 2" in message


def test_gzip_is_detected_by_content_not_suffix(tmp_path):
    src = write(tmp_path / "src.en.gz", "ein Haus\nzwei\n", compress=True)
    tgt = write(tmp_path / "tgt_without_suffix", "a house\ntwo\n", compress=True)
    plain_named_gz = write(tmp_path / "plain.gz", "ein Haus\nzwei\n")
    assert read_parallel(src, tgt).source == ["ein Haus", "zwei"]
    assert read_parallel(src, tgt).target == ["a house", "two"]
    assert read_lines(plain_named_gz) == ["ein Haus", "zwei"]


def test_empty_and_whitespace_pairs_are_skipped_and_counted(tmp_path):
    src = write(tmp_path / "s", "a\n\n   \nd\ne\n")
    tgt = write(tmp_path / "t", "A\nB\nC\n\t\nE\n")
    corpus = read_parallel(src, tgt)
    assert corpus.source == ["a", "e"]
    assert corpus.target == ["A", "E"]
    assert corpus.line_numbers == [1, 5]
    assert (corpus.stats.lines, corpus.stats.kept, corpus.stats.empty, corpus.stats.too_long) == (5, 2, 3, 0)


def test_max_length_counts_characters_by_default_or_uses_the_given_measure(tmp_path):
    src = write(tmp_path / "s", "a b c\nabcdefgh\nx\n")
    tgt = write(tmp_path / "t", "x\ny\nz y x w\n")
    by_chars = read_parallel(src, tgt, max_length=5)
    assert by_chars.source == ["a b c"]
    assert by_chars.stats.too_long == 2
    by_words = read_parallel(src, tgt, max_length=3, length=lambda s: len(s.split()))
    assert by_words.source == ["a b c", "abcdefgh"]
    assert by_words.stats.too_long == 1


@pytest.mark.parametrize("compress", [False, True])
def test_invalid_utf8_names_file_and_line(tmp_path, compress):
    src = write(tmp_path / "s", b"good\nalso good\nbad \xff byte\n", compress=compress)
    tgt = write(tmp_path / "t", "1\n2\n3\n")
    with pytest.raises(DataError) as caught:
        read_parallel(src, tgt)
    assert str(caught.value).startswith(f"{src}:3: invalid UTF-8")
    assert "column 5" in str(caught.value)
    assert caught.value.line == 3


def test_missing_file_is_named(tmp_path):
    tgt = write(tmp_path / "t", "1\n")
    missing = tmp_path / "nope.en"
    with pytest.raises(MissingFileError, match="nope.en: no such file"):
        read_parallel(missing, tgt)
    with pytest.raises(FileNotFoundError):
        read_text(missing)


def test_empty_file_is_an_error_naming_it(tmp_path):
    src = write(tmp_path / "empty.en", "")
    tgt = write(tmp_path / "t.de", "")
    with pytest.raises(DataError, match=r"empty\.en: file is empty"):
        read_parallel(src, tgt)
    with pytest.raises(DataError, match=r"empty\.en: file is empty"):
        read_text(src)


def test_corrupt_gzip_is_named(tmp_path):
    broken = write(tmp_path / "broken.gz", gzip.compress(b"a\n" * 1000)[:20])
    with pytest.raises(DataError, match=r"broken\.gz: corrupt or truncated gzip"):
        read_lines(broken)


def test_lines_split_on_newline_only(tmp_path):
    path = write(tmp_path / "s", "a\u2028b\x0cc\nsecond\n")
    assert read_lines(path) == ["a\u2028b\x0cc", "second"]


def test_read_text_joins_files_keeping_their_lines_apart(tmp_path):
    first = write(tmp_path / "1.txt", "First:\r\nHello", compress=True)
    second = write(tmp_path / "2.txt", "World\n")
    assert read_text([first, second]) == "First:\nHello\nWorld\n"
    assert read_text(first) == "First:\nHello"
    assert read_lines([first, second]) == ["First:", "Hello", "World"]


def test_read_text_invalid_utf8_names_file_and_line(tmp_path):
    good = write(tmp_path / "good.txt", "fine\n")
    bad = write(tmp_path / "bad.txt", b"line one\nline two\nthree \xc3\x28\n")
    with pytest.raises(DataError) as caught:
        read_text([good, bad])
    assert str(caught.value).startswith(f"{bad}:3:")
