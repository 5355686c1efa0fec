"""Which globals a checkpoint's pickle may name, and what each one rebuilds.

The allowlist is deliberately small: plain builtin data types, ordered dicts,
the copyreg helpers Python uses to pickle ordinary objects, plus whatever the
torch tensor module adds (rebuild functions, storage types, dtypes). Any other
name is refused with :class:`UnsafeGlobalError` unless the caller allows it
with an exact path or an ``fnmatch`` pattern; allowed names become inert
:class:`PickledObject` records. Nothing here imports a module or calls a
pickled callable.
"""

from __future__ import annotations

import _compat_pickle
import fnmatch
from collections import OrderedDict
from typing import Any, Callable, Iterable

from .errors import CheckpointError, UnsafeGlobalError
from .pickled_objects import PickledGlobal, PickledObject

ExtraGlobals = Callable[[str], Any]

# torch renamed modules; torch.load maps the old names the same way.
_MODULE_RENAMES = {"torch.tensor": "torch._tensor"}

_TEXT_ENCODINGS = {"latin1", "latin-1", "utf-8", "utf8", "ascii"}


def _refuse_records(name: str, args: tuple) -> None:
    # Builtins probe their arguments (dict() looks up `.keys`), and a record's
    # attribute access reads pickled state, so records never reach a builtin.
    for arg in args:
        if isinstance(arg, (PickledObject, PickledGlobal)):
            raise CheckpointError(f"the pickle passes a {type(arg).__name__} to builtins.{name}")


_SCALARS = (str, bytes, bytearray, int, float, complex, bool, type(None))
# Types whose constructors turn a container into text or a number by walking it
# (str of a list DAG is exponentially long): they take scalars only.
_SCALAR_TYPES = (str, bytes, bytearray, int, float, complex, bool)


def _plain_type(kind: type) -> PickledGlobal:
    """A builtin data type, called and instantiated only with plain data."""
    name = kind.__name__

    def call(*args: Any) -> Any:
        _refuse_records(name, args)
        if kind in _SCALAR_TYPES:
            for arg in args:
                if not isinstance(arg, _SCALARS):
                    raise CheckpointError(f"the pickle passes a {type(arg).__name__} to builtins.{name}")
        if kind in (bytes, bytearray) and args and isinstance(args[0], int):
            # bytes(n) allocates n zero bytes: a one-line memory bomb.
            raise CheckpointError(f"the pickle asks for builtins.{name} of a given size")
        return kind(*args)

    def new(*args: Any) -> Any:
        _refuse_records(name, args)
        return kind.__new__(kind) if kind is object else call(*args)

    return PickledGlobal(f"builtins.{name}", call, new)


def _ordered_dict(*args: Any) -> OrderedDict:
    _refuse_records("OrderedDict", args)
    return OrderedDict(*args)


def _codecs_encode(text: Any, encoding: str = "utf-8") -> bytes:
    # Protocol 2 pickles write bytes as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding not in _TEXT_ENCODINGS:
        raise CheckpointError("the pickle calls _codecs.encode with something other than text")
    return text.encode(encoding)


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """copyreg._reconstructor: how protocols 0-1 pickle ordinary objects."""
    if not isinstance(cls, PickledGlobal):
        raise CheckpointError("copyreg._reconstructor is given something that is not a class")
    return cls.new(() if state is None else (state,))


def _newobj(cls: Any, *args: Any) -> Any:
    if not isinstance(cls, PickledGlobal):
        raise CheckpointError("copyreg.__newobj__ is given something that is not a class")
    return cls.new(args)


def _newobj_ex(cls: Any, args: Any, kwargs: Any) -> Any:
    if not isinstance(cls, PickledGlobal) or not isinstance(args, tuple) or not isinstance(kwargs, dict):
        raise CheckpointError("copyreg.__newobj_ex__ is given malformed arguments")
    return cls.new(args, kwargs)


def _base_globals() -> dict[str, PickledGlobal]:
    table = {
        f"builtins.{kind.__name__}": _plain_type(kind)
        for kind in (set, frozenset, slice, complex, bytearray, bytes, int, float,
                     bool, str, tuple, list, dict, object)
    }
    table["collections.OrderedDict"] = PickledGlobal(
        "collections.OrderedDict", _ordered_dict, lambda *a, **k: OrderedDict())
    table["_codecs.encode"] = PickledGlobal("_codecs.encode", _codecs_encode)
    table["copyreg._reconstructor"] = PickledGlobal("copyreg._reconstructor", _reconstructor)
    table["copyreg.__newobj__"] = PickledGlobal("copyreg.__newobj__", _newobj)
    table["copyreg.__newobj_ex__"] = PickledGlobal("copyreg.__newobj_ex__", _newobj_ex)
    return table


BASE_GLOBALS = _base_globals()


def canonical_global_name(module: str, name: str) -> str:
    """``module.name`` with Python 2 spellings mapped (``__builtin__.set`` -> ``builtins.set``)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    module = _MODULE_RENAMES.get(module, module)
    return f"{module}.{name}"


def normalize_allow(allow: str | Iterable[str]) -> tuple[str, ...]:
    """The ``allow`` argument as a tuple of patterns (a lone string is one pattern)."""
    patterns = (allow,) if isinstance(allow, str) else tuple(allow)
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise TypeError(f"allow must hold non-empty 'module.name' strings or patterns, got {pattern!r}")
    return patterns


class GlobalResolver:
    """The ``find_global`` callback of the restricted unpickler.

    Args:
        allow: extra ``module.name`` paths or ``fnmatch`` patterns (``onmt.*``)
            whose objects are kept as :class:`PickledObject` records.
        extra: ``path -> value or None``, consulted after the builtin table;
            the tensor module passes its rebuild functions, storages and dtypes.
    """

    def __init__(self, allow: Iterable[str] = (), extra: ExtraGlobals | None = None):
        self._allow = normalize_allow(allow)
        self._extra = extra
        self._records: dict[str, PickledGlobal] = {}

    def __call__(self, module: str, name: str) -> Any:
        path = canonical_global_name(module, name)
        if path in BASE_GLOBALS:
            return BASE_GLOBALS[path]
        if self._extra is not None:
            value = self._extra(path)
            if value is not None:
                return value
        spelled = f"{module}.{name}"
        if any(fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(spelled, p) for p in self._allow):
            return self._records.setdefault(path, PickledGlobal(path))
        raise UnsafeGlobalError(path, spelled=spelled)
