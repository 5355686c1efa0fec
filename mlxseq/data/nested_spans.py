"""Labelled texts that are token spans of longer labelled texts (phrase-level treebanks such as SST).

A corpus like GLUE SST-2 labels every sentence and many of its phrases, each phrase a line of
its own. :func:`nested_spans` finds, for each *root* (a text inside no longer text), the
training examples whose tokens occur as a contiguous span of it, so a model can learn each
phrase's label from the root's states in context instead of reading the phrase alone::

    texts:  "a fine film"  "fine film"  "fine"  "dull"
    roots:  "a fine film"  -> spans [0, 3) "a fine film", [1, 3) "fine film", [1, 2) "fine"
            "dull"         -> spans [0, 1) "dull"

Texts are compared token by token (whitespace words, after the same lowercasing the model
uses). Every example keeps its own label: a text given twice is two spans of the same
positions, and a phrase inside several roots is a span of each of them. Roots are cut to
``max_length`` tokens as the model's inputs are (a cut root's own label goes to the tokens
kept, as it would for the text alone); a text is covered only by spans that lie within those
tokens, else it is a root of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SpanTable:
    """``roots[r]`` is the example whose (cut) tokens root r reads; ``spans[r]`` is an int64
    ``(S_r, 3)`` array of ``(start, end, example)`` rows: that example's text is the root's
    tokens ``[start, end)``. Rows are sorted by start, then end, then example."""

    roots: list[int]
    spans: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.roots)

    @property
    def num_spans(self) -> int:
        return sum(len(s) for s in self.spans)


def nested_spans(tokens: list[list[str]], max_length: int | None = None) -> SpanTable:
    """The roots of the tokenised texts ``tokens`` and the labelled spans of each (see above).

    Roots are taken longest first (ties in input order); empty texts are left out.
    """
    examples: dict[tuple[str, ...], list[int]] = {}
    for index, words in enumerate(tokens):
        if words:
            examples.setdefault(tuple(words), []).append(index)
    covered: set[tuple[str, ...]] = set()
    roots, spans = [], []
    for text in sorted(examples, key=lambda t: -len(t)):  # sorted() is stable: ties keep input order
        if text in covered:
            continue
        words = text[:max_length] if max_length else text
        rows = []
        for start in range(len(words)):
            for end in range(start + 1, len(words) + 1):
                found = examples.get(words[start:end])
                if found is not None:
                    covered.add(words[start:end])
                    rows.extend((start, end, example) for example in found)
        if len(words) < len(text):  # a cut root's own label is that of its first max_length tokens
            rows.extend((0, len(words), example) for example in examples[text])
        roots.append(examples[text][0])
        spans.append(np.array(sorted(rows), dtype=np.int64).reshape(-1, 3))
    return SpanTable(roots, spans)
