"""Strict reading of settings files into dataclasses, with errors that name the place.

Nothing here knows what a training config holds (:mod:`mlxseq.config.schema` does):

- :func:`read_config_file`: a YAML or JSON file, with the line of every dotted key
  (duplicate keys are errors);
- :func:`read_dataclass`: a mapping into a dataclass, known keys only, each value checked
  against its annotation (``int``, ``float``, ``Literal``, optionals, lists, nested dataclasses);
- :func:`apply_overrides` / :func:`parse_override`: ``key.sub=value`` overrides, values by
  YAML's scalar rules;
- :class:`ConfigError`: messages start with ``file:line: dotted.key:`` (or ``--set key=value:``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Literal, Union

import yaml


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


# --- errors with places -----------------------------------------------------------


class Context:
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


def describe(value: Any) -> str:
    name = "null" if value is None else type(value).__name__
    text = repr(value)
    return f"{name} {text[:40] + '...' if len(text) > 43 else text}" if value is not None else name


# --- strict dataclass reading -------------------------------------------------------


def read_dataclass(cls, data: Any, *, prefix: str = "", context: Context | None = None):
    """Build dataclass ``cls`` from a dict strictly: known keys only, types checked.

    ``prefix`` is the dotted path of the section (``"training."``), used in errors.
    A field holding a dataclass reads a nested section the same way. A ValueError
    from the class's own checks (``__post_init__``) is reported for the section.
    """
    context = context or Context("<dict>")
    section = prefix.rstrip(".") or None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise context.error(section, f"expected a section of {cls.__name__} settings (a mapping), got {describe(data)}")
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
            values[name] = convert_value(data[name], hints[name], f"{prefix}{name}", context)
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise context.error(f"{prefix}{name}", "missing (required)")
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise context.error(section, str(error)) from None


def convert_value(value: Any, hint: Any, key: str, context: Context) -> Any:
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
            return convert_value(value, options[0], key, context)
        return value
    if origin is Literal:
        if not any(value == a and type(value) is type(a) for a in args):
            raise context.error(key, f"must be one of {', '.join(map(repr, args))}, got {describe(value)}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise context.error(key, f"expected true or false, got {describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise context.error(key, f"expected an integer, got {describe(value)}")
        return value
    if hint is float:
        return _float(value, key, context)
    if hint is str:
        if not isinstance(value, str):
            raise context.error(key, f"expected a string, got {describe(value)}")
        return value
    if origin in (list, tuple) or hint in (list, tuple):
        return _sequence(value, hint, origin or hint, args, key, context)
    if (origin or hint) is dict and not isinstance(value, dict):
        raise context.error(key, f"expected a mapping, got {describe(value)}")
    return value


def _float(value: Any, key: str, context: Context) -> float:
    if isinstance(value, str):
        # YAML 1.1 (PyYAML) reads 1e-3 as a string: it wants 1.0e-3. Accept what float() reads.
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise context.error(key, f"expected a number, got {describe(value)}")
    return float(value)


def _sequence(value, hint, kind, args, key, context):
    if not isinstance(value, (list, tuple)):
        raise context.error(key, f"expected a list, got {describe(value)}")
    if kind is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise context.error(key, f"expected a list of {len(args)} values, got {len(value)}")
        return tuple(convert_value(v, a, f"{key}.{i}", context) for i, (v, a) in enumerate(zip(value, args)))
    item = args[0] if args else Any
    items = [convert_value(v, item, f"{key}.{i}", context) for i, v in enumerate(value)]
    return tuple(items) if kind is tuple else items


def read_config_file(path) -> tuple[Any, dict[str, int], str]:
    """``(parsed data, line of every dotted key, source name)`` of a YAML (``.yaml``/``.yml``) or
    JSON (``.json``) file; unreadable files, syntax errors and duplicate keys are ConfigErrors."""
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
    return raw, line_map(text, source), source


def line_map(text: str, source: str) -> dict[str, int]:
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
