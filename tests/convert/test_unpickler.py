"""The restricted pickle interpreter against Python's own unpickler on plain data."""

from __future__ import annotations

import io
import math
import pickle
from collections import OrderedDict

import pytest

from mlxseq.convert import CheckpointError, PickledObject, UnsafeGlobalError
from mlxseq.convert.pickle_globals import GlobalResolver
from mlxseq.convert.bounded_stream import BoundedStream
from mlxseq.convert.unpickler import load_pickle


def restricted_loads(data: bytes, allow=()):
    return load_pickle(BoundedStream(io.BytesIO(data), len(data)), GlobalResolver(allow))


PLAIN_DATA = {
    "scalars": [None, True, False, 0, 1, -1, 255, 256, 65535, 65536, -(2**31), 2**31, 2**100, -(2**100),
                0.5, -1e300, float("inf"), "", "text", "ünïcode\n\\", b"", b"\x00\xffbytes"],
    "containers": {"list": [1, [2, [3]]], "tuple": (), "one": (1,), "two": (1, 2), "three": (1, 2, 3),
                   "four": (1, 2, 3, 4), "dict": {(1, "k"): {"nested": [()]}}},
    "builtin types": [{1, 2}, frozenset({"a"}), complex(1, -2), bytearray(b"ab"), slice(1, 9, 2)],
    "ordered": OrderedDict([("b", 1), ("a", [2])]),
    "long text": "x" * 70000,
}


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_matches_pickle_loads(protocol):
    data = pickle.dumps(PLAIN_DATA, protocol=protocol)
    assert restricted_loads(data) == pickle.loads(data)


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_shared_and_recursive_references_survive(protocol):
    inner = [1]
    outer = [inner, inner]
    outer.append(outer)
    loaded = restricted_loads(pickle.dumps(outer, protocol=protocol))
    assert loaded[0] is loaded[1] and loaded[2] is loaded and loaded[0] == [1]


def test_nan_survives():
    assert math.isnan(restricted_loads(pickle.dumps(float("nan"), protocol=2)))


def test_python2_byte_strings_become_text_when_utf8():
    # Python 2 `str` is SHORT_BINSTRING/BINSTRING/STRING; keys are text, blobs stay bytes.
    data = b"\x80\x02}q\x00(U\x03keyq\x01K\x05T\x02\x00\x00\x00\xff\xfeq\x02S'esc\\n'\nu."
    assert restricted_loads(data) == {"key": 5, b"\xff\xfe": "esc\n"}


def test_state_on_a_record_is_kept_not_applied():
    data = pickle.dumps(OrderedDict(a=1), protocol=2)
    assert type(restricted_loads(data)) is OrderedDict
    record_data = b"\x80\x02conmt\nThing\n)\x81}q\x00X\x01\x00\x00\x00aK\x01sb."
    record = restricted_loads(record_data, allow=("onmt.Thing",))
    assert isinstance(record, PickledObject) and record.state == {"a": 1} and record.a == 1


@pytest.mark.parametrize("data, message", [
    (b"", "0 left"),
    (b"\x80\x02]q\x00", "0 left"),  # no STOP
    (b"\x80\x02X\xff\xff\xff\xff", r"4294967295 bytes wanted"),  # a length past the end
    (b"\x80\x02\x8e" + b"\xff" * 8, "bytes wanted"),
    (b"\x80\x02h\x07.", "memo entry 7 was never stored"),
    (b"\x80\x02R.", "stack underflow"),
    (b"\x80\x02e.", "MARK expected"),
    (b"\x80\x02\xff.", "unknown or unsupported pickle opcode"),
    (b"\x80\x09N.", "unsupported pickle protocol 9"),
    (b"\x80\x02K\x01N\x85R.", "calls a int, which is not a global"),
    (b"\x80\x02]K\x01b.", "sets state on a list"),
    (b"\x80\x02)K\x01a.", "cannot append to tuple"),
    (b"\x80\x02NQ.", "persistent id"),
])
def test_corrupt_pickles_are_checkpoint_errors(data, message):
    with pytest.raises(CheckpointError, match=message):
        restricted_loads(data)


def test_unknown_global_is_refused_before_anything_else():
    with pytest.raises(UnsafeGlobalError) as caught:
        restricted_loads(b"\x80\x02cbuiltins\nexec\nX\x01\x00\x00\x00x\x85R.")
    assert caught.value.global_name == "builtins.exec"
