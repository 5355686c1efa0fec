"""Public corpora that some tests read, found where a user or CI keeps them, or the test skips saying how to get them.

A corpus is looked for under ``$MLXSEQ_DATA`` (the data root the configs use),
then under ``../shared/data`` beside the repository. Tests that can make their
data do so instead; these few measure a bundled model or a real corpus.
"""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

SOURCES = {
    "multi30k": "https://github.com/multi30k/dataset (data/task1/raw/*.gz) into multi30k/raw/",
    "tinyshakespeare": "https://github.com/karpathy/char-rnn (data/tinyshakespeare/input.txt) into tinyshakespeare/",
    "fsdd": "https://github.com/Jakobovski/free-spoken-digit-dataset (recordings/, packed as recordings.tar.gz) into fsdd/",
}


def data_roots() -> list[Path]:
    roots = [Path(os.environ["MLXSEQ_DATA"])] if os.environ.get("MLXSEQ_DATA") else []
    return roots + [REPO.parent / "shared" / "data"]


def find_corpus_file(relative: str) -> Path | None:
    """The first existing ``ROOT/relative`` over :func:`data_roots`, or None."""
    for root in data_roots():
        if (root / relative).exists():
            return root / relative
    return None


def corpus_file(relative: str) -> Path:
    """``ROOT/relative`` for the first data root that has it; skips the test naming the file and its source."""
    found = find_corpus_file(relative)
    if found is None:
        corpus = relative.split("/")[0]
        pytest.skip(f"{relative} is not under {' or '.join(map(str, data_roots()))}: "
                    f"get it from {SOURCES.get(corpus, 'its public source')} and set MLXSEQ_DATA to that folder")
    return found
