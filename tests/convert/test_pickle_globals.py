"""The allowlist: hostile pickles are refused unrun, allowed classes become inert records.

Every hostile payload would create a marker file if it ran; each test first
shows with ``pickle.loads`` that the payload is live, then that the reader
refuses it by name inside both checkpoint layouts and the marker never appears.
"""

from __future__ import annotations

import argparse
import collections
import os
import pickle
import subprocess
import sys
import types

import pytest
import torch

from checkpoint_builders import (call_op, global_op, pickle_of, plain, write_legacy_checkpoint,
                                 write_zip_checkpoint)
from mlxseq.convert import (CheckpointError, PickledGlobal, PickledObject, UnsafeGlobalError,
                            load_torch_checkpoint)


def os_system(marker):
    return call_op("os", "system", f"touch {marker}")


def posix_system(marker):
    return call_op("posix", "system", f"touch {marker}")


def builtins_eval(marker):
    return call_op("builtins", "eval", f"open({str(marker)!r}, 'w').close()")


def popen(marker):
    # Popen returns at once; wait() on the live check makes the marker certain.
    return call_op("subprocess", "Popen", ["touch", str(marker)])


def import_then_getattr(marker):
    # os = __import__("os"); getattr(os, "system")("touch marker")
    return (call_op("builtins", "__import__", "os") + b"q\x640"
            + global_op("builtins", "getattr") + b"h\x64" + plain("system") + b"\x86R"
            + plain((f"touch {marker}",)) + b"R")


def ordered_dict_of_os_system(marker):
    # An allowed class whose argument is itself a call of os.system.
    return global_op("collections", "OrderedDict") + os_system(marker) + b"\x85R"


def stack_global_system(marker):
    # Protocol 4 names globals from strings on the stack.
    return plain("os") + plain("system") + b"\x93" + plain((f"touch {marker}",)) + b"R"


def inst_system(marker):
    # Protocol 0 INST: module and name in the opcode, arguments after a MARK.
    return b"(" + plain(f"touch {marker}") + b"ios\nsystem\n"


def reconstructor_of_popen(marker):
    # Python 2 objects: copy_reg._reconstructor(cls, object, state).
    return (global_op("copy_reg", "_reconstructor") + b"(" + global_op("subprocess", "Popen")
            + global_op("__builtin__", "object") + plain(["touch", str(marker)]) + b"tR")


PAYLOADS = {
    "os_system": (os_system, "os.system"),
    "posix_system": (posix_system, "posix.system"),
    "eval": (builtins_eval, "builtins.eval"),
    "popen": (popen, "subprocess.Popen"),
    "import": (import_then_getattr, "builtins.__import__"),
    "ordered_dict_arg": (ordered_dict_of_os_system, "os.system"),
    "stack_global": (stack_global_system, "os.system"),
    "inst": (inst_system, "os.system"),
    "reconstructor": (reconstructor_of_popen, "subprocess.Popen"),
}


def in_checkpoint(tmp_path, layout, body):
    """The payload as the object pickle of a checkpoint next to a real tensor record."""
    data = pickle_of(body)
    if layout == "zip":
        return write_zip_checkpoint(tmp_path / "evil.pt", data)
    return write_legacy_checkpoint(tmp_path / "evil.pt", data)


@pytest.mark.parametrize("name", sorted(set(PAYLOADS) - {"reconstructor"}))
def test_payload_is_live_under_plain_pickle(tmp_path, name):
    marker = tmp_path / "ran"
    try:
        result = pickle.loads(pickle_of(PAYLOADS[name][0](marker)))
    except TypeError:  # OrderedDict(0): os.system already ran
        result = None
    if isinstance(result, subprocess.Popen):
        result.wait()
    assert marker.exists()


@pytest.mark.parametrize("layout", ["zip", "legacy"])
@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_hostile_global_is_refused_by_name_and_never_runs(tmp_path, layout, name):
    build, refused = PAYLOADS[name]
    marker = tmp_path / "ran"
    path = in_checkpoint(tmp_path, layout, build(marker))
    with pytest.raises(UnsafeGlobalError) as caught:
        load_torch_checkpoint(path)
    assert caught.value.global_name == refused
    assert str(caught.value).startswith(f"{path}: refusing to load the global '{refused}'")
    assert f"allow=('{refused}',)" in str(caught.value)
    assert not marker.exists()


class Exploit:
    """What an attacker pickles: an object whose reduce is os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_torch_save_of_an_exploit_is_refused(tmp_path, layout):
    marker = tmp_path / "ran"
    path = tmp_path / "model.pt"
    torch.save({"weight": torch.ones(2), "hook": Exploit(marker)}, path,
               _use_new_zipfile_serialization=(layout == "zip"))
    with pytest.raises(UnsafeGlobalError) as caught:
        load_torch_checkpoint(path)
    assert caught.value.global_name in ("posix.system", "nt.system")  # how pickle spells os.system
    assert not marker.exists()


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_allowing_a_dangerous_name_still_runs_nothing(tmp_path, layout):
    marker = tmp_path / "ran"
    path = in_checkpoint(tmp_path, layout, os_system(marker))
    record = load_torch_checkpoint(path, allow=("os.system",))
    assert (record.class_path, record.args) == ("os.system", (f"touch {marker}",))
    assert not marker.exists()


def test_allowed_class_with_hostile_argument_is_refused(tmp_path):
    marker = tmp_path / "ran"
    body = global_op("argparse", "Namespace") + os_system(marker) + b"\x85R"
    path = in_checkpoint(tmp_path, "zip", body)
    with pytest.raises(UnsafeGlobalError, match="'os.system'"):
        load_torch_checkpoint(path, allow=("argparse.Namespace",))
    assert not marker.exists()


@pytest.mark.parametrize("opcodes, what", [
    (b"\x82\x01", "extension registry"),
    (b"\x97", "out-of-band buffers"),
])
def test_opcodes_that_reach_outside_the_file_are_refused(tmp_path, opcodes, what):
    path = in_checkpoint(tmp_path, "zip", opcodes)
    with pytest.raises(CheckpointError, match=what):
        load_torch_checkpoint(path)


def test_a_builtin_type_never_sees_a_record(tmp_path):
    # dict(record) would look up record.keys, which reads pickled state.
    body = (global_op("builtins", "dict") + global_op("onmt", "Thing") + b")\x81"
            + plain({"keys": 1}) + b"b\x85R")
    path = in_checkpoint(tmp_path, "zip", body)
    with pytest.raises(CheckpointError, match="passes a PickledObject to builtins.dict"):
        load_torch_checkpoint(path, allow=("onmt.*",))


def test_bytes_of_a_given_size_is_refused(tmp_path):
    path = in_checkpoint(tmp_path, "zip", call_op("__builtin__", "bytearray", 10**12))
    with pytest.raises(CheckpointError, match="builtins.bytearray of a given size"):
        load_torch_checkpoint(path)


# -- allow: inert records ------------------------------------------------------------


@pytest.fixture
def fake_modules():
    """Register modules for pickling, then remove them so loading cannot find them."""
    created = []

    def make(module_name, **members):
        parts = module_name.split(".")
        for depth in range(1, len(parts) + 1):
            name = ".".join(parts[:depth])
            if name not in sys.modules:
                sys.modules[name] = types.ModuleType(name)
                created.append(name)
        module = sys.modules[module_name]
        for attr, value in members.items():
            value.__module__ = module_name
            value.__qualname__ = attr
            setattr(module, attr, value)
        return module

    yield make
    for name in created:
        sys.modules.pop(name, None)


def save_then_forget(obj, path, layout, module_names):
    torch.save(obj, path, _use_new_zipfile_serialization=(layout == "zip"))
    for name in module_names:
        sys.modules.pop(name, None)
    return path


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_namespace_needs_allow_and_becomes_a_record(tmp_path, layout):
    path = tmp_path / "args.pt"
    torch.save({"args": argparse.Namespace(lr=0.1, layers=2), "w": torch.arange(3.0)}, path,
               _use_new_zipfile_serialization=(layout == "zip"))
    with pytest.raises(UnsafeGlobalError, match=r"allow=\('argparse.Namespace',\)"):
        load_torch_checkpoint(path)
    loaded = load_torch_checkpoint(path, allow=("argparse.Namespace",))
    args = loaded["args"]
    assert isinstance(args, PickledObject) and args.class_path == "argparse.Namespace"
    assert (args.lr, args.layers, args.state) == (0.1, 2, {"lr": 0.1, "layers": 2})
    assert loaded["w"].tolist() == [0.0, 1.0, 2.0]


def test_counter_and_defaultdict_records(tmp_path):
    path = tmp_path / "counts.pt"
    torch.save({"counts": collections.Counter("abca"),
                "index": collections.defaultdict(list, {"x": [1]})}, path)
    loaded = load_torch_checkpoint(path, allow=("collections.Counter", "collections.defaultdict"))
    assert loaded["counts"].class_path == "collections.Counter"
    assert loaded["counts"].args == ({"a": 2, "b": 1, "c": 1},)
    index = loaded["index"]
    assert index.args == (PickledGlobal("builtins.list"),) and index.items == {"x": [1]}


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_onmt_pattern_keeps_state_and_imports_nothing(tmp_path, layout, fake_modules):
    class Field:
        def __init__(self):
            self.vocab, self.lower = ["<unk>", "the"], True

    fake_modules("onmt.inputters.text", Field=Field)
    path = save_then_forget({"fields": [Field()], "w": torch.ones(1)}, tmp_path / "onmt.pt",
                            layout, ["onmt.inputters.text", "onmt.inputters", "onmt"])
    with pytest.raises(UnsafeGlobalError, match="'onmt.inputters.text.Field'"):
        load_torch_checkpoint(path)
    (field,) = load_torch_checkpoint(path, allow=("onmt.*",))["fields"]
    assert field.class_path == "onmt.inputters.text.Field"
    assert (field.vocab, field.lower) == (["<unk>", "the"], True)
    assert "onmt" not in sys.modules and "onmt.inputters.text" not in sys.modules


def test_torchtext_vocab_with_setstate(tmp_path, fake_modules):
    def _default_unk_index():
        return 0

    class Vocab:
        def __init__(self, itos):
            self.itos = itos
            self.stoi = collections.defaultdict(_default_unk_index, {w: i for i, w in enumerate(itos)})

        def __getstate__(self):
            return {"itos": self.itos, "stoi": self.stoi, "unk_index": 0}

        def __setstate__(self, state):  # never called by the reader
            raise AssertionError("ran Vocab.__setstate__")

    fake_modules("torchtext.vocab", Vocab=Vocab, _default_unk_index=_default_unk_index)
    path = save_then_forget({"vocab": Vocab(["<unk>", "a", "b"])}, tmp_path / "vocab.pt", "zip",
                            ["torchtext.vocab", "torchtext"])
    with pytest.raises(UnsafeGlobalError, match="'collections.defaultdict'"):
        load_torch_checkpoint(path, allow=("torchtext.vocab.Vocab",))
    vocab = load_torch_checkpoint(path, allow=("torchtext.*", "collections.defaultdict"))["vocab"]
    assert vocab.class_path == "torchtext.vocab.Vocab" and vocab.itos == ["<unk>", "a", "b"]
    assert vocab.stoi.args == (PickledGlobal("torchtext.vocab._default_unk_index"),)
    assert vocab.stoi.items == {"<unk>": 0, "a": 1, "b": 2}
    assert "torchtext" not in sys.modules


def test_python2_spellings_map_to_builtins_and_copyreg(tmp_path, fake_modules):
    class Options:
        pass

    fake_modules("onmt.opts", Options=Options)
    options = Options()
    options.rnn_size = 500
    # Protocol 0 writes what Python 2 wrote: copy_reg._reconstructor, __builtin__.object.
    body = pickle.dumps({"opt": options, "tags": {"a"}}, protocol=0)
    sys.modules.pop("onmt.opts")
    assert b"copy_reg\n_reconstructor" in body and b"__builtin__\nobject" in body
    assert b"__builtin__\nset" in body
    path = write_legacy_checkpoint(tmp_path / "py2.pt", body)
    with pytest.raises(UnsafeGlobalError, match="'onmt.opts.Options'"):
        load_torch_checkpoint(path)
    loaded = load_torch_checkpoint(path, allow=("onmt.opts.Options",))
    assert loaded["tags"] == {"a"}
    assert loaded["opt"].class_path == "onmt.opts.Options" and loaded["opt"].rnn_size == 500


def test_allow_patterns_match_python2_spellings_too(tmp_path):
    path = in_checkpoint(tmp_path, "legacy", call_op("__builtin__", "xrange", 3))
    record = load_torch_checkpoint(path, allow=("__builtin__.xrange",))
    assert (record.class_path, record.args) == ("builtins.range", (3,))


def test_allow_rejects_non_strings(tmp_path):
    path = in_checkpoint(tmp_path, "zip", plain(1))
    with pytest.raises(TypeError, match="allow"):
        load_torch_checkpoint(path, allow=(None,))
    assert load_torch_checkpoint(path, allow="onmt.*") == 1  # a lone pattern is fine
