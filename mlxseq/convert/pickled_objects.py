"""Inert stand-ins for the classes and functions a pickle names.

A pickle rebuilds objects by naming globals (``module.name``) and calling them.
The restricted unpickler never imports or calls those globals: each name it
accepts becomes a :class:`PickledGlobal`, whose behaviour is a function this
package wrote, and objects of allowed-but-unknown classes become
:class:`PickledObject` records that only hold the pickled data.
"""

from __future__ import annotations

from typing import Any, Callable

from .errors import CheckpointError

Builder = Callable[..., Any]


class PickledObject:
    """An object of an allowed class, kept as the data its pickle carried.

    The class is never imported and nothing of it runs. What Python would have
    passed to the class is kept as is:

    Attributes:
        class_path: dotted ``module.name`` of the class, e.g. ``argparse.Namespace``.
        args: positional arguments of the constructor call (REDUCE / NEWOBJ).
        kwargs: keyword arguments (NEWOBJ_EX, protocol 4), usually empty.
        state: what ``__setstate__`` would have received (BUILD), often a dict
            of attributes; ``None`` if the pickle set no state.
        items: key/value pairs the pickle stored with ``obj[key] = value``
            (dict subclasses such as ``collections.defaultdict``).
        list: values the pickle appended (list subclasses).

    Attribute access falls back to the state: ``record.lr`` returns
    ``record.state["lr"]`` when the state is a dict (or a ``(dict, slots)`` pair).
    """

    def __init__(self, class_path: str, args: tuple = (), kwargs: dict | None = None):
        self.class_path = class_path
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.state: Any = None
        self.items: dict = {}
        self.list: list = []

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not real attributes. Dunder names are
        # refused so that copy/pickle protocols never find callables in the state.
        if name.startswith("__"):
            raise AttributeError(name)
        for part in _state_dicts(self.__dict__.get("state")):
            if name in part:
                return part[name]
        class_path = self.__dict__.get("class_path", "PickledObject")
        raise AttributeError(f"{class_path} record has no attribute {name!r}")

    def __repr__(self) -> str:
        parts = [repr(self.class_path)]
        if self.args:
            parts.append(f"args=<{len(self.args)} values>")
        if self.state is not None:
            keys = [k for d in _state_dicts(self.state) for k in d]
            parts.append(f"state={keys[:8]!r}" if keys else "state=<set>")
        if self.items:
            parts.append(f"items=<{len(self.items)} entries>")
        if self.list:
            parts.append(f"list=<{len(self.list)} values>")
        return f"PickledObject({', '.join(parts)})"


def _state_dicts(state: Any) -> list[dict]:
    """The dict parts of a pickled state: a dict, or the two halves of (dict, slots)."""
    if isinstance(state, dict):
        return [state]
    if isinstance(state, tuple) and len(state) == 2:
        return [part for part in state if isinstance(part, dict)]
    return []


class PickledGlobal:
    """A global named by a pickle, bound to a builder this package owns.

    The unpickler calls :meth:`call` for REDUCE/INST/OBJ and :meth:`new` for
    NEWOBJ. With no builder given, both produce a :class:`PickledObject`.
    Used as a plain value (e.g. the ``default_factory`` of a defaultdict) it is
    just a name.

    Attributes:
        class_path: dotted ``module.name`` of the global.
    """

    __slots__ = ("class_path", "_call", "_new")

    def __init__(self, class_path: str, call: Builder | None = None, new: Builder | None = None):
        self.class_path = class_path
        self._call = call
        self._new = new

    def call(self, args: tuple) -> Any:
        """What calling the global with ``args`` rebuilds (REDUCE, INST, OBJ)."""
        if self._call is None:
            return PickledObject(self.class_path, args)
        return self._call(*args)

    def new(self, args: tuple, kwargs: dict | None = None) -> Any:
        """What ``cls.__new__(cls, *args, **kwargs)`` rebuilds (NEWOBJ, NEWOBJ_EX)."""
        if self._new is not None:
            return self._new(*args, **(kwargs or {}))
        if self._call is None:
            return PickledObject(self.class_path, args, kwargs)
        raise CheckpointError(f"the pickle creates an instance of '{self.class_path}', which is not a class")

    def __repr__(self) -> str:
        return f"PickledGlobal({self.class_path!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PickledGlobal) and other.class_path == self.class_path

    def __hash__(self) -> int:
        return hash(("PickledGlobal", self.class_path))
