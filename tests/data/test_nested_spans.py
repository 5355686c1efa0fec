"""Tests of mlxseq/data/nested_spans.py: roots, their labelled spans, duplicates, the length cut."""

from mlxseq.data import nested_spans


def table_of(texts: list[str], max_length=None) -> list[tuple[str, list[tuple[str, int]]]]:
    """Each root's text with its spans as (span text, example index)."""
    tokens = [t.split() for t in texts]
    table = nested_spans(tokens, max_length)
    assert len(table.roots) == len(table.spans)
    out = []
    for root, spans in zip(table.roots, table.spans):
        words = tokens[root][:max_length] if max_length else tokens[root]
        out.append((" ".join(words), [(" ".join(words[i:j]), int(k)) for i, j, k in spans.tolist()]))
    return out


def test_phrases_become_spans_of_the_sentence_they_are_in():
    texts = ["fine", "a fine film", "dull", "fine film"]
    assert table_of(texts) == [
        ("a fine film", [("a fine film", 1), ("fine", 0), ("fine film", 3)]),  # sorted by start, then end
        ("dull", [("dull", 2)]),
    ]


def test_every_example_keeps_its_label_and_a_phrase_is_a_span_of_each_root_it_is_in():
    texts = ["the film is fine", "fine", "the plot is dull", "fine", "is"]
    roots = dict(table_of(texts))
    assert roots["the film is fine"] == [("the film is fine", 0), ("is", 4), ("fine", 1), ("fine", 3)]
    assert roots["the plot is dull"] == [("the plot is dull", 2), ("is", 4)]
    assert nested_spans([t.split() for t in texts]).num_spans == 6


def test_texts_match_whole_words_only():
    assert table_of(["finest film", "fine", "film"]) == [("finest film", [("finest film", 0), ("film", 2)]),
                                                         ("fine", [("fine", 1)])]


def test_roots_are_cut_to_max_length_like_the_models_inputs():
    texts = ["a b c d e", "d e", "b c", "a b c"]
    # "a b c d e" is cut to "a b c": its own label goes there (beside the example "a b c");
    # "d e" lies beyond the cut, so it is a root of its own.
    assert table_of(texts, max_length=3) == [
        ("a b c", [("a b c", 0), ("a b c", 3), ("b c", 2)]),
        ("d e", [("d e", 1)]),
    ]


def test_empty_texts_are_left_out():
    table = nested_spans([[], ["a"], []])
    assert table.roots == [1] and table.spans[0].tolist() == [[0, 1, 1]]
