"""Translate text with a seq2seq model folder: batched by length, greedy or beam search.

    translator = Translator.load("path/or/owner-repo")     # model + tokenizers
    translator.translate(["Ein Mann fährt Fahrrad."])      # -> [[Translation(...)]] n-best lists
    mlxseq.translate(["Ein Mann fährt Fahrrad."], model=...)  # -> ["A man rides a bike."]

Inputs are sorted by length into batches (few distinct shapes, little padding) and the
results are returned in input order. Characters the tokenizer never saw map to
``<unk>``; the model never produces ``<pad>``, nor ``<unk>`` unless ``allow_unk``.

``replace_unk`` is OpenNMT-py's ``-replace_unk``: each ``<unk>`` of the output becomes the
source word with the highest attention weight at the step that produced it (the first
such word on a tie), read from the hypothesis that was chosen. It needs word-level
tokenizers on both sides (a subword piece is not a word to copy) and an attention model.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import mlx.core as mx
import numpy as np

from mlxseq.checkpoint import ModelFolderError, load_with_tokenizer
from mlxseq.decoding.args import DecodingArgs
from mlxseq.decoding.ensemble import Ensemble
from mlxseq.decoding.opennmt_search import opennmt_beam_search
from mlxseq.decoding.beams import beam_search
from mlxseq.decoding.search import greedy_decode

BUNDLED_MODEL = Path(__file__).parents[1] / "bundled" / "multi30k-de-en"

# The options of translate(): mlxseq.decoding.DecodingArgs, under the name this module has always used.
TranslationOptions = DecodingArgs


@dataclass
class Translation:
    text: str
    score: float  # log-probability / length penalty (the ranking score)
    log_prob: float
    tokens: list = field(default_factory=list)
    # (steps, S) attention of each step (eos last), kept when replace_unk asked for it
    attention: np.ndarray | None = field(default=None, repr=False, compare=False)


DECODING_FILE = "generation_config.json"
# What a model folder's generation_config.json may set (the rest is the caller's business).
DECODING_DEFAULT_KEYS = ("beam_size", "length_penalty", "length_penalty_kind", "max_length_ratio",
                         "max_length_offset", "max_length", "search")


def read_decoding_defaults(folder: Path | None) -> dict:
    """The decoding settings a model folder recommends (``generation_config.json``), checked; {} if none."""
    from mlxseq.checkpoint import ModelFolderError
    from mlxseq.system.files import read_json_object

    path = None if folder is None else Path(folder) / DECODING_FILE
    if path is None or not path.is_file():
        return {}
    values = read_json_object(path, ModelFolderError, "a JSON object of decoding settings")
    unknown = sorted(set(values) - set(DECODING_DEFAULT_KEYS))
    if unknown:
        raise ModelFolderError(f"{path}: unknown key {unknown[0]!r}; known: {', '.join(DECODING_DEFAULT_KEYS)}")
    try:
        TranslationOptions(**values)
    except (TypeError, ValueError) as error:
        raise ModelFolderError(f"{path}: {error}") from None
    return values


class Translator:
    """A seq2seq model with its tokenizers and the decoding settings its folder recommends."""

    def __init__(self, model, tokenizers, folder: Path | None = None, decoding: dict | None = None):
        self.model = model
        self.tokenizers = tokenizers
        self.folder = folder
        self.decoding = dict(decoding or {})  # generation_config.json of the folder

    def options(self, **given) -> TranslationOptions:
        """TranslationOptions: ``given`` values (None: not given) over the folder's defaults over mlxseq's."""
        return TranslationOptions(**{**self.decoding, **{k: v for k, v in given.items() if v is not None}})

    @classmethod
    def load(cls, path_or_repo=None, *, revision: str | None = None) -> "Translator":
        """Load a model folder (default: the model bundled with mlxseq); a list of folders
        translates as one ensemble (:meth:`ensemble`)."""
        from mlxseq.data import TokenizerPair

        if isinstance(path_or_repo, (list, tuple)):
            if len(path_or_repo) > 1:
                return cls.ensemble([cls.load(one, revision=revision) for one in path_or_repo])
            path_or_repo = path_or_repo[0] if path_or_repo else None

        model, tokenizers, folder = load_with_tokenizer(
            path_or_repo, "seq2seq", TokenizerPair.load, bundled=BUNDLED_MODEL, job="translation", revision=revision
        )
        return cls(model, tokenizers, folder, read_decoding_defaults(folder))

    @classmethod
    def ensemble(cls, translators: list["Translator"]) -> "Translator":
        """One translator averaging the members' log-probabilities at each step
        (:class:`mlxseq.decoding.ensemble.Ensemble`); the first member's decoding settings.
        Members must share their source and target vocabularies and special ids."""
        first = translators[0]
        for other in translators[1:]:
            for side in ("source", "target"):
                ours, theirs = getattr(first.tokenizers, side).vocabulary(), getattr(other.tokenizers, side).vocabulary()
                if ours != theirs:
                    where = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
                    raise ModelFolderError(
                        f"{other.folder} and {first.folder} have different {side} vocabularies ({len(theirs)} and "
                        f"{len(ours)} tokens, first difference at id {where}): an ensemble needs one vocabulary")
            ids = ("pad_id", "bos_id", "eos_id")
            if [getattr(other.model.args, i) for i in ids] != [getattr(first.model.args, i) for i in ids]:
                raise ModelFolderError(f"{other.folder} and {first.folder} use different special token ids")
        ensemble = cls(Ensemble([t.model for t in translators]), first.tokenizers, first.folder, first.decoding)
        ensemble.folders = [t.folder for t in translators]
        return ensemble

    @property
    def description(self) -> str:
        """The folder, or the ensemble's folders."""
        folders = getattr(self, "folders", None)
        return f"ensemble of {len(folders)}: {', '.join(map(str, folders))}" if folders else str(self.folder)

    def translate(self, texts: list[str], options: TranslationOptions | None = None,
                  on_progress: Callable[[int], None] | None = None) -> list[list[Translation]]:
        """The ``n_best`` translations of each text, best first, in input order.

        ``options`` None: the folder's recommended settings (:meth:`options`).
        ``on_progress(n)`` is called as each batch of ``n`` texts is done (empty texts first).
        """
        options = options or self.options()
        if options.replace_unk:
            self._check_replace_unk()
        # Sources carry no <s>/</s>, as in training (mlxseq.data.pad_pairs).
        encoded = [self.tokenizers.source.encode(text) for text in texts]
        for i, ids in enumerate(encoded):
            if len(ids) > options.max_input_tokens:
                raise ValueError(
                    f"input {i + 1} has {len(ids)} tokens, more than max_input_tokens={options.max_input_tokens}; "
                    "split it into sentences"
                )
        # An empty input translates to an empty output without running the model.
        results = [[Translation("", 0.0, 0.0, [])] if not ids else None for ids in encoded]
        order = sorted((i for i, ids in enumerate(encoded) if ids), key=lambda i: len(encoded[i]))
        if on_progress is not None and len(order) < len(texts):
            on_progress(len(texts) - len(order))
        for start in range(0, len(order), options.batch_size):
            chunk = order[start : start + options.batch_size]
            for i, hyps in zip(chunk, self._translate_batch([encoded[i] for i in chunk], options)):
                results[i] = hyps
                if options.replace_unk:
                    for translation in hyps:
                        translation.text = self._with_source_words(translation, texts[i].split())
            if on_progress is not None:
                on_progress(len(chunk))
        return results

    def predict(self, texts: list[str], options: TranslationOptions | None = None) -> list[str]:
        """The best translation of each text (the pipelines' common interface)."""
        return [hyps[0].text for hyps in self.translate(texts, options)]

    def evaluate(self, sources: list[str], references: list[str], options: TranslationOptions | None = None,
                 on_progress: Callable[[int], None] | None = None) -> dict:
        """BLEU and chrF (sacrebleu) of the translations of ``sources`` against one reference each,
        with their signatures and the decoding signature."""
        from mlxseq.metrics import score_translations

        options = options or self.options()
        found = self.translate(sources, options, on_progress=on_progress)
        scores = score_translations([hyps[0].text for hyps in found], references)
        return {"bleu": scores.bleu, "chrf": scores.chrf, "bleu_signature": scores.bleu_signature,
                "chrf_signature": scores.chrf_signature, "settings": options.signature(), "sentences": len(found)}

    def _check_replace_unk(self):
        from mlxseq.data import WordTokenizer

        source, target = self.tokenizers.source, self.tokenizers.target
        if not (isinstance(source, WordTokenizer) and isinstance(target, WordTokenizer)):
            raise ValueError(
                "replace_unk copies whole source words, so it needs word tokenizers on both sides; this model has "
                f"a {type(source).__name__} source and a {type(target).__name__} target"
            )
        if self.model.args.attention == "none":
            raise ValueError("replace_unk follows the attention weights, and this model has no attention")

    def _with_source_words(self, translation, source_words):
        """The text of ``translation`` with each ``<unk>`` replaced by its most attended source word."""
        target = self.tokenizers.target
        words = []
        for i, token in enumerate(translation.tokens):
            if token in (target.pad_id, target.bos_id, target.eos_id):
                continue  # decode drops them too
            if token == target.unk_id:
                # Columns past the source (padding, an appended eos) are not words.
                words.append(source_words[int(np.argmax(translation.attention[i, : len(source_words)]))])
            else:
                words.append(target.tokens[token])
        return " ".join(words)

    def _translate_batch(self, sources, options):
        args = self.model.args
        S = max(len(s) for s in sources)
        src = np.full((len(sources), S), args.pad_id, dtype=np.int32)
        for b, ids in enumerate(sources):
            src[b, : len(ids)] = ids
        lengths = mx.array([len(s) for s in sources], dtype=mx.int32)
        state = self.model.init_state(self.model.encode(mx.array(src), lengths))
        max_tokens = options.max_length or int(options.max_length_ratio * S + options.max_length_offset)
        allow_unk = options.allow_unk or options.replace_unk
        banned = [args.pad_id, args.bos_id] + ([] if allow_unk else [self.tokenizers.target.unk_id])
        if options.search == "opennmt":
            banned = []
        attention = _read_attention if options.replace_unk else None
        if options.search == "opennmt":  # -beam_size 1 too: one beam, its score divided by the length penalty
            found = opennmt_beam_search(
                self.model, state, bos_id=args.bos_id, eos_id=args.eos_id, beam_size=options.beam_size,
                max_tokens=max_tokens, length_penalty=options.length_penalty,
                length_penalty_kind=options.length_penalty_kind, n_best=options.n_best, attention=attention,
            )
        elif options.beam_size == 1:
            found = [[h] for h in greedy_decode(
                self.model, state, bos_id=args.bos_id, eos_id=args.eos_id, max_tokens=max_tokens, banned_ids=banned,
                attention=attention,
            )]
        else:
            found = beam_search(
                self.model,
                state,
                bos_id=args.bos_id,
                eos_id=args.eos_id,
                beam_size=options.beam_size,
                max_tokens=max_tokens,
                length_penalty=options.length_penalty,
                length_penalty_kind=options.length_penalty_kind,
                n_best=options.n_best,
                banned_ids=banned,
                attention=attention,
            )
        if any(not hyps or any(not math.isfinite(h.log_prob) for h in hyps) for hyps in found):
            raise ValueError(
                f"the model produced NaN or infinite scores (model {self.folder}): its weights hold NaN or "
                "infinite values, or it overflowed")
        decode = self.tokenizers.target.decode
        return [
            [Translation(decode(h.tokens), h.score, h.log_prob, list(h.tokens), h.attention)
             for h in hyps[: options.n_best]]
            for hyps in found
        ]

    def attention(self, text: str, translation: Translation) -> np.ndarray:
        """Attention weights ``(output tokens + 1, source tokens)`` of a translation (the last row: eos)."""
        args = self.model.args
        src_ids = self.tokenizers.source.encode(text)
        state = self.model.init_state(self.model.encode(mx.array([src_ids]), mx.array([len(src_ids)])))
        rows = []
        for token in [args.bos_id] + translation.tokens:
            _, state = self.model.step(mx.array([token]), state)
            rows.append(state["attention"][0])
        # Columns past the source (an appended eos, fixed attention positions) are left out.
        return np.array(mx.stack(rows))[:, : len(src_ids)]


    def attention_map(self, text: str, translation: Translation) -> tuple[np.ndarray, list[str], list[str]]:
        """``(weights (output tokens + 1, source tokens), source tokens, output tokens + "</s>")``:
        the attention of a translation with the tokens that label its columns and rows."""
        source, target = self.tokenizers.source, self.tokenizers.target
        weights = self.attention(text, translation)
        source_tokens = [source.decode([i]) or "·" for i in source.encode(text)]
        return weights, source_tokens, [target.decode([i]) or "·" for i in translation.tokens] + ["</s>"]


def _read_attention(state):
    return state["attention"]


def translate(texts, model=None, **options) -> list[str]:
    """Translate ``texts`` (a string or a list) with a model folder, Hub repo id or the bundled model.

    Keyword options are :class:`TranslationOptions` fields. Returns the best translation
    of each text (a list of n-best lists when ``n_best > 1``).
    """
    single = isinstance(texts, str)
    translator = model if isinstance(model, Translator) else Translator.load(model)
    opts = translator.options(**options)
    found = translator.translate([texts] if single else list(texts), opts)
    out = [[t.text for t in hyps] if opts.n_best > 1 else hyps[0].text for hyps in found]
    return out[0] if single else out
