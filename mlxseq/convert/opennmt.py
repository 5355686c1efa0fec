"""OpenNMT-py RNN translation models as mlxseq seq2seq models.

A checkpoint (``onmt/models/model_saver.py``) is a dict: ``model`` (state dict without the
generator), ``generator``, ``vocab``, ``opt`` (an ``argparse.Namespace``) and ``optim``.
The first checkpoints (``train.py`` before torchtext, 2017) hold ``dicts`` instead of
``vocab``. The vocabulary took four forms over the years, all read here without running code:

    2017        {"src": onmt.Dict.Dict, "tgt": Dict}                      Dict.idxToLabel
    2017-2018   [("src", torchtext.vocab.Vocab), ("tgt", Vocab), ...]    Vocab.itos
    1.x-2.x     {"src": TextMultiField or Field, "tgt": ...}             field.vocab.itos
    3.x         {"src": [tokens], "tgt": [tokens], ...}

The first models (``onmt/Models.py`` with ``onmt.Dict``) are the same network under other
names: ``word_lut`` embeddings, an ``nn.LSTM`` encoder (``-brnn``: H/2 per direction,
concatenated; ``-brnn_merge`` was declared but that code always concatenated), a
StackedLSTM decoder whose first cell takes ``[emb; a_{t-1}]`` with ``-input_feed 1`` and
``emb`` alone with 0, and general attention without biases.

Weights (the model is read off the weights; ``opt`` only refuses what mlxseq lacks)::

    encoder.embeddings.make_embedding.emb_luts.0.weight (Vs, Es)
    encoder.rnn.*                      nn.LSTM/GRU/RNN, bidirectional for brnn (H/2 each)
    encoder.bridge.{0,1}               Linear(L*H/dirs, L*H/dirs) per state, relu (``bridge: opennmt``)
    encoder.word_lut.weight / decoder.word_lut.weight   the same, 2017 (onmt.Dict checkpoints)
    decoder.embeddings.make_embedding.emb_luts.0.weight (Vt, Et)
    decoder.rnn.layers.{k}.*           stacked cells, input feeding (InputFeedRNNDecoder)
    decoder.rnn.*_l{k}                 nn.LSTM/GRU without input feeding (StdRNNDecoder)
    decoder.attn.linear_in             general: score h_t^T W h_s (mlxseq keys W^T h_s)
    decoder.attn.linear_query/context/v  mlp (additive), linear_out with bias and no tanh
    decoder.attn.linear_out            Linear(2H, H) over [c_t; h_t]
    generator.0 (1.x-2.x) / generator (3.x)   Linear(H, Vt), log-softmax

Special tokens map by name to mlxseq's ids: ``<blank>`` -> ``<pad>`` 0, ``<unk>`` 1,
``<s>`` 2, ``</s>`` 3; the other tokens follow in their order. A source vocabulary
without ``<s>``/``</s>`` gets zero rows for them; target rows that OpenNMT-py lacks get
an output logit of -1e9.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from mlxseq.convert.pickled_objects import PickledObject
from mlxseq.convert.seq2seq_folder import ABSENT_LOGIT, remap_rows, save_seq2seq_folder
from mlxseq.convert.torch_rnn import torch_rnn_config

# What OpenNMT-py checkpoints pickle besides tensors; read as inert records, never imported.
OPENNMT_GLOBALS = (
    "argparse.Namespace", "collections.Counter", "collections.defaultdict", "functools.partial",
    "torchtext.*", "onmt.*", "torch.optim.*",
)
PAD_NAMES = ("<blank>", "<pad>")
SPECIAL_NAMES = {"<unk>": 1, "<s>": 2, "</s>": 3}
MLXSEQ_SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")
EMBEDDING_KEYS = ("embeddings.make_embedding.emb_luts.0.weight", "embeddings.emb_luts.0.weight",
                  "embeddings.word_lut.weight", "word_lut.weight")
UNSUPPORTED_KEYS = {
    "decoder.attn.linear_cover.": "coverage attention",
    "decoder.context_gate.": "a context gate",
    "decoder.copy_attn.": "copy attention",
    "encoder.transformer.": "a Transformer encoder",
    "decoder.transformer_layers.": "a Transformer decoder",
    "encoder.cnn.": "a CNN encoder",
    "embeddings.make_embedding.emb_luts.1.": "source or target features",
    "embeddings.make_embedding.pe.": "position encoding",
    "embeddings.make_embedding.mlp.": "merged feature embeddings",
    "embeddings.emb_luts.1.": "source or target features",
    "feature_luts.": "source or target features",
}
DICT_CLASS = "onmt.Dict.Dict"
DICT_GENERATION = "2017 (onmt.Dict, before torchtext)"
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


class OpenNMTError(ValueError):
    """The checkpoint is not an OpenNMT-py RNN model mlxseq can hold; the message says what is off."""


def is_opennmt_checkpoint(obj: Any) -> bool:
    """A dict with OpenNMT-py's ``model`` state dict (encoder embeddings) and a ``vocab`` (or ``dicts``)."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get("model"), Mapping) or not _vocabulary_entry(obj):
        return False
    return any(str(k).startswith(("encoder.embeddings.", "encoder.word_lut")) for k in obj["model"])


# --- vocabularies -------------------------------------------------------------------


def _vocabulary_entry(checkpoint: Mapping[str, Any]) -> Any:
    """``vocab``, or ``dicts`` in the checkpoints written before torchtext."""
    return checkpoint.get("vocab", checkpoint.get("dicts"))


def _dict_labels(record: PickledObject) -> list[str]:
    """The labels of an ``onmt.Dict`` in id order (its ``idxToLabel`` maps id -> label)."""
    labels = _attribute(record, "idxToLabel")
    if not isinstance(labels, Mapping) or sorted(labels) != list(range(len(labels))):
        raise OpenNMTError("its onmt.Dict's idxToLabel does not map the ids 0..n-1 to labels")
    if _attribute(record, "lower"):
        raise OpenNMTError(
            "its dictionaries were built with -lower (OpenNMT-py lowercased every word it looked up), "
            "which mlxseq's word tokenizer does not do"
        )
    return [str(labels[i]) for i in range(len(labels))]


def _attribute(record: Any, name: str) -> Any:
    try:
        return getattr(record, name)
    except AttributeError:
        return None


def _itos(entry: Any) -> list[str] | None:
    """The token list inside a vocabulary entry of any generation."""
    if isinstance(entry, (list, tuple)) and entry and all(isinstance(t, str) for t in entry):
        return list(entry)
    if isinstance(entry, (list, tuple)):  # [(name, field), ...]
        for item in entry:
            found = _itos(item[1] if isinstance(item, (list, tuple)) and len(item) == 2 else item)
            if found:
                return found
        return None
    if isinstance(entry, PickledObject):
        if entry.class_path == DICT_CLASS:
            return _dict_labels(entry)
        itos = _attribute(entry, "itos")
        if isinstance(itos, list):
            return [str(t) for t in itos]
        for name in ("vocab", "base_field", "fields"):
            inner = _attribute(entry, name)
            if inner is not None and (found := _itos(inner)):
                return found
    return None


def read_vocabularies(vocab: Any) -> tuple[list[str], list[str], str]:
    """``(source tokens, target tokens, generation)`` from a checkpoint's ``vocab``."""
    if isinstance(vocab, (list, tuple)):
        entries = dict(item for item in vocab if isinstance(item, (list, tuple)) and len(item) == 2)
        generation = "2017-2018 (torchtext Vocab pairs)"
    elif isinstance(vocab, Mapping):
        entries = vocab
        lists = all(isinstance(vocab.get(side), list) for side in ("src", "tgt"))
        generation = "3.x (token lists)" if lists else "1.x-2.x (torchtext fields)"
        if any(getattr(vocab.get(side), "class_path", None) == DICT_CLASS for side in ("src", "tgt")):
            generation = DICT_GENERATION
    else:
        raise OpenNMTError(f"its 'vocab' is a {type(vocab).__name__}, not a known OpenNMT-py vocabulary")
    start = entries.get("decoder_start_token", "<s>")  # 3.x names the token decoding starts from
    if start != "<s>":
        raise OpenNMTError(f"its decoder starts from {start!r}; mlxseq starts from '<s>'")
    sides = []
    for side in ("src", "tgt"):
        tokens = _itos(entries.get(side))
        if not tokens:
            raise OpenNMTError(f"no {side!r} token list in its vocabulary (entries: {sorted(map(str, entries))})")
        sides.append(tokens)
    return sides[0], sides[1], generation


def vocabulary_order(itos: list[str], side: str) -> tuple[list[str], list[int | None]]:
    """mlxseq's tokens for ``itos`` and, for each new id, the OpenNMT-py id it comes from."""
    where = {token: i for i, token in enumerate(itos)}
    pad = next((where[name] for name in PAD_NAMES if name in where), None)
    new_to_old = [pad] + [where.get(name) for name in SPECIAL_NAMES]
    taken = {i for i in new_to_old if i is not None}
    rest = [i for i in range(len(itos)) if i not in taken]
    clash = [itos[i] for i in rest if itos[i] in MLXSEQ_SPECIALS]
    if clash:
        raise OpenNMTError(f"the {side} vocabulary has {clash[0]!r} as an ordinary token, which mlxseq reserves")
    return list(MLXSEQ_SPECIALS) + [itos[i] for i in rest], new_to_old + rest


# --- weights ------------------------------------------------------------------------


def _embedding(model: Mapping[str, Any], side: str) -> np.ndarray:
    for name in EMBEDDING_KEYS:
        if f"{side}.{name}" in model:
            return np.asarray(model[f"{side}.{name}"])
    raise OpenNMTError(f"no {side} word embedding found (looked for {side}.{EMBEDDING_KEYS[0]})")


def _generator(checkpoint: Mapping[str, Any]) -> dict[str, np.ndarray]:
    generator = checkpoint.get("generator")
    if not isinstance(generator, Mapping):  # the oldest checkpoints kept it in the model
        generator = {k[len("generator."):]: v for k, v in checkpoint["model"].items() if str(k).startswith("generator.")}
    if any("copy" in str(k) for k in generator) or "linear.weight" in generator:
        raise OpenNMTError("it has a copy generator (copy attention), which mlxseq does not have")
    for prefix in ("0.", ""):
        if f"{prefix}weight" in generator:
            return {"weight": np.asarray(generator[f"{prefix}weight"]), "bias": np.asarray(generator[f"{prefix}bias"])}
    raise OpenNMTError(f"no generator Linear found (keys: {sorted(map(str, generator))[:6]})")


def _refuse_unsupported(model: Mapping[str, Any], opt: Any) -> None:
    for key in model:
        for part, what in UNSUPPORTED_KEYS.items():
            if part in str(key):
                raise OpenNMTError(f"it uses {what} ({key}), which mlxseq's seq2seq model does not have")
    if _attribute(opt, "global_attention_function") not in (None, "softmax"):
        raise OpenNMTError(f"its attention uses {opt.global_attention_function}, mlxseq only softmax")


def _decoder_cells(model: Mapping[str, Any], kind: str, embed_size: int) -> tuple[dict[str, np.ndarray], int, bool]:
    """``(cells.* weights, decoder layers, input feeding)`` of either RNN decoder."""
    cells, k = {}, 0
    if "decoder.rnn.layers.0.weight_ih" in model:  # InputFeedRNNDecoder (2017: Decoder): stacked cells
        while f"decoder.rnn.layers.{k}.weight_ih" in model:
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                cells[f"cells.{k}.{name}"] = model[f"decoder.rnn.layers.{k}.{name}"]
            k += 1
        inputs, hidden = np.shape(cells["cells.0.weight_ih"])[1], np.shape(cells["cells.0.weight_hh"])[1]
        if inputs not in (embed_size, embed_size + hidden):
            raise OpenNMTError(f"its first decoder cell takes {inputs} inputs, neither the embedding ({embed_size}) "
                               f"nor the embedding and the input feed ({embed_size + hidden})")
        gates = np.shape(cells["cells.0.weight_ih"])[0] // hidden
        if gates != GATES[kind]:
            raise OpenNMTError(f"its decoder cells have {gates} gates and its {kind} encoder {GATES[kind]}")
        return cells, k, inputs == embed_size + hidden  # -input_feed 0 (2017) feeds the embedding alone
    config, weights = torch_rnn_config(model, "decoder.rnn.")  # StdRNNDecoder: one nn.LSTM/GRU
    if config.kind != kind or config.bidirectional:
        raise OpenNMTError(f"its decoder RNN ({config}) does not match its {kind} encoder")
    for name, value in weights.items():
        base, layer = name.rsplit("_l", 1)
        cells[f"cells.{layer}.{base}"] = value
    return cells, config.num_layers, False


def _check_decoder_size(decoder_hidden: int, encoder, opt: Any) -> None:
    """The decoder's states are the encoder's directions side by side, as mlxseq's concat bridge makes them."""
    if decoder_hidden == encoder.hidden_size * (2 if encoder.bidirectional else 1):
        return
    if encoder.bidirectional and decoder_hidden == encoder.hidden_size:
        merge = _attribute(opt, "brnn_merge")
        raise OpenNMTError(
            f"its bidirectional encoder's directions ({encoder.hidden_size} units each) are merged into "
            f"{decoder_hidden} by adding them (brnn_merge {merge or 'sum'}); mlxseq's seq2seq model "
            "concatenates them (brnn_merge concat)"
        )
    raise OpenNMTError(
        f"its decoder has {decoder_hidden} units per layer, its encoder {encoder.hidden_size} per direction")


def _attention(model: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict]:
    a = "decoder.attn."
    if f"{a}linear_out.weight" not in model:
        return {}, dict(attention="none")
    weights = {"linear_out.weight": model[f"{a}linear_out.weight"]}
    if f"{a}linear_out.bias" in model:
        weights["linear_out.bias"] = model[f"{a}linear_out.bias"]
    if f"{a}linear_in.weight" in model:  # score h_t . (W h_s) with W = linear_in^T
        weights["attention.linear_in.weight"] = np.ascontiguousarray(np.asarray(model[f"{a}linear_in.weight"]).T)
        return weights, dict(attention="general")
    if f"{a}linear_query.weight" in model:
        weights.update({
            "attention.query_proj.weight": model[f"{a}linear_query.weight"],
            "attention.query_proj.bias": model[f"{a}linear_query.bias"],
            "attention.key_proj.weight": model[f"{a}linear_context.weight"],
            "attention.v.weight": model[f"{a}v.weight"],
        })
        size = int(np.asarray(model[f"{a}linear_query.weight"]).shape[0])
        return weights, dict(attention="additive", attention_size=size, output_tanh=False)
    return weights, dict(attention="dot")


def opennmt_model(checkpoint: Mapping[str, Any]):
    """``(ModelArgs, weights, source tokens, target tokens, description)`` of an OpenNMT-py checkpoint."""
    from mlxseq.models.seq2seq import ModelArgs

    model, opt = checkpoint["model"], checkpoint.get("opt")
    _refuse_unsupported(model, opt)
    src_itos, tgt_itos, generation = read_vocabularies(_vocabulary_entry(checkpoint))
    src_tokens, src_order = vocabulary_order(src_itos, "source")
    tgt_tokens, tgt_order = vocabulary_order(tgt_itos, "target")
    src_embedding, tgt_embedding = _embedding(model, "encoder"), _embedding(model, "decoder")
    generator = _generator(checkpoint)
    for side, itos, rows in (("source", src_itos, src_embedding), ("target", tgt_itos, tgt_embedding),
                             ("generator", tgt_itos, generator["weight"])):
        if len(itos) != rows.shape[0]:
            raise OpenNMTError(f"its {side} vocabulary has {len(itos)} tokens but its weights {rows.shape[0]} rows")

    encoder, encoder_weights = torch_rnn_config(model, "encoder.rnn.")
    dirs = 2 if encoder.bidirectional else 1
    hidden = encoder.hidden_size * dirs
    E, Es = tgt_embedding.shape[1], src_embedding.shape[1]
    cells, decoder_layers, input_feed = _decoder_cells(model, encoder.kind, E)
    _check_decoder_size(np.shape(cells["cells.0.weight_hh"])[1], encoder, opt)
    attention_weights, attention_args = _attention(model)
    weights = {
        "encoder.embedding.weight": remap_rows(src_embedding, src_order),
        "embedding.weight": remap_rows(tgt_embedding, tgt_order),
        "output.weight": remap_rows(generator["weight"], tgt_order),
        "output.bias": remap_rows(generator["bias"], tgt_order, ABSENT_LOGIT),
        **{f"encoder.rnn.{k}": v for k, v in encoder_weights.items()},
        **cells,
        **attention_weights,
    }
    bridge = "opennmt" if "encoder.bridge.0.weight" in model else "concat"
    if bridge == "opennmt":
        for k in range(2 if encoder.kind == "lstm" else 1):  # hidden (and cell) state
            weights[f"bridge.linears.{k}.weight"] = model[f"encoder.bridge.{k}.weight"]
            weights[f"bridge.linears.{k}.bias"] = model[f"encoder.bridge.{k}.bias"]
    dropout = _attribute(opt, "dropout")
    dropout = dropout[0] if isinstance(dropout, list) and dropout else dropout
    args = ModelArgs(
        src_vocab_size=len(src_tokens), tgt_vocab_size=len(tgt_tokens), embed_size=E,
        src_embed_size=Es if Es != E else 0, hidden_size=hidden, encoder_layers=encoder.num_layers,
        decoder_layers=decoder_layers, rnn_type=encoder.kind, bidirectional=encoder.bidirectional,
        dropout=float(dropout) if isinstance(dropout, (int, float)) and 0 <= dropout < 1 else 0.3,
        decoder_style="luong", input_feed=input_feed, bridge=bridge, **attention_args,
    )
    description = (
        f"opennmt: OpenNMT-py {generation} RNN model: {encoder.kind.upper()} "
        f"{'brnn' if encoder.bidirectional else 'rnn'} encoder, {encoder.num_layers} layer(s), "
        f"hidden {hidden}, {'input-feed' if input_feed else 'standard'} decoder, "
        f"{attention_args['attention']} attention{', bridge' if bridge == 'opennmt' else ''}; "
        f"{len(src_itos)} source and {len(tgt_itos)} target tokens"
    )
    return args, weights, src_tokens, tgt_tokens, description


DICT_NOTE = (
    "\nThis model comes from OpenNMT-py's first `train.py` (2017). Its `translate.py -beam_size 1 "
    "-max_sent_length 100` is `mlxseq translate --model <folder> --search opennmt --beam-size 1 --max-length 100` "
    "(when the output ends before the limit). Its beam search (`onmt.Beam` of that time) let hypotheses go on past "
    "`</s>` and kept every beam's input feed in place when the beams were reordered; that search is not reproduced: "
    "`--search opennmt` is OpenNMT-py's later beam search.\n"
)


def convert_opennmt(checkpoint: Mapping[str, Any], out_dir, *, source_name: str):
    """Write an OpenNMT-py checkpoint as a model folder; ``(folder, description)``."""
    args, weights, src_tokens, tgt_tokens, description = opennmt_model(checkpoint)
    batch_note = (
        "Before 3.0, OpenNMT-py's bridge mixed the states of a batch's sentences when the encoder has several "
        "layers or directions; mlxseq takes each sentence alone, as 3.x does: use `-batch_size 1` there to compare.\n"
        if args.bridge == "opennmt" and args.encoder_layers * (2 if args.bidirectional else 1) > 1
        and "3.x" not in description else ""
    )
    readme = (
        f"# {Path(out_dir).name}\n\n"
        f"Converted by mlxseq from `{source_name}`: {description}.\n\n"
        "`<blank>` became `<pad>`; the other tokens keep their order after `<pad> <unk> <s> </s>`. "
        "Input is tokenized text, split on whitespace, as OpenNMT-py reads it.\n\n"
        "To translate as `onmt_translate -beam_size 5 -max_length 100` (its defaults up to 2.x: no length "
        "penalty, nothing banned):\n\n"
        "    mlxseq translate --model <folder> --search opennmt --beam-size 5 --length-penalty 0 --max-length 100\n\n"
        "`-length_penalty wu -alpha A` is `--length-penalty A` (gnmt), `-length_penalty avg -alpha A` is "
        "`--length-penalty A --length-penalty-kind average`; `-replace_unk` is `--replace-unk`. OpenNMT-py 3.x "
        "translates by default with `-length_penalty avg -alpha 1.0 -max_length 250 -max_length_ratio 1.25`, "
        "that is `--length-penalty 1.0 --length-penalty-kind average --max-length-ratio 1.25 --max-length-offset 5` "
        "(while under 250 tokens).\n"
        f"{batch_note}{DICT_NOTE if DICT_GENERATION in description else ''}"
    )
    folder = save_seq2seq_folder(out_dir, args, weights, src_tokens, tgt_tokens, readme)
    return folder, description
