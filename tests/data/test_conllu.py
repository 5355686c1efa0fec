"""Tests of mlxseq/data/conllu.py: comments, multi-word tokens, empty nodes, file:line errors."""

import pytest

from mlxseq.data import DataError
from mlxseq.data.conllu import format_conllu, read_conllu


def row(*fields):
    return "\t".join(fields)


SAMPLE = "\n".join([
    "# sent_id = a-1",
    "# text = I don't know.",
    row("1", "I", "I", "PRON", "PRP", "_", "4", "nsubj", "_", "_"),
    row("2-3", "don't", "_", "_", "_", "_", "_", "_", "_", "_"),
    row("2", "do", "do", "AUX", "VBP", "_", "4", "aux", "_", "_"),
    row("3", "n't", "not", "PART", "RB", "_", "4", "advmod", "_", "_"),
    row("4", "know", "know", "VERB", "VB", "_", "0", "root", "_", "SpaceAfter=No"),
    row("4.1", "knows", "know", "VERB", "VBZ", "_", "_", "_", "4:conj", "_"),
    row("5", ".", ".", "PUNCT", ".", "_", "4", "punct", "_", "_"),
    "",
    "# sent_id = a-2",
    row("1", "Yes", "yes", "INTJ", "UH", "_", "0", "root", "_", "_"),
]) + "\n"  # the last sentence has no closing blank line


def test_words_and_tags_skip_ranges_and_empty_nodes(tmp_path):
    path = tmp_path / "a.conllu"
    path.write_text(SAMPLE)
    first, second = read_conllu(path)
    assert first.words == ["I", "do", "n't", "know", "."] and first.tags == ["PRON", "AUX", "PART", "VERB", "PUNCT"]
    assert first.comments == ["sent_id = a-1", "text = I don't know."] and first.line == 1
    assert first.lines == [3, 5, 6, 7, 9]
    assert second.words == ["Yes"] and second.tags == ["INTJ"] and second.line == 11
    assert read_conllu(path, "xpos")[0].tags == ["PRP", "VBP", "RB", "VB", "."]
    assert read_conllu(path, None)[0].tags is None


def test_format_round_trips(tmp_path):
    path = tmp_path / "b.conllu"
    path.write_text(format_conllu(["Hi", "there"], ["INTJ", "ADV"], comments=["sent_id = 7"]))
    (sentence,) = read_conllu(path)
    assert sentence.words == ["Hi", "there"] and sentence.tags == ["INTJ", "ADV"] and sentence.comments == ["sent_id = 7"]


@pytest.mark.parametrize("lines, line, message", [
    ([row("1", "a", "a", "X", "_", "_", "0", "root", "_")], 1, "expected 10 tab-separated columns"),
    ([row("1", "a", "a", "X", "_", "_", "0", "root", "_", "_"), row("3", "b", "b", "X", "_", "_", "1", "dep", "_", "_")],
     2, "ID 3 out of sequence: expected 2"),
    ([row("x", "a", "a", "X", "_", "_", "0", "root", "_", "_")], 1, "bad ID 'x'"),
    (["# only a comment", "", row("1", "a", "a", "X", "_", "_", "0", "root", "_", "_")], 1, "sentence without words"),
    ([row("1", "a", "a", "_", "_", "_", "0", "root", "_", "_")], 1, "word 1 has no UPOS tag"),
])
def test_malformed_input_names_file_and_line(tmp_path, lines, line, message):
    path = tmp_path / "bad.conllu"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message) as caught:
        read_conllu(path)
    assert str(caught.value).startswith(f"{path}:{line}:")


def test_a_file_without_sentences(tmp_path):
    (tmp_path / "e.conllu").write_text("\n\n")
    with pytest.raises(DataError, match="no sentences"):
        read_conllu(tmp_path / "e.conllu")
