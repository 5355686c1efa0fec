"""Resume checkpoints: everything needed to continue a run exactly, written crash-safely.

Layout inside ``output_dir/resume/``::

    state.json                  the pointer: counters, positions, and which folder holds the arrays
    step-00001000-3f2a9c1e/     model.safetensors, optimizer.safetensors (mlx.utils.tree_flatten keys),
                                ranks.safetensors (data parallel: the frozen arrays of ranks 1.., "R/key")

A save writes a new, uniquely named step folder, then replaces ``state.json``
atomically, then deletes the other step folders. A crash or ``kill -9`` at any
point leaves ``state.json`` naming a complete folder: the previous checkpoint
until the rename, the new one after it. Loading ignores (and the next save
removes) folders that ``state.json`` does not name.

``state.json`` holds: ``step``, ``epoch``, the batch iterator's ``state_dict``,
MLX's random key (dropout), the trackers of the validation metric (best value,
early-stopping count, the plateau's lr scale), elapsed seconds and the folder.
The learning-rate schedule needs nothing more: it is a function of the step.
Neither numpy's nor Python's global generators are used by training.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten

from mlxseq._version import __version__
from mlxseq.checkpoint import ModelFolderError, load_weights
from mlxseq.system.files import atomic_write, read_json_object, write_text

FORMAT_VERSION = 1
STATE_FILE = "state.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
RANKS_FILE = "ranks.safetensors"
STATE_KEYS = {
    "format_version", "mlxseq_version", "folder", "step", "epoch", "batches", "random_key", "trackers", "elapsed",
}


class ResumeError(ValueError):
    """A resume checkpoint is missing, unreadable or does not fit the model; the message names the file."""


def save_arrays(path: Path, arrays: dict) -> None:
    """Write arrays as safetensors atomically (a module-level seam, so tests can break a save)."""
    atomic_write(path, lambda tmp: mx.save_safetensors(tmp, arrays), suffix=".safetensors")


def has_checkpoint(folder) -> bool:
    return (Path(folder) / STATE_FILE).is_file()


def save_checkpoint(
    folder, model: nn.Module, optimizer: optim.Optimizer, state: dict, ranks: list[dict] | None = None
) -> Path:
    """Write a checkpoint of ``model``, ``optimizer`` and the counters in ``state`` (JSON-able).

    ``state`` holds every key of ``STATE_KEYS`` except the format fields and ``folder``.
    ``ranks`` (data parallel) holds, by rank, arrays that differ between ranks and are
    not parameters being trained (a language model's carried state); rank 0's are in
    the model file already. Returns the step folder written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    step_folder = folder / f"step-{int(state['step']):08d}-{uuid.uuid4().hex[:8]}"
    step_folder.mkdir()
    save_arrays(step_folder / MODEL_FILE, dict(tree_flatten(model.parameters())))
    save_arrays(step_folder / OPTIMIZER_FILE, dict(tree_flatten(optimizer.state)))
    if ranks and len(ranks) > 1:
        save_arrays(step_folder / RANKS_FILE, {f"{r}/{k}": v for r, arrays in enumerate(ranks) if r for k, v in arrays.items()})
    pointer = {"format_version": FORMAT_VERSION, "mlxseq_version": __version__, "folder": step_folder.name, **state}
    missing = STATE_KEYS - set(pointer)
    if missing:
        raise ValueError(f"resume state lacks {sorted(missing)}")
    write_text(folder / STATE_FILE, json.dumps(pointer, indent=1) + "\n")  # the commit point
    for other in folder.glob("step-*"):
        if other.name != step_folder.name:
            shutil.rmtree(other, ignore_errors=True)
    return step_folder


def read_state(folder) -> dict:
    """``state.json`` of a resume folder, checked; ResumeError naming the file otherwise."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise ResumeError(f"{path}: no resume checkpoint (nothing to resume)")
    state = read_json_object(path, ResumeError)
    version = state.get("format_version")
    if version != FORMAT_VERSION:
        raise ResumeError(f"{path}: format_version {version!r} is not supported (expected {FORMAT_VERSION})")
    unknown, missing = sorted(set(state) - STATE_KEYS), sorted(STATE_KEYS - set(state))
    if unknown or missing:
        raise ResumeError(f"{path}: unknown keys {unknown}, missing keys {missing}")
    if not (Path(folder) / state["folder"]).is_dir():
        raise ResumeError(f"{path}: names {state['folder']!r}, which is not there")
    return state


def load_checkpoint(folder, model: nn.Module, optimizer: optim.Optimizer) -> dict:
    """Load the arrays of the checkpoint in ``folder`` into ``model`` and ``optimizer``; return its state.

    The optimizer must be initialised for the model (``optimizer.init``) so that the
    saved state can be checked name by name and shape by shape.
    """
    state = read_state(folder)
    step_folder = Path(folder) / state["folder"]
    try:
        load_weights(model, step_folder / MODEL_FILE)
    except ModelFolderError as error:
        raise ResumeError(f"the checkpoint does not fit this model: {error}") from None
    path = step_folder / OPTIMIZER_FILE
    try:
        saved = mx.load(str(path))
    except Exception as error:  # noqa: BLE001 - MLX raises several types for unreadable files
        raise ResumeError(f"{path}: cannot read the optimizer state ({error})") from None
    expected = dict(tree_flatten(optimizer.state))
    if set(saved) != set(expected):
        difference = sorted(set(saved) ^ set(expected))[:3]
        raise ResumeError(f"{path}: the optimizer state does not fit this model and optimizer (e.g. {difference})")
    for name, value in saved.items():
        if value.shape != expected[name].shape:
            raise ResumeError(f"{path}: {name} has shape {tuple(value.shape)}, expected {tuple(expected[name].shape)}")
    set_leaves(optimizer.state, saved)
    return state


def load_rank_arrays(folder, state: dict) -> dict[int, dict]:
    """The ``ranks`` arrays of the checkpoint whose ``state.json`` is ``state``: {rank: {key: array}}, {} if none."""
    path = Path(folder) / state["folder"] / RANKS_FILE
    if not path.is_file():
        return {}
    ranks: dict[int, dict] = {}
    for name, value in mx.load(str(path)).items():
        rank, key = name.split("/", 1)
        ranks.setdefault(int(rank), {})[key] = value
    return ranks


def set_leaves(tree, arrays: dict) -> None:
    """Put each ``tree_flatten`` key's array into ``tree`` in place.

    In place, because a compiled step may hold this very tree; and leaf by leaf,
    because the optimizer keeps empty entries for modules without parameters
    (dropout) that flattening drops and ``tree_unflatten`` would not bring back.
    """
    for key, value in arrays.items():
        node, parts = tree, key.split(".")
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(parts[-1])] = value
        else:
            node[parts[-1]] = value
