"""Tag words with a ``tagger`` model folder: one tag per word, and token accuracy / entity F1.

    tagger = SequenceTagger.load("path/or/owner-repo")     # model, vocabularies, tag names
    tagger.tag([["I", "saw", "her", "."]])                 # -> [["PRON", "VERB", "PRON", "PUNCT"]]
    tagger.evaluate(sentences, gold_tags)                  # -> {"accuracy", ("entity_f1"), "loss"}

A folder holds the model, ``tokenizer.json`` (words), ``chars.json`` (characters, when
the model spells words) and ``labels.json`` (tag names, lowercasing, characters per word).
Sentences are sorted by length into batches; results come back in input order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import mlx.core as mx
import numpy as np

from mlxseq.checkpoint import check_sizes, load_with_tokenizer
from mlxseq.pipelines.classifier import TextSettings, length_batches
from mlxseq.data import (
    CHARS_NAME, PAD_ID, UNK_ID, CharTokenizer, WordTokenizer, batch_spellings, padded_length, read_chars, spell,
)
from mlxseq.layers.activations import log_softmax
from mlxseq.scores import accuracy, entity_f1, is_bio


class WordEncoder:
    """Sentences of words to the padded arrays a tagger reads: words, lengths (and the spellings)."""

    def __init__(self, words: WordTokenizer, chars: CharTokenizer | None, settings: TextSettings):
        self.words, self.chars, self.settings = words, chars, settings
        self.word_index = {t: i for i, t in enumerate(words.tokens)}
        self.char_index = {t: i for i, t in enumerate(chars.tokens)} if chars else {}

    def word_ids(self, sentence: Sequence[str]) -> list[int]:
        lower = self.settings.lowercase
        return [self.word_index.get(w.lower() if lower else w, UNK_ID) for w in sentence]

    def char_ids(self, sentence: Sequence[str]) -> list[list[int]]:
        return [spell(w, self.char_index, self.settings.max_word_chars) for w in sentence]

    def batch(self, words: list[list[int]], chars: list[list[list[int]]] | None, multiple: int = 8):
        """``(words (B, T), lengths (B,))``, then ``chars (U, C), char_lengths (U,), spelling_ids (B, T)``
        when the tagger spells words (:func:`mlxseq.data.batch_spellings`)."""
        B, T = len(words), padded_length(max(len(w) for w in words), multiple)
        word_array = np.full((B, T), PAD_ID, dtype=np.int32)
        lengths = np.array([len(w) for w in words], dtype=np.int32)
        for b, ids in enumerate(words):
            word_array[b, : len(ids)] = ids
        if chars is None:
            return mx.array(word_array), mx.array(lengths)
        return (mx.array(word_array), mx.array(lengths), *batch_spellings(chars, T, self.settings.max_word_chars))

    def encode(self, sentences: list[Sequence[str]], multiple: int = 8):
        chars = [self.char_ids(s) for s in sentences] if self.chars else None
        return self.batch([self.word_ids(s) for s in sentences], chars, multiple)


def _read_vocabularies(folder):
    return WordTokenizer.load(folder), read_chars(folder)


class SequenceTagger:
    """A ``tagger`` model with its vocabularies and tag names."""

    def __init__(self, model, encoder: WordEncoder, folder: Path | None = None):
        self.model, self.encoder, self.folder = model, encoder, folder
        self.tags = encoder.settings.labels
        self.model.eval()

    @classmethod
    def load(cls, path_or_repo, revision: str | None = None) -> "SequenceTagger":
        model, (words, chars), folder = load_with_tokenizer(
            path_or_repo, "tagger", _read_vocabularies, bundled=Path(__file__).parents[1] / "bundled" / "tagger",
            job="tagging", revision=revision,
        )
        settings = TextSettings.load(folder)
        sizes = {"tokenizer.json words": (words.vocab_size, model.args.vocab_size),
                 f"{CHARS_NAME}.json characters": (chars.vocab_size if chars else 0, model.args.char_vocab_size),
                 "labels.json tags": (len(settings.labels), model.args.num_tags)}
        check_sizes(folder, sizes)
        return cls(model, WordEncoder(words, chars, settings), folder)

    def _emissions(self, sentences, batch_size):
        """``(indices, emissions (B, T, K), lengths)`` per length-sorted batch."""
        for indices in length_batches([len(s) for s in sentences], batch_size):
            batch = self.encoder.encode([sentences[i] for i in indices])
            yield indices, batch, self.model.emissions(*batch)

    def predict(self, sentences: list[Sequence[str]], batch_size: int = 64) -> list[list[str]]:
        """The pipelines' common name for :meth:`tag`."""
        return self.tag(sentences, batch_size)

    def tag(self, sentences: list[Sequence[str]], batch_size: int = 64) -> list[list[str]]:
        """The tags of each sentence's words (argmax, or Viterbi with a CRF); empty sentences get none."""
        found: list[list[str]] = [[] for _ in sentences]
        kept = [i for i, s in enumerate(sentences) if len(s)]
        for indices, batch, emissions in self._emissions([sentences[i] for i in kept], batch_size):
            ids = self.model.crf.decode(emissions, batch[1])[0] if self.model.args.crf else \
                [row[:n].tolist() for row, n in zip(np.array(mx.argmax(emissions, axis=-1)), np.array(batch[1]))]
            for i, row in zip(indices, ids):
                found[kept[i]] = [self.tags[t] for t in row]
        return found

    def evaluate(self, sentences: list[Sequence[str]], gold: list[Sequence[str]], batch_size: int = 64) -> dict:
        """Token accuracy (percent, every word), entity F1 where the tags are BIO, and the loss per word."""
        index = {t: i for i, t in enumerate(self.tags)}
        unknown = sorted({t for tags in gold for t in tags if t not in index})
        if unknown:
            raise ValueError(f"tag {unknown[0]!r} is not one of the model's tags {self.tags}")
        total = 0.0
        for indices, batch, emissions in self._emissions(sentences, batch_size):
            lengths = batch[1]
            target = np.zeros(emissions.shape[:2], dtype=np.int32)
            for row, i in enumerate(indices):
                target[row, : len(gold[i])] = [index[t] for t in gold[i]]
            if self.model.args.crf:
                total += float(self.model.crf.neg_log_likelihood(emissions, mx.array(target), lengths).sum())
            else:
                nll = -mx.take_along_axis(log_softmax(emissions), mx.array(target)[..., None], axis=-1)[..., 0]
                mask = mx.arange(emissions.shape[1])[None, :] < lengths[:, None]
                total += float(mx.where(mask, nll, 0.0).sum())
        predicted = self.tag(sentences, batch_size)
        flat_predicted = [t for tags in predicted for t in tags]
        flat_gold = [t for tags in gold for t in tags]
        scores = {"loss": total / len(flat_gold), "accuracy": accuracy(flat_predicted, flat_gold)}
        if is_bio(self.tags):
            scores["entity_f1"] = entity_f1(predicted, gold)["f1"]
        decoding = "Viterbi (CRF)" if self.model.args.crf else "argmax"
        scores["settings"] = f"{len(flat_gold)} words in {len(sentences)} sentences, gold tokenisation, {decoding}"
        return scores
