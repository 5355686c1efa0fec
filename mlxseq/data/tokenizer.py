"""Tokenizers: text to ids and back, with four special tokens at fixed ids.

Every tokenizer here shares the special tokens and their ids, so models,
batching and decoding can rely on them without asking::

    <pad> = 0    padding; never produced by encode, dropped by decode
    <unk> = 1    anything outside the vocabulary
    <s>   = 2    beginning of sequence (decoder input starts with it)
    </s>  = 3    end of sequence (decoder target ends with it)

``encode`` never adds ``<s>``/``</s>``: batching adds them where a model needs them.

Implementations and their files in a model folder (``name`` defaults to ``tokenizer``)::

    SentencePieceTokenizer   <name>.model   subwords (BPE or unigram), for translation
    CharTokenizer            <name>.json    characters, for character language models
    WordTokenizer            <name>.json    whitespace-separated words, for word language models

:func:`load_tokenizer` reads any of them; :class:`TokenizerPair` holds the source
and target tokenizers of a translation model, joint (one shared vocabulary) or separate.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from mlxseq.data.corpus import DataError, PathLike, read_lines
from mlxseq.system.files import write_bytes

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>")  # index = id
FORMAT_VERSION = 1


class Tokenizer(ABC):
    """Text to ids and back. Special ids are the module constants (pad 0, unk 1, bos 2, eos 3)."""

    pad_id = PAD_ID
    unk_id = UNK_ID
    bos_id = BOS_ID
    eos_id = EOS_ID

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids, special tokens included; ids lie in ``[0, vocab_size)``."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Ids of ``text``, without ``<s>``/``</s>``."""

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; ``<pad>``, ``<s>`` and ``</s>`` are dropped."""

    @abstractmethod
    def save(self, folder: PathLike, name: str = "tokenizer") -> Path:
        """Write the tokenizer into ``folder`` (created if needed); return the file written."""

    @classmethod
    @abstractmethod
    def load(cls, folder: PathLike, name: str = "tokenizer") -> "Tokenizer":
        """Read a tokenizer written by :meth:`save`."""

    @abstractmethod
    def vocabulary(self) -> list[str]:
        """The token of every id, in id order: two tokenizers with equal vocabularies agree on every id."""


@dataclass
class SentencePieceConfig:
    """How to train a sentencepiece model. Every default lives here."""

    vocab_size: int = 8000  # ids in all, the 4 special tokens included
    model_type: str = "bpe"  # "bpe" or "unigram"
    character_coverage: float = 1.0  # 0.9995 suits languages with large alphabets (CJK)
    # Sentences used for training; 0 uses all. With shuffle off, the first N are used,
    # so the same input gives the same model.
    input_sentence_size: int = 0
    shuffle_input_sentence: bool = False
    seed: int = 0  # sentencepiece's random generator (unigram seeding, sampling)
    num_threads: int = 1  # one thread: reproducible and polite on shared machines
    # "nmt_nfkc" (sentencepiece's default) folds compatibility characters (no-break
    # space to space, ...); "identity" keeps them.
    normalization: str = "nmt_nfkc"
    # Collapse runs of spaces and drop leading/trailing ones. For decode(encode(s)) == s
    # on any text of seen characters, use normalization="identity" and False here.
    remove_extra_whitespaces: bool = True
    byte_fallback: bool = False  # unseen characters become UTF-8 byte pieces, not <unk>


class SentencePieceTokenizer(Tokenizer):
    """Subword tokenizer backed by a trained sentencepiece model.

    Args:
        model: the serialized model (the bytes of a ``.model`` file).
        path: where it came from, for error messages.
    """

    def __init__(self, model: bytes, path: PathLike | None = None):
        sentencepiece = _import_sentencepiece()
        where = os.fspath(path) if path is not None else None
        try:
            self._processor = sentencepiece.SentencePieceProcessor(model_proto=model)
        except RuntimeError as error:
            raise DataError(f"not a sentencepiece model ({error})", where) from None
        self._model = bytes(model)
        for expected, piece in enumerate(SPECIAL_TOKENS):
            got = self._processor.piece_to_id(piece)
            if got != expected or self._processor.id_to_piece(expected) != piece:
                raise DataError(
                    f"sentencepiece model must have {piece} at id {expected} (found at {got}); "
                    "train it with SentencePieceTokenizer.train",
                    where,
                )

    @classmethod
    def train(
        cls,
        sentences: Iterable[str] = (),
        config: SentencePieceConfig | None = None,
        *,
        files: Sequence[PathLike] = (),
    ) -> "SentencePieceTokenizer":
        """Train on ``sentences`` followed by the lines of ``files`` (plain or gzip UTF-8)."""
        config = config or SentencePieceConfig()
        if config.model_type not in ("bpe", "unigram"):
            raise ValueError(f"model_type must be 'bpe' or 'unigram', got {config.model_type!r}")
        sentencepiece = _import_sentencepiece()
        corpus = list(sentences) + (read_lines(files) if files else [])
        if not any(line.strip() for line in corpus):
            raise ValueError("cannot train a tokenizer on no text: every sentence is empty")
        sentencepiece.set_random_generator_seed(config.seed)
        written = _BytesSink()
        try:
            sentencepiece.SentencePieceTrainer.train(
                sentence_iterator=iter(corpus),
                model_writer=written,
                vocab_size=config.vocab_size,
                model_type=config.model_type,
                character_coverage=config.character_coverage,
                input_sentence_size=config.input_sentence_size,
                shuffle_input_sentence=config.shuffle_input_sentence,
                num_threads=config.num_threads,
                normalization_rule_name=config.normalization,
                remove_extra_whitespaces=config.remove_extra_whitespaces,
                byte_fallback=config.byte_fallback,
                pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
                pad_piece=SPECIAL_TOKENS[PAD_ID], unk_piece=SPECIAL_TOKENS[UNK_ID],
                bos_piece=SPECIAL_TOKENS[BOS_ID], eos_piece=SPECIAL_TOKENS[EOS_ID],
                minloglevel=2,  # errors only: training otherwise logs hundreds of lines
            )
        except RuntimeError as error:  # e.g. a vocabulary larger than the text allows
            raise ValueError(f"sentencepiece training failed: {error}") from None
        return cls(written.data)

    @property
    def vocab_size(self) -> int:
        return self._processor.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self._processor.encode(text, out_type=int)

    def decode(self, ids: Iterable[int]) -> str:
        ids = _check_ids(ids, self.vocab_size)
        # sentencepiece drops control pieces (<pad>, <s>, </s>) itself; <unk> becomes " ⁇ ".
        return self._processor.decode(ids)

    def pieces(self, text: str) -> list[str]:
        """The subword strings of ``text`` (for inspection)."""
        return self._processor.encode(text, out_type=str)

    def id_to_piece(self, id: int) -> str:
        """The subword string of one id."""
        return self._processor.id_to_piece(_check_ids([id], self.vocab_size)[0])

    def vocabulary(self) -> list[str]:
        return [self._processor.id_to_piece(i) for i in range(self.vocab_size)]

    def save(self, folder: PathLike, name: str = "tokenizer") -> Path:
        path = Path(folder) / f"{name}.model"
        write_bytes(path, self._model)
        return path

    @classmethod
    def load(cls, folder: PathLike, name: str = "tokenizer") -> "SentencePieceTokenizer":
        path = Path(folder) / f"{name}.model"
        if not path.is_file():
            raise DataError("no such sentencepiece model", path)
        return cls(path.read_bytes(), path)


class _BytesSink:
    """Receives the trained model from sentencepiece's ``model_writer``."""

    def __init__(self):
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


def _import_sentencepiece():
    try:
        import sentencepiece
    except ImportError:
        raise ImportError("SentencePieceTokenizer needs sentencepiece: pip install sentencepiece") from None
    return sentencepiece


def _check_ids(ids: Iterable[int], vocab_size: int) -> list[int]:
    ids = [int(i) for i in ids]
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if bad:
        raise ValueError(f"id {bad[0]} is outside the vocabulary [0, {vocab_size})")
    return ids


class _VocabularyTokenizer(Tokenizer):
    """A tokenizer that is a list of tokens (id = position), saved as JSON."""

    kind: str  # the "type" field of the JSON file
    unk_text: str  # what decode writes for <unk>
    separator: str  # what decode puts between tokens

    def __init__(self, tokens: Sequence[str]):
        tokens = list(tokens)
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary must start with the special tokens {SPECIAL_TOKENS}")
        if len(set(tokens)) != len(tokens):
            duplicate = next(t for t, n in Counter(tokens).items() if n > 1)
            raise ValueError(f"token {duplicate!r} occurs twice in the vocabulary")
        self.tokens = tokens
        self._ids = {token: i for i, token in enumerate(tokens)}

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def vocabulary(self) -> list[str]:
        return list(self.tokens)

    @abstractmethod
    def _split(self, text: str) -> list[str]:
        """The text as vocabulary tokens."""

    def encode(self, text: str) -> list[int]:
        return [self._ids.get(token, UNK_ID) for token in self._split(text)]

    def decode(self, ids: Iterable[int]) -> str:
        ids = _check_ids(ids, self.vocab_size)
        kept = [i for i in ids if i not in (PAD_ID, BOS_ID, EOS_ID)]
        parts = [self.unk_text if i == UNK_ID else self.tokens[i] for i in kept]
        return self.separator.join(parts)

    def save(self, folder: PathLike, name: str = "tokenizer") -> Path:
        path = Path(folder) / f"{name}.json"
        content = {"format_version": FORMAT_VERSION, "type": self.kind, "tokens": self.tokens}
        write_bytes(path, (json.dumps(content, ensure_ascii=False, indent=0) + "\n").encode("utf-8"))
        return path

    @classmethod
    def load(cls, folder: PathLike, name: str = "tokenizer") -> "_VocabularyTokenizer":
        path = Path(folder) / f"{name}.json"
        content = _read_json(path)
        if content.get("type") != cls.kind:
            raise DataError(f"holds a {content.get('type')!r} tokenizer, not {cls.kind!r}", path)
        try:
            return cls(content["tokens"])
        except ValueError as error:
            raise DataError(str(error), path) from None


def _read_json(path: Path) -> dict:
    """Read a tokenizer JSON file strictly: known version, known keys, a list of strings."""
    if not path.is_file():
        raise DataError("no such tokenizer file", path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"not a tokenizer JSON file ({error})", path) from None
    if not isinstance(content, dict):
        raise DataError("not a tokenizer JSON file (expected an object)", path)
    unknown = sorted(set(content) - {"format_version", "type", "tokens"})
    if unknown:
        raise DataError(f"unknown key {unknown[0]!r}", path)
    if content.get("format_version") != FORMAT_VERSION:
        version = content.get("format_version")
        raise DataError(f"format_version {version!r} is not supported (expected {FORMAT_VERSION})", path)
    tokens = content.get("tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise DataError("'tokens' must be a list of strings", path)
    return content


class CharTokenizer(_VocabularyTokenizer):
    """One id per character (Unicode code point).

    Mapping: ids 0-3 are the special tokens; the characters seen in the text
    (newline included) follow in code-point order from id 4, so the same text
    always gives the same ids. A character not in the vocabulary encodes to
    ``<unk>`` (1), which decodes to U+FFFD (the replacement character "\ufffd"),
    so decoded text keeps one character per id.
    """

    kind = "char"
    unk_text = "\ufffd"
    separator = ""

    @classmethod
    def build(cls, text: str | Iterable[str], *, min_frequency: int = 1) -> "CharTokenizer":
        """Vocabulary of the characters in ``text`` (a string or strings) seen ``min_frequency`` times."""
        counts: Counter[str] = Counter()
        for part in [text] if isinstance(text, str) else text:
            counts.update(part)
        return cls(list(SPECIAL_TOKENS) + sorted(c for c, n in counts.items() if n >= min_frequency))

    def _split(self, text: str) -> list[str]:
        return list(text)


class WordTokenizer(_VocabularyTokenizer):
    """One id per whitespace-separated word.

    Mapping: ids 0-3 are the special tokens; words follow from id 4, most frequent
    first (ties in string order). A word in the text spelled like a special token
    (e.g. ``<unk>`` in Penn Treebank text) takes that token's id. Unknown words
    encode to ``<unk>`` and decode as ``<unk>``. Decoding joins words with single
    spaces, so text round-trips only if it was whitespace-normalized; newlines are
    lost (encode a line at a time and append ``eos_id`` for a line-level model).
    """

    kind = "word"
    unk_text = SPECIAL_TOKENS[UNK_ID]
    separator = " "

    @classmethod
    def build(
        cls, texts: str | Iterable[str], *, min_frequency: int = 1, max_size: int | None = None
    ) -> "WordTokenizer":
        """Vocabulary of words seen ``min_frequency`` times or more; at most ``max_size`` ids, specials included."""
        if max_size is not None and max_size < len(SPECIAL_TOKENS):
            raise ValueError(f"max_size must be at least {len(SPECIAL_TOKENS)} got {max_size}")
        counts: Counter[str] = Counter()
        for text in [texts] if isinstance(texts, str) else texts:
            counts.update(text.split())
        ranked = sorted(
            (w for w, n in counts.items() if n >= min_frequency and w not in SPECIAL_TOKENS),
            key=lambda w: (-counts[w], w),
        )
        if max_size is not None:
            ranked = ranked[: max_size - len(SPECIAL_TOKENS)]
        return cls(list(SPECIAL_TOKENS) + ranked)

    def _split(self, text: str) -> list[str]:
        return text.split()


def load_tokenizer(folder: PathLike, name: str = "tokenizer") -> Tokenizer:
    """Load ``<name>.model`` (sentencepiece) or ``<name>.json`` (char or word) from ``folder``."""
    folder = Path(folder)
    if (folder / f"{name}.model").is_file():
        return SentencePieceTokenizer.load(folder, name)
    path = folder / f"{name}.json"
    kinds = {cls.kind: cls for cls in (CharTokenizer, WordTokenizer)}
    kind = _read_json(path).get("type")
    if kind not in kinds:
        raise DataError(f"unknown tokenizer type {kind!r} (known: {', '.join(kinds)})", path)
    return kinds[kind].load(folder, name)


@dataclass
class TokenizerPair:
    """Source and target tokenizers of a translation model.

    Joint (``source is target``, one shared vocabulary, saved as ``tokenizer.*``)
    or separate (saved as ``source.*`` and ``target.*``).
    """

    source: Tokenizer
    target: Tokenizer

    @property
    def joint(self) -> bool:
        return self.source is self.target

    def save(self, folder: PathLike) -> list[Path]:
        if self.joint:
            return [self.source.save(folder, "tokenizer")]
        return [self.source.save(folder, "source"), self.target.save(folder, "target")]

    @classmethod
    def load(cls, folder: PathLike) -> "TokenizerPair":
        folder = Path(folder)
        if any(folder.glob("source.*")):
            return cls(load_tokenizer(folder, "source"), load_tokenizer(folder, "target"))
        shared = load_tokenizer(folder, "tokenizer")
        return cls(shared, shared)


def train_sentencepiece_pair(
    source: Iterable[str], target: Iterable[str], config: SentencePieceConfig | None = None, *, joint: bool = True
) -> TokenizerPair:
    """Train one sentencepiece model on both sides (``joint``) or one per side.

    A joint vocabulary lets a model tie source and target embeddings and copy
    names across; separate vocabularies give each language its full budget.
    """
    if joint:
        shared = SentencePieceTokenizer.train(list(source) + list(target), config)
        return TokenizerPair(shared, shared)
    source_tokenizer = SentencePieceTokenizer.train(source, config)
    return TokenizerPair(source_tokenizer, SentencePieceTokenizer.train(target, config))
