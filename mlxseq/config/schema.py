"""Training configs: the task-aware schema of a config file, versioned, read strictly.

A config file has these top-level keys (the task decides what ``data`` and
``validation`` hold; see :mod:`mlxseq.tasks`)::

    version: 1                 # format version of the file (this mlxseq writes 1)
    task: translation          # what is trained
    output_dir: runs/name      # the run folder
    model: {model_type: seq2seq, hidden_size: 512, ...}   # ModelArgs fields of that model type
    data: {...}                # the task's DataArgs
    training: {...}            # TrainingArgs (mlxseq.training.args)
    validation: {...}          # the task's ValidationArgs (optional)

Loading is strict: an unknown key anywhere, a missing required key, a duplicate
key or a value of the wrong type is a :class:`ConfigError` whose message starts
with ``file:line: dotted.key:`` (or ``--set key=value:`` when an override is at
fault). Overrides ``key.sub=value`` are parsed with YAML's scalar rules, so
``--set training.lr=2e-3`` is a number and ``--set data.joint_vocab=false`` a bool.

Files written by an older format version keep loading: ``MIGRATIONS[v]`` turns a
version-``v`` dict into version ``v + 1``, applied until the current version.

Data files (``data.train``, ``data.valid_src``, ...) are found as
:mod:`mlxseq.data.locations` says: a path that exists as written (absolute, or relative to
the directory mlxseq is run from) is used as it is, ``hf://datasets/OWNER/NAME/PATH`` is
fetched from the Hugging Face Hub, and other relative paths start at the data root
(``data.root``, else ``$MLXSEQ_DATA``, else ``./data``). Other relative paths
(``output_dir``) are relative to the directory mlxseq is run from.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from mlxseq.config.strict import (Context, apply_overrides, convert_value, describe, read_config_file,
                                  read_dataclass)
from mlxseq.data.locations import DataLocationError, data_root, resolve_data_files
from mlxseq.models import model_module
from mlxseq.tasks import task_module
from mlxseq.training.args import TrainingArgs

CONFIG_VERSION = 1
# Format version v -> a function turning a version-v dict into version v + 1. None yet.
MIGRATIONS: dict[int, Callable[[dict], dict]] = {}
TOP_LEVEL_KEYS = ("version", "task", "output_dir", "model", "data", "training", "validation")
# Keys that moved; a config using an old place loads, with a one-line note (Config.notes).
MOVED_KEYS = {
    "model.adversarial": "training.adversarial",
    "model.adversarial_per_token": "training.adversarial_per_token",
    "data.teachers": "training.teachers",
    "data.teacher_weight": "training.teacher_weight",
}
# training.<key> -> what a task must list in its TECHNIQUES to accept it, and the value meaning "off".
TECHNIQUE_KEYS = {"adversarial": ("adversarial", 0.0), "teachers": ("distillation", ())}


@dataclass
class ModelConfig:
    """The ``model`` section: a model type and the ModelArgs fields the config sets."""

    model_type: str  # a key of mlxseq.models.MODEL_TYPES, e.g. seq2seq
    args: dict = field(default_factory=dict)  # ModelArgs fields; unset ones take the model's defaults

    def model_args(self, **filled):
        """The model type's ``ModelArgs`` from these fields plus ``filled`` (what the task knows)."""
        return model_module(self.model_type).ModelArgs(**self.args, **filled)


@dataclass
class Config:
    """A whole training config. ``data`` and ``validation`` are the task's dataclasses."""

    task: str  # what is trained: a key of mlxseq.tasks.TASKS (translation, lm, ...)
    output_dir: str  # the run folder: last/, best/, resume/, metrics.jsonl, curves.png
    model: ModelConfig  # model_type and its ModelArgs fields
    data: Any  # the task's DataArgs: files, tokenizer, lengths
    training: TrainingArgs = field(default_factory=TrainingArgs)  # optimizer, schedule, stopping, checkpoints
    validation: Any = None  # the task's ValidationArgs: how validation decodes and scores
    version: int = CONFIG_VERSION  # format version of the file
    source: str = field(default="<dict>", compare=False)  # where the config came from (not a key)
    data_root: str = field(default="", compare=False)  # where relative data paths started (data.root, not a field)
    notes: list = field(default_factory=list, compare=False)  # one line per moved key the file used


# --- the model section ----------------------------------------------------------------


def _placeholder(hint) -> Any:
    return {int: 8, float: 0.0, bool: False, str: ""}.get(hint)


def _read_model(data: Any, task, context: Context) -> ModelConfig:
    if not isinstance(data, dict):
        raise context.error("model", f"expected a section with model_type and its settings, got {describe(data)}")
    model_type = convert_value(data.get("model_type"), str, "model.model_type", context)
    if model_type not in task.MODEL_TYPES:
        raise context.error(
            "model.model_type", f"task {task.NAME!r} trains {', '.join(task.MODEL_TYPES)}, not {model_type!r}"
        )
    try:
        args_class = model_module(model_type).ModelArgs
    except ValueError as error:
        raise context.error("model.model_type", str(error)) from None
    fields = {f.name: f for f in dataclasses.fields(args_class)}
    hints = typing.get_type_hints(args_class)
    args = {}
    for key, value in data.items():
        if key == "model_type":
            continue
        if key in task.FILLED_MODEL_FIELDS:
            raise context.error(f"model.{key}", task.FILLED_MODEL_FIELDS[key])
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise context.error(f"model.{key}", f"unknown key for model_type {model_type!r}{hint}")
        args[key] = convert_value(value, hints[key], f"model.{key}", context)
    # Run the model's own checks now (odd hidden size, bad attention...), not after hours of data prep.
    filled = {name: _placeholder(hints[name]) for name in task.FILLED_MODEL_FIELDS}
    try:
        args_class(**filled, **args)
    except (TypeError, ValueError) as error:
        raise context.error("model", str(error)) from None
    return ModelConfig(model_type, args)


# --- whole configs -------------------------------------------------------------------


def config_from_dict(
    raw: Any, source: str = "<dict>", *, lines: dict[str, int] | None = None, overrides: Iterable[str] = ()
) -> Config:
    """Build a :class:`Config` from a parsed file, after applying ``overrides`` (``key.sub=value``)."""
    origins: dict[str, str] = {}
    raw = apply_overrides(raw, overrides, origins)
    context = Context(source, lines, origins)
    if not isinstance(raw, dict):
        raise context.error(None, f"a config must be a mapping of {', '.join(TOP_LEVEL_KEYS)}, got {describe(raw)}")
    raw = _migrate(raw, context)
    raw, notes = _moved_keys(raw, source)
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            close = difflib.get_close_matches(str(key), TOP_LEVEL_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(TOP_LEVEL_KEYS)}"
            raise context.error(str(key), f"unknown key{hint}")
    for key in ("task", "output_dir", "model", "data"):
        if key not in raw:
            raise context.error(key, "missing (required)")
    name = convert_value(raw["task"], str, "task", context)
    try:
        task = task_module(name)
    except ValueError as error:
        raise context.error("task", str(error)) from None
    data_raw, root = raw["data"], None
    if isinstance(data_raw, dict) and "root" in data_raw:
        data_raw = dict(data_raw)
        root = convert_value(data_raw.pop("root"), str, "data.root", context)
    config = Config(
        task=name,
        output_dir=convert_value(raw["output_dir"], str, "output_dir", context),
        model=_read_model(raw["model"], task, context),
        data=_with_data_paths_resolved(read_dataclass(task.DataArgs, data_raw, prefix="data.", context=context),
                                       data_root(root), context),
        training=read_dataclass(TrainingArgs, raw.get("training"), prefix="training.", context=context),
        validation=read_dataclass(task.ValidationArgs, raw.get("validation"), prefix="validation.", context=context),
        version=raw["version"],
    )
    for key, (technique, off) in TECHNIQUE_KEYS.items():
        if getattr(config.training, key) != off and technique not in getattr(task, "TECHNIQUES", ()):
            raise context.error(f"training.{key}", f"task {name!r} has no {technique} training")
    for key, message in task.check_config(config):
        raise context.error(key, message)
    config.notes = notes
    config.source = source
    config.data_root = str(data_root(root))
    return config


def _moved_keys(raw: dict, source: str) -> tuple[dict, list[str]]:
    """``raw`` with keys at their old places (:data:`MOVED_KEYS`) moved, and a note for each."""
    notes = []
    for old, new in MOVED_KEYS.items():
        (old_section, old_key), (new_section, new_key) = old.split("."), new.split(".")
        section = raw.get(old_section)
        if not isinstance(section, dict) or old_key not in section:
            continue
        raw = {**raw, old_section: {k: v for k, v in section.items() if k != old_key}}
        target = raw.get(new_section) if isinstance(raw.get(new_section), dict) else {}
        if new_key not in target:
            raw[new_section] = {**target, new_key: section[old_key]}
        notes.append(f"{source}: {old} is now {new}; it was read from there (move it in the file)")
    return raw, notes


def _with_data_paths_resolved(data, root: Path, context: Context):
    """``data`` with its data file paths resolved (:func:`mlxseq.data.locations.resolve_data_files`)."""
    try:
        return resolve_data_files(data, root)
    except DataLocationError as error:
        raise context.error(f"data.{error.key}", str(error)) from None


def _migrate(raw: dict, context: Context) -> dict:
    if "version" not in raw:
        raise context.error("version", f"missing: the config format version (this mlxseq writes {CONFIG_VERSION})")
    version = raw["version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise context.error("version", f"expected an integer format version, got {describe(version)}")
    if version > CONFIG_VERSION:
        raise context.error(
            "version", f"format version {version} is newer than this mlxseq reads (up to {CONFIG_VERSION}); upgrade mlxseq"
        )
    while version < CONFIG_VERSION:
        if version not in MIGRATIONS:
            raise context.error("version", f"format version {version} is not supported (oldest readable: 1)")
        raw = MIGRATIONS[version](dict(raw))
        version += 1
        raw["version"] = version
    return raw


def load_config(path, overrides: Iterable[str] = ()) -> Config:
    """Read a YAML (``.yaml``/``.yml``) or JSON (``.json``) config file, then apply ``overrides``."""
    raw, lines, source = read_config_file(path)
    return config_from_dict(raw, source, lines=lines, overrides=overrides)


# --- writing ----------------------------------------------------------------------------


def config_to_dict(config: Config) -> dict:
    """The config as plain data (what a file holding it would say), ``version`` first."""

    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {
        "version": config.version,
        "task": config.task,
        "output_dir": config.output_dir,
        "model": {"model_type": config.model.model_type, **plain(config.model.args)},
        "data": plain(config.data),
        "training": plain(config.training),
        "validation": plain(config.validation),
    }


def dump_config(config: Config) -> str:
    """The config as YAML text that :func:`load_config` reads back to an equal config."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False, allow_unicode=True)
