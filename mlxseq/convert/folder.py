"""Turn a PyTorch checkpoint into an mlxseq model folder (``mlxseq convert``).

Formats:
- ``torch-rnn``: a bare ``nn.RNN``/``nn.GRU``/``nn.LSTM`` (or cell) state dict,
  under any prefix, becomes a ``model_type: recurrent`` folder.
- ``pytorch-tutorial``: the PyTorch seq2seq translation tutorial's encoder and
  attention decoder (:mod:`mlxseq.convert.tutorial`), in one file (nested or
  prefixed state dicts) or two (``decoder=``), with the word lists given by the user.
- ``opennmt``: an OpenNMT-py RNN checkpoint of any generation, vocabulary included
  (:mod:`mlxseq.convert.opennmt`); its pickled options and vocabulary objects are read
  as inert records.

``auto`` recognises the format from the keys and says what it found.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from mlxseq.convert.errors import UnsafeGlobalError
from mlxseq.convert.pickled_modules import MODULE_PATTERNS, is_module_record, looks_like_class, module_state_dict
from mlxseq.convert.reader import load_torch_checkpoint
from mlxseq.convert.opennmt import OPENNMT_GLOBALS, convert_opennmt, is_opennmt_checkpoint
from mlxseq.convert.tutorial import TutorialError, convert_tutorial, find_tutorial_layout
from mlxseq.convert.torch_rnn import (build_torch_rnn, find_torch_rnn_prefixes, layer_source_keys, recurrent_args,
                                      torch_rnn_config)

FORMATS = ("auto", "torch-rnn", "pytorch-tutorial", "opennmt")
# Keys under which training scripts commonly nest the state dict.
NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model_state", "model", "net")
# Mappings inside mappings deeper than this, or more of them than this, are not a model's weights.
MAX_NESTING = 100
MAX_CONTAINERS = 100_000


class ConversionError(ValueError):
    """The checkpoint cannot be converted; the message says why and what to pass."""


@dataclass
class Conversion:
    folder: Path
    format: str
    description: str
    left_out: list[str] = field(default_factory=list)  # tensors of the checkpoint the folder does not hold


def state_dict_of(obj: Any, source, _depth: int = 0) -> dict[str, np.ndarray]:
    """The name -> array mapping inside a loaded checkpoint."""
    if is_module_record(obj):
        return dict(module_state_dict(obj))
    if isinstance(obj, Mapping):
        # Parameter names are strings; other keys (ints, tuples) name no weight.
        if obj and all(isinstance(v, np.ndarray) for v in obj.values()):
            arrays = {k: v for k, v in obj.items() if isinstance(k, str)}
            if arrays:
                return arrays
        for key in NESTED_STATE_KEYS:
            if key in obj and isinstance(obj[key], Mapping) and obj[key] is not obj and _depth < MAX_NESTING:
                return state_dict_of(obj[key], source, _depth + 1)
        keys = ", ".join(map(str, list(obj)[:10]))
        raise ConversionError(f"{source}: no state dict of arrays found (top-level keys: {keys})")
    raise ConversionError(f"{source}: expected a state dict, found a {type(obj).__name__}")


def load_accepting_module_classes(source, allow: tuple[str, ...]) -> Any:
    """:func:`load_torch_checkpoint`, also reading the user's own classes (capitalised names, as in
    ``torch.save(model)``) as inert records: they are never imported or called either way."""
    accepted: list[str] = []
    while True:
        try:
            return load_torch_checkpoint(source, allow=allow + tuple(accepted))
        except UnsafeGlobalError as error:
            if not looks_like_class(error.global_name) or error.global_name in accepted or len(accepted) >= 100:
                raise
            accepted.append(error.global_name)


def flat_arrays(obj: Any, source, prefix: str = "") -> dict[str, np.ndarray]:
    """Every array inside nested mappings, lists and module records, keyed by its dotted path
    (``{"encoder": {"gru.x": a}}`` gives ``{"encoder.gru.x": a}``; ``[model, criterion, optimizer]``,
    as AWD-LSTM saves, gives ``0.rnns.0.module.weight_ih_l0`` ...); other values are left out.
    A container that holds itself, containers nested more than :data:`MAX_NESTING` deep, or more
    than :data:`MAX_CONTAINERS` of them reached (shared ones counted each time) are a
    :class:`ConversionError`."""
    found: dict[str, np.ndarray] = {}
    budget = [MAX_CONTAINERS]

    def walk(obj: Any, prefix: str, ancestors: tuple[int, ...]) -> None:
        if is_module_record(obj):  # torch.save(model): what model.state_dict() would give
            obj = module_state_dict(obj)
        if isinstance(obj, Mapping):
            items = obj.items()
        elif isinstance(obj, (list, tuple)):
            items = enumerate(obj)
        else:
            return
        where = repr(prefix[:-1][:200]) if prefix else "the top level"
        if id(obj) in ancestors:
            raise ConversionError(f"{source}: the checkpoint holds itself at {where} (a cycle of containers)")
        if len(ancestors) >= MAX_NESTING:
            raise ConversionError(f"{source}: containers nested more than {MAX_NESTING} levels deep at {where[:80]}...")
        budget[0] -= 1
        if budget[0] < 0:
            raise ConversionError(f"{source}: more than {MAX_CONTAINERS:,} nested containers: not a model's weights")
        inside = ancestors + (id(obj),)
        for key, value in items:
            if isinstance(value, np.ndarray):
                found[f"{prefix}{key}"] = value
            elif isinstance(value, (Mapping, list, tuple)) or is_module_record(value):
                walk(value, f"{prefix}{key}.", inside)

    walk(obj, prefix, ())
    return found


def detect_format(state: Mapping[str, Any], source) -> str:
    """The format of a state dict, or ConversionError naming what was recognised."""
    keys = list(state)
    if find_tutorial_layout(state) is not None:
        return "pytorch-tutorial"
    if any(k.endswith(("attn_combine.weight", "attention.Wa.weight")) for k in keys):
        raise ConversionError(
            f"{source}: PyTorch seq2seq-tutorial decoder weights found, but not together with its encoder "
            "(embedding and gru); if they were saved to two files, pass the decoder's with --decoder"
        )
    if any(k.startswith(("encoder.embeddings.make_embedding", "generator.", "model.encoder.embeddings.",
                         "encoder.word_lut.")) for k in keys):
        raise ConversionError(
            f"{source}: OpenNMT-py weights without the checkpoint around them; convert the file OpenNMT-py "
            "saved (with its 'model', 'generator' and 'vocab' entries, or 'dicts' before torchtext)"
        )
    if find_torch_rnn_prefixes(state):
        return "torch-rnn"
    raise ConversionError(f"{source}: no recognised weights (first keys: {', '.join(keys[:8])})")


def convert_checkpoint(
    source,
    out_dir,
    *,
    format: str = "auto",
    prefix: str | None = None,
    nonlinearity: str = "tanh",
    allow: tuple[str, ...] = (),
    decoder=None,
    src_vocab=None,
    tgt_vocab=None,
    key: str | None = None,
) -> Conversion:
    """Read ``source`` without torch and write an mlxseq model folder to ``out_dir``.

    Args:
        format: one of ``FORMATS``; ``auto`` recognises it from the keys.
        prefix, nonlinearity: ``torch-rnn`` only: which layer, and an ``nn.RNN``'s nonlinearity.
        allow: extra pickled globals to read as inert records.
        decoder: ``pytorch-tutorial`` only: the decoder's file when ``source`` holds the encoder alone.
        src_vocab, tgt_vocab: ``pytorch-tutorial`` only: word-list files, one word per line in index order.
        key: a dotted path to the part of the checkpoint to convert (``model_state``), when it holds several.
    """
    if format not in FORMATS:
        raise ConversionError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    suffix = str(source).lower().rpartition(".")[2]
    if suffix in ("onnx", "keras", "h5"):
        if suffix == "onnx":
            from mlxseq.convert.onnx_rnn import read_onnx_recurrent as read_recurrent
        elif suffix == "keras":
            from mlxseq.convert.keras_rnn import read_keras_recurrent as read_recurrent
        else:
            from mlxseq.convert.keras_rnn import read_keras2_h5 as read_recurrent

        state, layer_options = read_recurrent(source)
        prefixes = find_torch_rnn_prefixes(state)
        chosen = prefix if prefix is not None else (prefixes[0] if len(prefixes) == 1 else None)
        options = layer_options.get(chosen, {})  # what the file says and its weights could not
        return _convert_torch_rnn(state, source, out_dir, suffix, prefix, options.get("nonlinearity", nonlinearity),
                                  reset_after=options.get("reset_after", True))
    allow = tuple(allow) + OPENNMT_GLOBALS + MODULE_PATTERNS  # inert records either way
    loaded = load_accepting_module_classes(source, allow)
    if format in ("auto", "opennmt") and is_opennmt_checkpoint(loaded):
        try:
            folder, description = convert_opennmt(loaded, out_dir, source_name=Path(source).name)
        except ValueError as error:
            raise ConversionError(f"{source}: {error}") from None
        return Conversion(folder, "opennmt", description)
    if format == "opennmt":
        raise ConversionError(f"{source}: not an OpenNMT-py checkpoint (a dict with 'model' and 'vocab' or 'dicts')")
    if decoder is not None:
        loaded = {"encoder": loaded, "decoder": load_accepting_module_classes(decoder, allow)}
    if key is not None:
        loaded = subtree(loaded, key, source)
    elif isinstance(loaded, Mapping):  # {"epoch": 3, "model_state_dict": {...}}: prefixes start inside it
        nested = next((k for k in NESTED_STATE_KEYS
                       if isinstance(loaded.get(k), Mapping) or is_module_record(loaded.get(k))), None)
        whole = flat_arrays(loaded, source) if nested is not None else {}
        if any(k.startswith(f"{nested}.") for k in whole):
            left = sorted(k for k in whole if not k.startswith(f"{nested}."))
            result = _convert_loaded(loaded[nested], source, out_dir, format, prefix, nonlinearity, src_vocab, tgt_vocab)
            result.left_out += left
            return result
    return _convert_loaded(loaded, source, out_dir, format, prefix, nonlinearity, src_vocab, tgt_vocab)


def _convert_loaded(loaded, source, out_dir, format, prefix, nonlinearity, src_vocab, tgt_vocab) -> Conversion:
    flat = flat_arrays(loaded, source)
    if not flat:
        state_dict_of(loaded, source)  # says what was found instead
    found = detect_format(flat, source) if format == "auto" else format
    if found == "pytorch-tutorial":
        try:
            folder, description = convert_tutorial(
                flat, out_dir, src_vocab=src_vocab, tgt_vocab=tgt_vocab, source_name=Path(source).name
            )
        except (TutorialError, ValueError) as error:
            raise ConversionError(f"{source}: {error}") from None
        return Conversion(folder, found, description)
    # Layers are found wherever they sit in the tree: {"checkpoint": {"rnn.weight_ih_l0": ...}} has
    # the layer under the prefix 'checkpoint.rnn.'.
    return _convert_torch_rnn(flat, source, out_dir, found, prefix, nonlinearity)


def subtree(loaded: Any, key: str, source) -> Any:
    """The part of a loaded checkpoint at dotted ``key`` (``model_state``, ``checkpoint.model``)."""
    node, walked = loaded, []
    for part in key.split("."):
        if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):  # [model, criterion, ...]
            node, walked = node[int(part)], walked + [part]
            continue
        if is_module_record(node) and isinstance(node.state.get("_modules"), Mapping):
            node = node.state["_modules"]  # a pickled module's children by name
        if not isinstance(node, Mapping):
            raise ConversionError(f"{source}: --key {key}: {'.'.join(walked) or 'the file'} holds a "
                                  f"{type(node).__name__}, not a mapping")
        match = next((k for k in node if str(k) == part), None)
        if match is None:
            keys = ", ".join(map(str, list(node)[:10]))
            raise ConversionError(f"{source}: --key {key}: no {part!r} in {'.'.join(walked) or 'the file'} "
                                  f"(keys: {keys})")
        node, walked = node[match], walked + [part]
    return node


def _convert_torch_rnn(state, source, out_dir, found, prefix, nonlinearity, *, reset_after=True) -> Conversion:
    from mlxseq.checkpoint import save_model

    prefixes = find_torch_rnn_prefixes(state)
    if prefix is None:
        if len(prefixes) != 1:
            listed = ", ".join(repr(p) for p in prefixes) or "none"
            raise ConversionError(f"{source}: {len(prefixes)} recurrent layers found ({listed}); choose one with --prefix (or a part of the file with --key)")
        prefix = prefixes[0]
    try:
        config, weights = torch_rnn_config(state, prefix, reset_after=reset_after)
    except ValueError as error:
        raise ConversionError(f"{source}: {error}") from None
    model = build_torch_rnn(config, weights, nonlinearity=nonlinearity)
    args = recurrent_args(config, nonlinearity=nonlinearity)
    what = (
        f"{config.kind.upper()}{'Cell' if config.cell else ''}(input_size={config.input_size}, "
        f"hidden_size={config.hidden_size}, num_layers={config.num_layers}, bias={config.bias}, "
        f"bidirectional={config.bidirectional}, proj_size={config.proj_size}"
        + "".join(f", {name}={value}" for name, value, default in (
            ("peephole", config.peephole, False), ("reset_after", config.reset_after, True),
            ("learn_initial_state", config.learn_initial_state, False)) if value != default)
        + ")"
    )
    where = f" under prefix {prefix!r}" if prefix else ""
    description = f"{found}: {what}{where}"
    readme = (
        f"# {Path(out_dir).name}\n\nConverted by mlxseq from `{Path(source).name}` ({description}).\n\n"
        "Load with `mlxseq.load(folder)`; parameter names are PyTorch's.\n"
    )
    folder = save_model(out_dir, model, "recurrent", args, readme=readme)
    used = set(layer_source_keys(state, config.prefix).values())
    left_out = sorted(key for key in state if key not in used)
    return Conversion(folder, found, description, left_out)
