"""Classify text with a ``classifier`` model folder: labels with probabilities, and scores.

    classifier = TextClassifier.load("path/or/owner-repo")   # model, tokenizer, labels
    classifier.predict(["a gorgeous , witty film ."])        # -> [Prediction(labels=["1"], probability=0.97)]
    classifier.evaluate(texts, gold_labels)                  # -> {"accuracy", "macro_f1", "loss", ...}
    ensemble = ClassifierEnsemble.load(["runs/a/best", "runs/b/best"])   # the same, averaging models

A folder holds the model, its tokenizer and ``labels.json`` (the label names in class
order and how texts were prepared: lowercasing, the token limit), and ``chars.json`` when
the model also spells each word with a character encoder. Texts are sorted by
length into batches and results come back in input order; texts longer than the limit
are cut to their first ``max_length`` tokens, as in training.

An ensemble's class probabilities are the mean of its members' (each reads the text with
its own tokenizer and settings); members must have the same labels in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlxseq.checkpoint import (
    ModelFolderError, check_sizes, load_with_tokenizer, read_folder_settings, write_folder_settings,
)
from mlxseq.data import (
    CHARS_NAME, UNK_ID, WordTokenizer, batch_spellings, load_tokenizer, pad_batch, read_chars, spell,
)
from mlxseq.layers import count_parameters
from mlxseq.scores import accuracy, macro_f1, multi_label_scores

LABELS_FILE = "labels.json"


@dataclass
class TextSettings:
    """How a folder's model reads text: its label names and text preparation (``labels.json``)."""

    labels: list[str]  # label names; index = class id (tags for a tagger)
    lowercase: bool = False  # lowercase texts (words, for a tagger) before the tokenizer
    max_length: int = 0  # classifier: texts are cut to this many tokens; 0 = no limit
    max_word_chars: int = 0  # characters spelled per word (first and last ones of longer words); 0: no spelling
    tag_column: str = ""  # tagger: the CoNLL-U column it predicts (upos or xpos)

    def save(self, folder) -> None:
        write_folder_settings(folder, LABELS_FILE, self)

    @classmethod
    def load(cls, folder) -> "TextSettings":
        return read_folder_settings(folder, LABELS_FILE, cls, "a labels file")


@dataclass
class Prediction:
    labels: list[str]  # the predicted label (one), or every label over the threshold (multi-label)
    probability: float  # of the label (single-label), or of the most likely label (multi-label)
    probabilities: list[float]  # of every label, in the order of TextSettings.labels


def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices sorted by length, cut into batches of ``batch_size``: little padding, few shapes."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def read_tokenizers(folder) -> tuple:
    """``(tokenizer, chars or None)`` of a classifier folder: ``chars.json`` when its model spells words."""
    return load_tokenizer(folder), read_chars(folder)


class TextClassifier:
    """A ``classifier`` model with its tokenizer, its character vocabulary if it spells words, and its labels."""

    def __init__(self, model, tokenizer, settings: TextSettings, folder: Path | None = None, chars=None):
        self.model, self.tokenizer, self.settings, self.folder, self.chars = model, tokenizer, settings, folder, chars
        self.char_index = {c: i for i, c in enumerate(chars.tokens)} if chars else {}
        self.model.eval()

    @classmethod
    def load(cls, path_or_repo, revision: str | None = None) -> "TextClassifier":
        model, (tokenizer, chars), folder = load_with_tokenizer(
            path_or_repo, "classifier", read_tokenizers, bundled=Path(__file__).parents[1] / "bundled" / "classifier",
            job="classification", revision=revision,
        )
        settings = TextSettings.load(folder)
        sizes = {"tokenizer ids": (tokenizer.vocab_size, model.args.vocab_size),
                 f"{CHARS_NAME}.json characters": (chars.vocab_size if chars else 0, model.args.char_vocab_size),
                 "labels in labels.json": (len(settings.labels), model.args.num_classes)}
        check_sizes(folder, sizes)
        if chars and (settings.max_word_chars < 1 or not isinstance(tokenizer, WordTokenizer)):
            raise ModelFolderError(f"{folder}: the model spells words, which needs a word tokenizer and max_word_chars "
                                   f"in {LABELS_FILE}; found a {type(tokenizer).__name__}, max_word_chars "
                                   f"{settings.max_word_chars}")
        return cls(model, tokenizer, settings, folder, chars)

    @property
    def multi_label(self) -> bool:
        return bool(self.model.args.multi_label)

    @property
    def parameters(self) -> int:
        return count_parameters(self.model)

    def _prepared(self, text: str) -> str:
        return text.lower() if self.settings.lowercase else text

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (at least one: ``<unk>`` for an empty text), cut to max_length."""
        ids = self.tokenizer.encode(self._prepared(text)) or [UNK_ID]
        return ids[: self.settings.max_length] if self.settings.max_length else ids

    def spell(self, text: str) -> list[list[int]]:
        """Character ids of each word of ``text`` (one per id of :meth:`encode`); models that spell words."""
        words = self._prepared(text).split() or [""]  # the word tokenizer's words; "" spells as <unk>
        words = words[: self.settings.max_length] if self.settings.max_length else words
        return [spell(w, self.char_index, self.settings.max_word_chars) for w in words]

    def batch(self, encoded: list[list[int]], spelled: list[list[list[int]]] | None, multiple: int = 8) -> tuple:
        """The model's inputs for a batch: ``(tokens (B, T), lengths (B,))``, then ``chars (U, C),
        char_lengths (U,), spelling_ids (B, T)`` when the model spells words (:func:`mlxseq.data.batch_spellings`)."""
        tokens, lengths = pad_batch(encoded, multiple=multiple)
        if not self.chars:
            return tokens, lengths
        return (tokens, lengths, *batch_spellings(spelled, tokens.shape[1], self.settings.max_word_chars))

    def probabilities(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Class probabilities ``(N, C)`` in input order."""
        encoded = [self.encode(t) for t in texts]
        spelled = [self.spell(t) for t in texts] if self.chars else None
        result = np.zeros((len(texts), len(self.settings.labels)), dtype=np.float64)
        for indices in length_batches([len(e) for e in encoded], batch_size):
            inputs = self.batch([encoded[i] for i in indices], [spelled[i] for i in indices] if spelled else None)
            result[indices] = np.array(self.model.probabilities(*inputs))
        return result

    def predict(self, texts: list[str], batch_size: int = 64, threshold: float = 0.5) -> list[Prediction]:
        """The label of each text with its probability; multi-label: labels over ``threshold``."""
        names = self.settings.labels
        found = []
        for p in self.probabilities(texts, batch_size):
            best = int(p.argmax())
            if self.multi_label:
                chosen = [names[c] for c in np.flatnonzero(p >= threshold)]
            else:
                chosen = [names[best]]
            found.append(Prediction(chosen, float(p[best]), [float(v) for v in p]))
        return found

    def evaluate(self, texts: list[str], gold: list[list[str]], batch_size: int = 64, threshold: float = 0.5) -> dict:
        """Accuracy and macro-F1 (percent) and the mean loss of ``texts`` against ``gold`` label lists."""
        self._check_labels(gold)
        return self.score(self.probabilities(texts, batch_size), gold, threshold)

    def _check_labels(self, gold: list[list[str]]) -> None:
        names = self.settings.labels
        unknown = sorted({g for labels in gold for g in labels if g not in names})
        if unknown:
            raise ValueError(f"label {unknown[0]!r} is not one of the model's labels {names}")

    def score(self, probabilities: np.ndarray, gold: list[list[str]], threshold: float = 0.5) -> dict:
        """:meth:`evaluate`'s scores of class probabilities ``(N, C)`` against ``gold`` label lists."""
        self._check_labels(gold)
        names = self.settings.labels
        index = {name: i for i, name in enumerate(names)}
        p = np.clip(probabilities, 1e-12, 1.0)
        if self.multi_label:
            target = np.zeros_like(p)
            for row, labels in enumerate(gold):
                target[row, [index[g] for g in labels]] = 1.0
            loss = -(target * np.log(p) + (1 - target) * np.log(np.clip(1 - p, 1e-12, 1.0))).sum(axis=1).mean()
            predicted = [{names[c] for c in np.flatnonzero(row >= threshold)} for row in p]
            scores = multi_label_scores(predicted, [set(g) for g in gold], names)
            how = f"multi-label, threshold {threshold}"
        else:
            gold_ids = [index[labels[0]] for labels in gold]
            loss = -np.log(p[np.arange(len(gold)), gold_ids]).mean()
            predicted = list(p.argmax(axis=1))
            scores = {"accuracy": accuracy(predicted, gold_ids), "macro_f1": macro_f1(predicted, gold_ids, range(len(names)))}
            how = "argmax"
        return {"loss": float(loss), **scores, "settings": f"{len(gold)} examples, {how}"}


class ClassifierEnsemble(TextClassifier):
    """Several classifier folders with the same labels used as one: the mean of their probabilities.

    ``predict`` and ``evaluate`` work as for one :class:`TextClassifier`; ``folder`` is the first
    member's, ``folders`` all of them.
    """

    def __init__(self, members: list[TextClassifier]):
        if not members:
            raise ValueError("an ensemble needs at least one classifier")
        first = members[0]
        for member in members[1:]:
            if member.settings.labels != first.settings.labels or member.multi_label != first.multi_label:
                raise ModelFolderError(
                    f"{member.folder} cannot join an ensemble with {first.folder}: its labels are {member.settings.labels}"
                    f"{' (multi-label)' if member.multi_label else ''}, those of {first.folder} are {first.settings.labels}"
                    f"{' (multi-label)' if first.multi_label else ''}"
                )
        self.members, self.settings, self.folder = members, first.settings, first.folder
        self.folders = [m.folder for m in members]

    @classmethod
    def load(cls, paths_or_repos, revision: str | None = None) -> "ClassifierEnsemble":
        return cls([TextClassifier.load(p, revision) for p in paths_or_repos])

    @property
    def multi_label(self) -> bool:
        return self.members[0].multi_label

    @property
    def parameters(self) -> int:
        return sum(m.parameters for m in self.members)

    def probabilities(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """The mean of the members' class probabilities ``(N, C)``, in input order."""
        return np.mean([m.probabilities(texts, batch_size) for m in self.members], axis=0)

    def evaluate(self, texts: list[str], gold: list[list[str]], batch_size: int = 64, threshold: float = 0.5) -> dict:
        scores = super().evaluate(texts, gold, batch_size, threshold)
        scores["settings"] += f", mean probabilities of {len(self.members)} models"
        return scores
