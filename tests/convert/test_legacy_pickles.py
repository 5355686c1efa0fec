"""What torch 0.1-0.3 (2017-2018) pickled, written opcode by opcode as its ``torch.save`` wrote it.

torch 0.3's ``Variable.__reduce_ex__`` (torch/autograd/variable.py) returned
``(type(self), (self.data,), (requires_grad, False, backward_hooks))`` for protocol 2, and
``(copyreg.__newobj__, (type(self), self.data), state)`` below it; a ``Parameter`` is a
``Variable``. Its tensors were ``torch._utils._rebuild_tensor(storage, offset, size, stride)``
over typed storages (``torch.cuda.FloatStorage`` when saved on a GPU), Python 2 files spell
builtins ``__builtin__`` and copyreg ``copy_reg``. OpenNMT-py kept such Parameters inside
its pickled optimizer.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from mlxseq.convert import load_torch_checkpoint
from tests.convert.checkpoint_builders import global_op, pickle_of, plain, write_legacy_checkpoint

VALUES = [0.5, -1.0, 2.0, 3.5]


def storage(storage_class="FloatStorage", module="torch", key="0"):
    return (b"(" + plain("storage") + global_op(module, storage_class) + plain(key) + plain("cuda:0")
            + plain(len(VALUES)) + b"N" + b"tQ")


def tensor_v1(module="torch"):
    """``torch._utils._rebuild_tensor(storage, 0, (2, 2), (2, 1))``, torch 0.3's tensor record."""
    return global_op("torch._utils", "_rebuild_tensor") + b"(" + storage(module=module) + plain(0) + plain((2, 2)) + \
        plain((2, 1)) + b"tR"


def hooks():
    return global_op("collections", "OrderedDict") + b")R"


def state_tuple():
    return b"(" + b"\x88" + b"\x89" + hooks() + b"t"  # (requires_grad=True, volatile=False, hooks)


PATTERNS = {
    "parameter_protocol_2": global_op("torch.nn.parameter", "Parameter") + b"(" + tensor_v1() + b"tR" + state_tuple() + b"b",
    "variable_protocol_2": global_op("torch.autograd.variable", "Variable") + b"(" + tensor_v1() + b"tR" + state_tuple()
    + b"b",
    "parameter_newobj_python2": global_op("copy_reg", "__newobj__") + b"(" + global_op("torch.nn.parameter", "Parameter")
    + tensor_v1() + b"tR" + state_tuple() + b"b",
    "legacy_five_field_state": global_op("torch.nn.parameter", "Parameter") + b"(" + tensor_v1() + b"tR"
    + b"(" + b"N" + b"\x88" + b"\x89" + hooks() + b"N" + b"t" + b"b",
    "cuda_storage": tensor_v1(module="torch.cuda"),
}


@pytest.mark.parametrize("name", list(PATTERNS))
def test_a_2017_tensor_pattern_in_a_dict_loads_as_its_values(tmp_path, name):
    body = b"}" + b"(" + plain("encoder.rnn.weight_hh_l0") + PATTERNS[name] + plain("__builtin__-set") \
        + global_op("__builtin__", "set") + b"(" + b"]" + b"(" + plain(1) + b"e" + b"tR" + b"u"
    data = struct.pack("<4f", *VALUES)
    path = write_legacy_checkpoint(tmp_path / f"{name}.pt", pickle_of(body), [("0", len(VALUES), data)])
    loaded = load_torch_checkpoint(path)
    np.testing.assert_array_equal(loaded["encoder.rnn.weight_hh_l0"], np.array(VALUES, np.float32).reshape(2, 2))
    assert loaded["__builtin__-set"] == {1}


def test_state_that_is_not_metadata_is_still_refused(tmp_path):
    # BUILD on an array with anything but a Variable's metadata tuple is not a pattern torch wrote.
    body = global_op("torch.nn.parameter", "Parameter") + b"(" + tensor_v1() + b"tR" + plain({"data": 1}) + b"b"
    path = write_legacy_checkpoint(tmp_path / "odd.pt", pickle_of(body), [("0", 4, struct.pack("<4f", *VALUES))])
    with pytest.raises(Exception, match="sets state on a ndarray"):
        load_torch_checkpoint(path)
