"""The PyTorch seq2seq translation tutorial's models as mlxseq seq2seq models.

The tutorial (pytorch.org, intermediate/seq2seq_translation_tutorial) trains an
``EncoderRNN`` (embedding and a one-layer GRU, embedding size = hidden size H) with one
of two attention decoders, each saved as its own state dict::

    encoder:  embedding.weight (Vs, H)    gru.{weight,bias}_{ih,hh}_l0
    decoder, since 2023 (Bahdanau attention):
              embedding.weight (Vt, H)    attention.Wa (H, H)  attention.Ua (H, H)  attention.Va (1, H)
              gru (input 2H)              out (Vt, H)
    decoder, 2017-2023 (scores over a fixed max_length L):
              embedding.weight (Vt, H)    attn (L, 2H)  attn_combine (H, 2H)
              gru (input H)               out (Vt, H)

The newer decoder is ``decoder_style: bahdanau`` with additive attention, scores
``Va tanh(Wa q + ba + Ua k + bu) + bv``: ``Wa`` is the query projection with ``ba + bu``
as its bias, ``Ua`` the key projection, and ``bv`` adds the same to every score, so the
softmax drops it. The older one is ``decoder_style: location``. Both append EOS to the
source, which ``source_eos`` reproduces.

Vocabularies: the tutorial keeps its ``Lang`` objects out of the state dicts, so the
user passes each side's words, one per line in index order (``SOS``, ``EOS``, then the
words from index 2, or just the words). The tutorial numbers SOS 0 and EOS 1; mlxseq
reserves 0-3 for ``<pad> <unk> <s> </s>``, so every tutorial id ``k`` becomes ``k + 2``
(SOS -> ``<s>``, EOS -> ``</s>``). ``<pad>`` and ``<unk>`` get zero embeddings and an
output logit of -1e9: the tutorial has neither, and cannot read an unknown word at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from mlxseq.convert.seq2seq_folder import ABSENT_LOGIT, remap_rows, save_seq2seq_folder
from mlxseq.convert.torch_rnn import torch_rnn_config

SHIFT = 2  # tutorial id k -> mlxseq id k + 2
NEWER_KEYS = ("attention.Wa.weight", "attention.Ua.weight", "attention.Va.weight")
OLDER_KEYS = ("attn.weight", "attn_combine.weight")
VOCAB_HELP = (
    "write each Lang's words in index order, one per line: "
    "'\\n'.join(lang.index2word[i] for i in range(lang.n_words))"
)


class TutorialError(ValueError):
    """The checkpoint or a vocabulary file does not fit the tutorial's model."""


@dataclass(frozen=True)
class TutorialLayout:
    """Where the encoder's and decoder's weights are, and which decoder it is."""

    encoder: str  # key prefix, e.g. "encoder." or ""
    decoder: str
    style: str  # "bahdanau" (newer) or "location" (older)


def find_tutorial_layout(state: Mapping[str, Any]) -> TutorialLayout | None:
    """The tutorial's encoder and decoder in a flat state dict, or None."""
    decoders = []
    for key in state:
        prefix = key[: -len("out.weight")]
        if key.endswith("out.weight") and (prefix == "" or prefix.endswith(".")) and f"{prefix}gru.weight_ih_l0" in state:
            if all(prefix + k in state for k in NEWER_KEYS):
                decoders.append((prefix, "bahdanau"))
            elif all(prefix + k in state for k in OLDER_KEYS):
                decoders.append((prefix, "location"))
    encoders = [
        key[: -len("gru.weight_ih_l0")]
        for key in state
        if key.endswith("gru.weight_ih_l0")
        and f"{key[:-len('gru.weight_ih_l0')]}embedding.weight" in state
        and f"{key[:-len('gru.weight_ih_l0')]}out.weight" not in state
    ]
    if len(decoders) != 1 or len(encoders) != 1:
        return None
    return TutorialLayout(encoders[0], decoders[0][0], decoders[0][1])


def read_vocabulary(path, rows: int, side: str) -> list[str]:
    """mlxseq's token list for a tutorial vocabulary file of an embedding with ``rows`` rows."""
    if path is None:
        raise TutorialError(
            f"the tutorial's vocabularies are not in its checkpoint: pass --{side}-vocab ({VOCAB_HELP})"
        )
    text = Path(path).read_text(encoding="utf-8")
    words = text.split("\n")
    if words and words[-1] == "":
        words.pop()  # the final newline ends the last line
    if len(words) == rows:
        words = words[SHIFT:]  # SOS and EOS, whatever they are called
    elif len(words) != rows - SHIFT:
        raise TutorialError(
            f"{path}: {len(words)} lines, but the checkpoint's {side} embedding has {rows} rows: "
            f"expected {rows} lines (SOS, EOS, then the words) or {rows - SHIFT} (the words from index 2); "
            f"{VOCAB_HELP}"
        )
    return ["<pad>", "<unk>", "<s>", "</s>", *words]


def _shifted(matrix: np.ndarray, fill: float = 0.0) -> np.ndarray:
    return remap_rows(matrix, [None] * SHIFT + list(range(matrix.shape[0])), fill)


def _gru(state: Mapping[str, Any], prefix: str, input_size: int, hidden: int, where: str) -> dict[str, np.ndarray]:
    config, weights = torch_rnn_config(state, prefix + "gru.")
    if (config.kind, config.num_layers, config.bidirectional, config.input_size, config.hidden_size) != (
        "gru", 1, False, input_size, hidden
    ):
        raise TutorialError(f"the {where} GRU under {prefix!r} is not the tutorial's ({config})")
    return weights


def tutorial_weights(state: Mapping[str, Any], layout: TutorialLayout):
    """``(ModelArgs, weights)`` of the mlxseq model equal to the tutorial's, vocabularies shifted by 2."""
    from mlxseq.models.seq2seq import ModelArgs

    enc, dec = layout.encoder, layout.decoder
    src_embedding = np.asarray(state[enc + "embedding.weight"])
    tgt_embedding = np.asarray(state[dec + "embedding.weight"])
    H = src_embedding.shape[1]
    weights = {"encoder.embedding.weight": _shifted(src_embedding), "embedding.weight": _shifted(tgt_embedding)}
    weights.update({f"encoder.rnn.{k}": v for k, v in _gru(state, enc, H, H, "encoder").items()})
    decoder_input = 2 * H if layout.style == "bahdanau" else H
    for name, value in _gru(state, dec, decoder_input, H, "decoder").items():
        weights[f"cells.0.{name[: -len('_l0')]}"] = value  # weight_ih_l0 -> weight_ih
    weights["output.weight"] = _shifted(np.asarray(state[dec + "out.weight"]))
    weights["output.bias"] = _shifted(np.asarray(state[dec + "out.bias"]), ABSENT_LOGIT)
    extra = {}
    if layout.style == "bahdanau":
        a = dec + "attention."
        weights["attention.query_proj.weight"] = state[a + "Wa.weight"]
        weights["attention.query_proj.bias"] = np.asarray(state[a + "Wa.bias"]) + np.asarray(state[a + "Ua.bias"])
        weights["attention.key_proj.weight"] = state[a + "Ua.weight"]
        weights["attention.v.weight"] = state[a + "Va.weight"]
        extra = dict(attention="additive", attention_size=H)
    else:
        weights["location_scores.weight"] = state[dec + "attn.weight"]
        weights["location_scores.bias"] = state[dec + "attn.bias"]
        weights["combine.weight"] = state[dec + "attn_combine.weight"]
        weights["combine.bias"] = state[dec + "attn_combine.bias"]
        extra = dict(attention="location", max_source_length=int(np.asarray(state[dec + "attn.weight"]).shape[0]))
    args = ModelArgs(
        src_vocab_size=src_embedding.shape[0] + SHIFT, tgt_vocab_size=tgt_embedding.shape[0] + SHIFT,
        embed_size=H, hidden_size=H, rnn_type="gru", bidirectional=False, dropout=0.1,  # the tutorial's dropout_p
        decoder_style=layout.style, bridge="concat", input_feed=False, source_eos=True, **extra,
    )
    return args, weights


def convert_tutorial(state: Mapping[str, Any], out_dir, *, src_vocab, tgt_vocab, source_name: str):
    """Write the tutorial model in ``state`` (flat, prefixed keys) as a model folder; ``(folder, description)``."""
    layout = find_tutorial_layout(state)
    if layout is None:
        raise TutorialError("no tutorial encoder (embedding, gru) and attention decoder (out, gru, attention) found")
    args, weights = tutorial_weights(state, layout)
    source_tokens = read_vocabulary(src_vocab, args.src_vocab_size - SHIFT, "src")
    target_tokens = read_vocabulary(tgt_vocab, args.tgt_vocab_size - SHIFT, "tgt")
    form = (
        "AttnDecoderRNN with BahdanauAttention (tutorial since 2023)" if layout.style == "bahdanau"
        else f"AttnDecoderRNN over max_length={args.max_source_length} positions (tutorial 2017-2023)"
    )
    description = (
        f"pytorch-tutorial: EncoderRNN + {form}, hidden_size={args.hidden_size}, "
        f"{args.src_vocab_size - SHIFT} source and {args.tgt_vocab_size - SHIFT} target words"
    )
    limit = (
        f"Sources longer than {args.max_source_length - 1} words are refused, as the tutorial's fixed attention "
        "cannot read them.\n" if layout.style == "location" else ""
    )
    readme = (
        f"# {Path(out_dir).name}\n\n"
        f"Converted by mlxseq from `{source_name}`: {description}.\n\n"
        "Ids are the tutorial's plus 2 (SOS -> `<s>`, EOS -> `</s>`; `<pad>` and `<unk>` are new and never "
        "predicted). EOS is appended to every source, as the tutorial does.\n"
        "Input must be normalised as the tutorial's `normalizeString` does (lower case, ASCII, "
        "punctuation split off); words it never saw become `<unk>`, which the tutorial itself cannot read.\n"
        f"{limit}\n"
        "Translate with `mlxseq translate --model <folder> --beam-size 1` for the tutorial's greedy search; "
        "add `--max-length-ratio 0.001` to stop after 10 words as the tutorial's MAX_LENGTH=10 does "
        "(mlxseq's limit is the ratio times the source length, plus 10).\n"
    )
    folder = save_seq2seq_folder(out_dir, args, weights, source_tokens, target_tokens, readme)
    return folder, description
