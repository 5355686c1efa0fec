"""Turn a PyTorch checkpoint into an mlxseq model folder (``mlxseq convert``).

Formats:
- ``torch-rnn``: a bare ``nn.RNN``/``nn.GRU``/``nn.LSTM`` (or cell) state dict,
  under any prefix, becomes a ``model_type: recurrent`` folder.

``auto`` recognises the format from the keys and says what it found. The
PyTorch seq2seq tutorial and OpenNMT-py layouts are recognised and refused
with a message until mlxseq's seq2seq model can receive them.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from mlxseq.convert.reader import load_torch_checkpoint
from mlxseq.convert.torch_rnn import build_torch_rnn, find_torch_rnn_prefixes, recurrent_args, torch_rnn_config

FORMATS = ("auto", "torch-rnn")
# Keys under which training scripts commonly nest the state dict.
NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model", "net")


class ConversionError(ValueError):
    """The checkpoint cannot be converted; the message says why and what to pass."""


@dataclass
class Conversion:
    folder: Path
    format: str
    description: str


def state_dict_of(obj: Any, source) -> dict[str, np.ndarray]:
    """The name -> array mapping inside a loaded checkpoint."""
    if isinstance(obj, Mapping):
        arrays = {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
        if arrays and len(arrays) == len(obj):
            return dict(arrays)
        for key in NESTED_STATE_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                return state_dict_of(obj[key], source)
        keys = ", ".join(map(str, list(obj)[:10]))
        raise ConversionError(f"{source}: no state dict of arrays found (top-level keys: {keys})")
    raise ConversionError(f"{source}: expected a state dict, found a {type(obj).__name__}")


def detect_format(state: Mapping[str, Any], source) -> str:
    """The format of a state dict, or ConversionError naming what was recognised."""
    keys = list(state)
    if any(k.startswith(("attn_combine.", "attention.Wa.", "Wa.")) or ".attn_combine." in k for k in keys):
        raise ConversionError(
            f"{source}: this is a PyTorch seq2seq-tutorial model (attention weights found); "
            "its conversion needs mlxseq's seq2seq model, which this version does not have yet"
        )
    if any(k.startswith(("encoder.embeddings.make_embedding", "generator.")) for k in keys):
        raise ConversionError(
            f"{source}: this looks like an OpenNMT-py model; its conversion needs mlxseq's seq2seq model, "
            "which this version does not have yet"
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
) -> Conversion:
    """Read ``source`` without torch and write an mlxseq model folder to ``out_dir``."""
    from mlxseq.checkpoint import save_model

    if format not in FORMATS:
        raise ConversionError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    state = state_dict_of(load_torch_checkpoint(source, allow=allow), source)
    found = detect_format(state, source) if format == "auto" else format

    prefixes = find_torch_rnn_prefixes(state)
    if prefix is None:
        if len(prefixes) != 1:
            listed = ", ".join(repr(p) for p in prefixes) or "none"
            raise ConversionError(f"{source}: {len(prefixes)} recurrent layers found ({listed}); choose one with --prefix")
        prefix = prefixes[0]
    try:
        config, weights = torch_rnn_config(state, prefix)
    except ValueError as error:
        raise ConversionError(f"{source}: {error}") from None
    model = build_torch_rnn(config, weights, nonlinearity=nonlinearity)
    args = recurrent_args(config, nonlinearity=nonlinearity)
    what = (
        f"{config.kind.upper()}{'Cell' if config.cell else ''}(input_size={config.input_size}, "
        f"hidden_size={config.hidden_size}, num_layers={config.num_layers}, bias={config.bias}, "
        f"bidirectional={config.bidirectional}, proj_size={config.proj_size})"
    )
    where = f" under prefix {prefix!r}" if prefix else ""
    description = f"{found}: {what}{where}"
    readme = (
        f"# {Path(out_dir).name}\n\nConverted by mlxseq from `{Path(source).name}` ({description}).\n\n"
        "Load with `mlxseq.load(folder)`; parameter names are PyTorch's.\n"
    )
    folder = save_model(out_dir, model, "recurrent", args, readme=readme)
    return Conversion(folder, found, description)
