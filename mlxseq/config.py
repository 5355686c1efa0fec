"""Training configs: strict, versioned dataclasses read from YAML or JSON, with dotted overrides.

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
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Union

import yaml

from mlxseq.data.locations import DataLocationError, data_root, resolve_data_files
from mlxseq.models import model_module
from mlxseq.tasks import task_module
from mlxseq.training.args import TrainingArgs

CONFIG_VERSION = 1
# Format version v -> a function turning a version-v dict into version v + 1. None yet.
MIGRATIONS: dict[int, Callable[[dict], dict]] = {}
TOP_LEVEL_KEYS = ("version", "task", "output_dir", "model", "data", "training", "validation")


class ConfigError(ValueError):
    """A config is unreadable or invalid; the message names the file (or override), line and key.

    Attributes:
        source: the config file or ``--set key=value`` at fault.
        key: the dotted key at fault, or ``None`` for the whole file.
        line: the 1-based line of the key in the file, when known.
    """

    def __init__(self, message: str, source: str | None = None, key: str | None = None, line: int | None = None):
        self.source, self.key, self.line = source, key, line
        where = "" if source is None else f"{source}:" + ("" if line is None else f"{line}:")
        what = f" {key}:" if key else ""
        super().__init__(f"{where}{what} {message}".strip())


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


# --- errors with places -----------------------------------------------------------


class _Context:
    """Where values came from: the file with a line per dotted key, or an override."""

    def __init__(self, source: str, lines: dict[str, int] | None = None, overrides: dict[str, str] | None = None):
        self.source, self.lines, self.overrides = source, lines or {}, overrides or {}

    def error(self, key: str | None, message: str) -> ConfigError:
        if key:
            parts = key.split(".")
            for n in range(len(parts), 0, -1):  # the override that set this key or a parent of it
                prefix = ".".join(parts[:n])
                if prefix in self.overrides:
                    return ConfigError(message, f"--set {self.overrides[prefix]}", key)
            for n in range(len(parts), 0, -1):  # the nearest line the file has for it
                line = self.lines.get(".".join(parts[:n]))
                if line is not None:
                    return ConfigError(message, self.source, key, line)
        return ConfigError(message, self.source, key)


def _describe(value: Any) -> str:
    name = "null" if value is None else type(value).__name__
    text = repr(value)
    return f"{name} {text[:40] + '...' if len(text) > 43 else text}" if value is not None else name


# --- strict dataclass reading -------------------------------------------------------


def read_dataclass(cls, data: Any, *, prefix: str = "", context: _Context | None = None):
    """Build dataclass ``cls`` from a dict strictly: known keys only, types checked.

    ``prefix`` is the dotted path of the section (``"training."``), used in errors.
    A field holding a dataclass reads a nested section the same way. A ValueError
    from the class's own checks (``__post_init__``) is reported for the section.
    """
    context = context or _Context("<dict>")
    section = prefix.rstrip(".") or None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise context.error(section, f"expected a section of {cls.__name__} settings (a mapping), got {_describe(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(fields)}"
            raise context.error(f"{prefix}{key}", f"unknown key{hint}")
    values = {}
    for name, spec in fields.items():
        if name in data:
            values[name] = _convert(data[name], hints[name], f"{prefix}{name}", context)
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise context.error(f"{prefix}{name}", "missing (required)")
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise context.error(section, str(error)) from None


def _convert(value: Any, hint: Any, key: str, context: _Context) -> Any:
    """``value`` checked (and where lossless, converted) against the annotation ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return read_dataclass(hint, value, prefix=f"{key}.", context=context)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _convert(value, options[0], key, context)
        return value
    if origin is Literal:
        if not any(value == a and type(value) is type(a) for a in args):
            raise context.error(key, f"must be one of {', '.join(map(repr, args))}, got {_describe(value)}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise context.error(key, f"expected true or false, got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise context.error(key, f"expected an integer, got {_describe(value)}")
        return value
    if hint is float:
        return _float(value, key, context)
    if hint is str:
        if not isinstance(value, str):
            raise context.error(key, f"expected a string, got {_describe(value)}")
        return value
    if origin in (list, tuple) or hint in (list, tuple):
        return _sequence(value, hint, origin or hint, args, key, context)
    if (origin or hint) is dict and not isinstance(value, dict):
        raise context.error(key, f"expected a mapping, got {_describe(value)}")
    return value


def _float(value: Any, key: str, context: _Context) -> float:
    if isinstance(value, str):
        # YAML 1.1 (PyYAML) reads 1e-3 as a string: it wants 1.0e-3. Accept what float() reads.
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise context.error(key, f"expected a number, got {_describe(value)}")
    return float(value)


def _sequence(value, hint, kind, args, key, context):
    if not isinstance(value, (list, tuple)):
        raise context.error(key, f"expected a list, got {_describe(value)}")
    if kind is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise context.error(key, f"expected a list of {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{key}.{i}", context) for i, (v, a) in enumerate(zip(value, args)))
    item = args[0] if args else Any
    items = [_convert(v, item, f"{key}.{i}", context) for i, v in enumerate(value)]
    return tuple(items) if kind is tuple else items


# --- the model section ----------------------------------------------------------------


def _placeholder(hint) -> Any:
    return {int: 8, float: 0.0, bool: False, str: ""}.get(hint)


def _read_model(data: Any, task, context: _Context) -> ModelConfig:
    if not isinstance(data, dict):
        raise context.error("model", f"expected a section with model_type and its settings, got {_describe(data)}")
    model_type = _convert(data.get("model_type"), str, "model.model_type", context)
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
        args[key] = _convert(value, hints[key], f"model.{key}", context)
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
    context = _Context(source, lines, origins)
    if not isinstance(raw, dict):
        raise context.error(None, f"a config must be a mapping of {', '.join(TOP_LEVEL_KEYS)}, got {_describe(raw)}")
    raw = _migrate(raw, context)
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            close = difflib.get_close_matches(str(key), TOP_LEVEL_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(TOP_LEVEL_KEYS)}"
            raise context.error(str(key), f"unknown key{hint}")
    for key in ("task", "output_dir", "model", "data"):
        if key not in raw:
            raise context.error(key, "missing (required)")
    name = _convert(raw["task"], str, "task", context)
    try:
        task = task_module(name)
    except ValueError as error:
        raise context.error("task", str(error)) from None
    data_raw, root = raw["data"], None
    if isinstance(data_raw, dict) and "root" in data_raw:
        data_raw = dict(data_raw)
        root = _convert(data_raw.pop("root"), str, "data.root", context)
    config = Config(
        task=name,
        output_dir=_convert(raw["output_dir"], str, "output_dir", context),
        model=_read_model(raw["model"], task, context),
        data=_with_data_paths_resolved(read_dataclass(task.DataArgs, data_raw, prefix="data.", context=context),
                                       data_root(root), context),
        training=read_dataclass(TrainingArgs, raw.get("training"), prefix="training.", context=context),
        validation=read_dataclass(task.ValidationArgs, raw.get("validation"), prefix="validation.", context=context),
        version=raw["version"],
    )
    for key, message in task.check_config(config):
        raise context.error(key, message)
    config.source = source
    config.data_root = str(data_root(root))
    return config


def _with_data_paths_resolved(data, root: Path, context: _Context):
    """``data`` with its data file paths resolved (:func:`mlxseq.data.locations.resolve_data_files`)."""
    try:
        return resolve_data_files(data, root)
    except DataLocationError as error:
        raise context.error(f"data.{error.key}", str(error)) from None


def _migrate(raw: dict, context: _Context) -> dict:
    if "version" not in raw:
        raise context.error("version", f"missing: the config format version (this mlxseq writes {CONFIG_VERSION})")
    version = raw["version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise context.error("version", f"expected an integer format version, got {_describe(version)}")
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
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise ConfigError("no such config file" if not path.exists() else "is not a file", source)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"not UTF-8 text ({error.reason})", source) from None
    if path.suffix == ".json":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"not valid JSON: {error.msg}", source, line=error.lineno) from None
    else:
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            problem = getattr(error, "problem", None) or str(error)
            raise ConfigError(f"not valid YAML: {problem}", source, line=mark.line + 1 if mark else None) from None
    if raw is None:
        raise ConfigError("the file is empty", source)
    return config_from_dict(raw, source, lines=_line_map(text, source), overrides=overrides)


def _line_map(text: str, source: str) -> dict[str, int]:
    """1-based line of every dotted key of a YAML (or JSON) text; duplicate keys are errors."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    lines: dict[str, int] = {}

    def walk(node, prefix):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, value_node in node.value:
                dotted = f"{prefix}{key_node.value}"
                if dotted in seen:
                    raise ConfigError("duplicate key", source, dotted, key_node.start_mark.line + 1)
                seen.add(dotted)
                lines[dotted] = key_node.start_mark.line + 1
                walk(value_node, f"{dotted}.")
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[f"{prefix}{i}"] = item.start_mark.line + 1
                walk(item, f"{prefix}{i}.")

    walk(root, "")
    return lines


# --- overrides -------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"training.lr=2e-3"`` -> ``(["training", "lr"], 0.002)``; the value by YAML's scalar rules."""
    key, sep, value = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError("expected key.sub=value, e.g. training.lr=0.001", f"--set {text}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"the value is not a YAML scalar ({getattr(error, 'problem', error)})", f"--set {text}") from None
    return parts, parsed


def apply_overrides(raw: Any, overrides: Iterable[str], origins: dict[str, str] | None = None) -> Any:
    """A copy of ``raw`` with each ``key.sub=value`` set (sections created as needed).

    ``origins`` receives the dotted key -> override text, for error messages.
    """
    overrides = list(overrides)
    if not overrides:
        return raw
    raw = json.loads(json.dumps(raw)) if raw is not None else {}
    for text in overrides:
        parts, value = parse_override(text)
        node = raw
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part) if isinstance(node, dict) else None
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"{where} is a value, not a section", f"--set {text}", ".".join(parts))
            node = child
        if not isinstance(node, dict):
            raise ConfigError("the config is not a mapping", f"--set {text}")
        node[parts[-1]] = value
        if origins is not None:
            origins[".".join(parts)] = text
    return raw


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


def changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts (for resuming with edits)."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed.extend(changed_keys(a, b, f"{prefix}{key}."))
        elif a != b:
            changed.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return changed
