"""A pickle interpreter that imports nothing and calls only what it is given.

``pickle.Unpickler`` imports every module a pickle names and calls whatever it
finds there, so loading an untrusted checkpoint with it runs the author's code.
This interpreter reads the same opcodes (protocols 0-5) but:

1. every global goes through a ``find_global(module, name)`` callback, which
   returns a :class:`PickledGlobal` or refuses;
2. REDUCE/NEWOBJ/INST/OBJ only call ``PickledGlobal.call``/``.new`` (code this
   package owns), never a Python object's ``__call__``;
3. BUILD, SETITEMS, APPENDS and ADDITEMS only touch plain containers and
   :class:`PickledObject` records; ``__setstate__`` and ``setattr`` are never used;
4. reads go through a :class:`BoundedStream`, so a corrupt length cannot ask
   for more memory than the file holds, and every opcode consumes input, so
   the loop ends;
5. tuples and frozensets are the only containers that Python hashes or prints
   by walking them; a memoised DAG of them (``t_k = (t_{k-1}, t_{k-1})``) is
   2^k nodes as a tree, so one as a dict key would hash forever. Each one's
   size as a tree is counted when it is built and capped.
"""

from __future__ import annotations

import codecs
import struct
from collections import OrderedDict
from typing import Any, Callable

import numpy as np

from .bounded_stream import BoundedStream
from .errors import CheckpointError
from .pickled_objects import PickledGlobal, PickledObject

FindGlobal = Callable[[str, str], Any]
PersistentLoad = Callable[[Any], Any]

_HIGHEST_PROTOCOL = 5
_MAX_NAME_BYTES = 4096
# Nodes of a tuple/frozenset as a tree (shared members counted each time they appear).
MAX_TREE_NODES = 1_000_000


class RestrictedUnpickler:
    """Rebuilds one pickle from ``stream`` using only the given callbacks.

    Args:
        stream: where the pickle's bytes come from; reading stops after STOP.
        find_global: ``(module, name) -> value`` for GLOBAL/STACK_GLOBAL/INST;
            it refuses by raising. Values used as callables must be
            :class:`PickledGlobal`.
        persistent_load: ``(pid) -> value`` for PERSID/BINPERSID; ``None``
            refuses persistent ids.
    """

    def __init__(self, stream: BoundedStream, find_global: FindGlobal,
                 persistent_load: PersistentLoad | None = None):
        self._stream = stream
        self._find_global = find_global
        self._persistent_load = persistent_load
        self._stack: list = []
        self._metastack: list[list] = []
        self._memo: dict[int, Any] = {}
        # id -> (the tuple or frozenset itself, kept alive so its id stays its own; its tree size)
        self._tree_sizes: dict[int, tuple[Any, int]] = {}

    def load(self) -> Any:
        """Run the opcodes up to STOP and return the object left on the stack."""
        read = self._stream.read
        dispatch = _DISPATCH
        while True:
            opcode = read(1)
            if opcode == b".":
                return self._pop()
            handler = dispatch.get(opcode)
            if handler is None:
                raise CheckpointError(
                    f"unknown or unsupported pickle opcode {opcode!r} at byte {self._stream.position - 1}"
                )
            handler(self)

    # -- stack ---------------------------------------------------------------
    def _pop(self) -> Any:
        if not self._stack:
            raise CheckpointError("corrupt pickle: stack underflow")
        return self._stack.pop()

    def _top(self) -> Any:
        if not self._stack:
            raise CheckpointError("corrupt pickle: stack underflow")
        return self._stack[-1]

    def _pop_mark(self) -> list:
        if not self._metastack:
            raise CheckpointError("corrupt pickle: MARK expected")
        items = self._stack
        self._stack = self._metastack.pop()
        return items

    def _mark(self) -> None:
        self._metastack.append(self._stack)
        self._stack = []

    # -- scalars -------------------------------------------------------------
    def _unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self._stream.read(struct.calcsize(fmt)))[0]

    def _proto(self) -> None:
        protocol = self._stream.read(1)[0]
        if protocol > _HIGHEST_PROTOCOL:
            raise CheckpointError(f"unsupported pickle protocol {protocol}")

    def _frame(self) -> None:
        self._unpack("<Q")  # framing is only a read-ahead hint

    def _int_text(self) -> None:
        line = self._stream.readline()
        if line == b"00":
            self._stack.append(False)
        elif line == b"01":
            self._stack.append(True)
        else:
            self._stack.append(int(line))

    def _long_text(self) -> None:
        line = self._stream.readline()
        if line.endswith(b"L"):
            line = line[:-1]
        self._stack.append(int(line, 0))

    def _long_binary(self, fmt: str) -> None:
        size = self._unpack(fmt)
        self._stack.append(int.from_bytes(self._stream.read(size), "little", signed=True))

    def _float_text(self) -> None:
        self._stack.append(float(self._stream.readline()))

    def _string_text(self) -> None:
        # Python 2 str: a quoted, backslash-escaped byte string.
        line = self._stream.readline()
        if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
            raise CheckpointError("corrupt pickle: STRING opcode argument is not quoted")
        self._stack.append(_py2_string(codecs.escape_decode(line[1:-1])[0]))

    def _string_binary(self, fmt: str) -> None:
        self._stack.append(_py2_string(self._stream.read(self._unpack(fmt))))

    def _bytes_binary(self, fmt: str) -> None:
        self._stack.append(self._stream.read(self._unpack(fmt)))

    def _bytearray8(self) -> None:
        self._stack.append(bytearray(self._stream.read(self._unpack("<Q"))))

    def _unicode_text(self) -> None:
        self._stack.append(str(self._stream.readline(), "raw-unicode-escape"))

    def _unicode_binary(self, fmt: str) -> None:
        data = self._stream.read(self._unpack(fmt))
        try:
            self._stack.append(str(data, "utf-8", "surrogatepass"))
        except UnicodeDecodeError:
            raise CheckpointError(
                f"corrupt pickle: text before byte {self._stream.position} is not UTF-8") from None

    # -- containers ----------------------------------------------------------
    def _tuple_n(self, n: int) -> None:
        if len(self._stack) < n:
            raise CheckpointError("corrupt pickle: stack underflow")
        items = tuple(self._stack[len(self._stack) - n:]) if n else ()
        del self._stack[len(self._stack) - n:]
        self._stack.append(self._counted(items))

    def _push_from_mark(self, kind: type) -> None:
        # Pop first: popping the mark switches self._stack to the outer stack.
        items = self._pop_mark()
        self._stack.append(self._counted(kind(items)))

    def _counted(self, value: Any) -> Any:
        """``value`` after checking its size as a tree, when it is a tuple or frozenset (see module docstring)."""
        if type(value) not in (tuple, frozenset) or not value:
            return value
        size = 1
        for member in value:
            known = self._tree_sizes.get(id(member))
            if known is not None and known[0] is member:
                size += known[1]
            elif type(member) in (tuple, frozenset) and member:  # built by a call, not counted yet
                self._counted(member)
                size += self._tree_sizes[id(member)][1]
        if size > MAX_TREE_NODES:
            raise CheckpointError(
                f"the pickle nests tuples that expand to more than {MAX_TREE_NODES:,} nodes "
                f"(a memoised DAG); refused")
        self._tree_sizes[id(value)] = (value, size)
        return value

    def _dict_from_mark(self) -> None:
        items = self._pop_mark()
        self._stack.append(dict(_pairs(items)))

    def _setitems(self, pairs: list[tuple]) -> None:
        target = self._top()
        if isinstance(target, dict):
            mapping = target
        elif isinstance(target, PickledObject):
            mapping = target.items
        else:
            raise CheckpointError(f"corrupt pickle: cannot set items on {type(target).__name__}")
        for key, value in pairs:
            mapping[key] = value

    def _appends(self, values: list) -> None:
        target = self._top()
        if isinstance(target, list):
            target.extend(values)
        elif isinstance(target, PickledObject):
            target.list.extend(values)
        else:
            raise CheckpointError(f"corrupt pickle: cannot append to {type(target).__name__}")

    def _additems(self) -> None:
        values = self._pop_mark()
        target = self._top()
        if not isinstance(target, set):
            raise CheckpointError(f"corrupt pickle: cannot add items to {type(target).__name__}")
        target.update(values)

    def _build(self) -> None:
        state = self._pop()
        target = self._top()
        if isinstance(target, PickledObject):
            target.state = state
        elif type(target) is OrderedDict and isinstance(state, dict) and all(map(_is_str, state)):
            # torch state dicts carry `_metadata` as an instance attribute.
            shadowing = sorted(key for key in state if hasattr(OrderedDict, key))
            if shadowing:
                raise CheckpointError(
                    f"the pickle sets attribute {shadowing[0]!r} on an OrderedDict, which would hide its method")
            target.__dict__.update(state)
        elif isinstance(target, np.ndarray) and _is_variable_metadata(state):
            # torch <= 0.3 pickled a Parameter/Variable as its tensor, then BUILD with
            # (requires_grad, volatile, backward_hooks): metadata, the values are the tensor's.
            pass
        else:
            raise CheckpointError(
                f"the pickle sets state on a {type(target).__name__}, which is not supported")

    # -- memo ----------------------------------------------------------------
    def _get(self, index: int) -> None:
        try:
            self._stack.append(self._memo[index])
        except KeyError:
            raise CheckpointError(f"corrupt pickle: memo entry {index} was never stored") from None

    def _put(self, index: int) -> None:
        if index < 0:
            raise CheckpointError("corrupt pickle: negative memo index")
        self._memo[index] = self._top()

    # -- globals and calls ---------------------------------------------------
    def _read_name(self) -> str:
        # Module and class names are short; a corrupt file must not make one line the whole file.
        line = self._stream.readline(limit=_MAX_NAME_BYTES)
        try:
            return line.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError(f"corrupt pickle: a global's name is not text ({line[:40]!r})") from None

    def _global_text(self) -> None:
        module = self._read_name()
        name = self._read_name()
        self._stack.append(self._find_global(module, name))

    def _stack_global(self) -> None:
        name = self._pop()
        module = self._pop()
        if not isinstance(module, str) or not isinstance(name, str):
            raise CheckpointError("corrupt pickle: STACK_GLOBAL needs two strings")
        self._stack.append(self._find_global(module, name))

    def _reduce(self) -> None:
        args = self._pop()
        func = self._top()
        self._stack[-1] = self._counted(_call(func, args))

    def _newobj(self) -> None:
        args = self._pop()
        cls = self._pop()
        self._stack.append(self._counted(_new(cls, args, {})))

    def _newobj_ex(self) -> None:
        kwargs = self._pop()
        args = self._pop()
        cls = self._pop()
        if not isinstance(kwargs, dict):
            raise CheckpointError("corrupt pickle: NEWOBJ_EX keyword arguments are not a dict")
        self._stack.append(self._counted(_new(cls, args, kwargs)))

    def _inst(self) -> None:
        module = self._read_name()
        name = self._read_name()
        cls = self._find_global(module, name)
        args = tuple(self._pop_mark())
        self._stack.append(self._counted(_call(cls, args)))

    def _obj(self) -> None:
        args = self._pop_mark()
        if not args:
            raise CheckpointError("corrupt pickle: OBJ without a class")
        self._stack.append(self._counted(_call(args[0], tuple(args[1:]))))

    def _persistent(self, pid: Any) -> None:
        if self._persistent_load is None:
            raise CheckpointError("the pickle refers to external data (persistent id) where none is expected")
        self._stack.append(self._persistent_load(pid))

    def _refuse(self, what: str) -> None:
        raise CheckpointError(f"the pickle uses {what}, which is not supported")


def _call(func: Any, args: Any) -> Any:
    if not isinstance(func, PickledGlobal):
        raise CheckpointError(f"the pickle calls a {type(func).__name__}, which is not a global")
    if not isinstance(args, tuple):
        raise CheckpointError("corrupt pickle: call arguments are not a tuple")
    return func.call(args)


def _new(cls: Any, args: Any, kwargs: dict) -> Any:
    if not isinstance(cls, PickledGlobal):
        raise CheckpointError(f"the pickle instantiates a {type(cls).__name__}, which is not a global")
    if not isinstance(args, tuple):
        raise CheckpointError("corrupt pickle: NEWOBJ arguments are not a tuple")
    return cls.new(args, kwargs)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_variable_metadata(state: Any) -> bool:
    """torch 0.1-0.3's Variable state: (requires_grad, volatile, hooks), or 5 fields in the oldest files."""
    return (isinstance(state, tuple) and len(state) in (3, 5)
            and all(value is None or isinstance(value, (bool, dict)) for value in state))


def _pairs(items: list) -> list[tuple]:
    if len(items) % 2:
        raise CheckpointError("corrupt pickle: odd number of items for a dict")
    return [(items[i], items[i + 1]) for i in range(0, len(items), 2)]


def _py2_string(data: bytes) -> str | bytes:
    """A Python 2 ``str``: text if it is UTF-8 (names, keys), else the raw bytes."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def _setitem(self: RestrictedUnpickler) -> None:
    value = self._pop()
    key = self._pop()
    self._setitems([(key, value)])


_DISPATCH: dict[bytes, Callable[[RestrictedUnpickler], None]] = {
    b"\x80": RestrictedUnpickler._proto,
    b"\x95": RestrictedUnpickler._frame,
    b"(": RestrictedUnpickler._mark,
    b"0": lambda u: u._pop() if u._stack else u._pop_mark(),
    b"1": lambda u: u._pop_mark() and None,
    b"2": lambda u: u._stack.append(u._top()),
    b"N": lambda u: u._stack.append(None),
    b"\x88": lambda u: u._stack.append(True),
    b"\x89": lambda u: u._stack.append(False),
    b"I": RestrictedUnpickler._int_text,
    b"J": lambda u: u._stack.append(u._unpack("<i")),
    b"K": lambda u: u._stack.append(u._stream.read(1)[0]),
    b"M": lambda u: u._stack.append(u._unpack("<H")),
    b"L": RestrictedUnpickler._long_text,
    b"\x8a": lambda u: u._long_binary("<B"),
    b"\x8b": lambda u: u._long_binary("<i"),
    b"F": RestrictedUnpickler._float_text,
    b"G": lambda u: u._stack.append(u._unpack(">d")),
    b"S": RestrictedUnpickler._string_text,
    b"T": lambda u: u._string_binary("<i"),
    b"U": lambda u: u._string_binary("<B"),
    b"B": lambda u: u._bytes_binary("<I"),
    b"C": lambda u: u._bytes_binary("<B"),
    b"\x8e": lambda u: u._bytes_binary("<Q"),
    b"\x96": RestrictedUnpickler._bytearray8,
    b"V": RestrictedUnpickler._unicode_text,
    b"X": lambda u: u._unicode_binary("<I"),
    b"\x8c": lambda u: u._unicode_binary("<B"),
    b"\x8d": lambda u: u._unicode_binary("<Q"),
    b")": lambda u: u._stack.append(()),
    b"t": lambda u: u._push_from_mark(tuple),
    b"\x85": lambda u: u._tuple_n(1),
    b"\x86": lambda u: u._tuple_n(2),
    b"\x87": lambda u: u._tuple_n(3),
    b"]": lambda u: u._stack.append([]),
    b"l": lambda u: u._push_from_mark(list),
    b"}": lambda u: u._stack.append({}),
    b"d": RestrictedUnpickler._dict_from_mark,
    b"\x8f": lambda u: u._stack.append(set()),
    b"\x91": lambda u: u._push_from_mark(frozenset),
    b"a": lambda u: u._appends([u._pop()]),
    b"e": lambda u: u._appends(u._pop_mark()),
    b"s": _setitem,
    b"u": lambda u: u._setitems(_pairs(u._pop_mark())),
    b"\x90": RestrictedUnpickler._additems,
    b"b": RestrictedUnpickler._build,
    b"g": lambda u: u._get(int(u._stream.readline())),
    b"h": lambda u: u._get(u._stream.read(1)[0]),
    b"j": lambda u: u._get(u._unpack("<I")),
    b"p": lambda u: u._put(int(u._stream.readline())),
    b"q": lambda u: u._put(u._stream.read(1)[0]),
    b"r": lambda u: u._put(u._unpack("<I")),
    b"\x94": lambda u: u._put(len(u._memo)),
    b"c": RestrictedUnpickler._global_text,
    b"\x93": RestrictedUnpickler._stack_global,
    b"R": RestrictedUnpickler._reduce,
    b"\x81": RestrictedUnpickler._newobj,
    b"\x92": RestrictedUnpickler._newobj_ex,
    b"i": RestrictedUnpickler._inst,
    b"o": RestrictedUnpickler._obj,
    b"P": lambda u: u._persistent(u._read_name()),
    b"Q": lambda u: u._persistent(u._pop()),
    b"\x82": lambda u: u._refuse("the copyreg extension registry (EXT1)"),
    b"\x83": lambda u: u._refuse("the copyreg extension registry (EXT2)"),
    b"\x84": lambda u: u._refuse("the copyreg extension registry (EXT4)"),
    b"\x97": lambda u: u._refuse("out-of-band buffers (NEXT_BUFFER)"),
    b"\x98": lambda u: u._refuse("out-of-band buffers (READONLY_BUFFER)"),
}


def load_pickle(stream: BoundedStream, find_global: FindGlobal,
                persistent_load: PersistentLoad | None = None) -> Any:
    """Rebuild the next pickle in ``stream`` (see :class:`RestrictedUnpickler`)."""
    return RestrictedUnpickler(stream, find_global, persistent_load).load()
