"""Whole pickled ``torch.nn.Module`` objects (``torch.save(model)``) read as inert records.

``torch.save(model)`` pickles the module object itself: its class (``torch.nn.modules.rnn.LSTM``,
or the user's ``__main__.Tagger``) and its ``__dict__``, which holds ``_parameters``,
``_buffers`` and ``_modules`` (the children, the same way down). The restricted unpickler
turns each object into a :class:`PickledObject` record (no class is imported, nothing runs);
:func:`module_state_dict` walks the records and gives what ``model.state_dict()`` would:
every parameter and persistent buffer under its dotted module path.

torch <= 0.3 pickled modules the same way; their ``_backend`` (``torch.nn.backends.thnn``)
and similar attributes are records too and are ignored.

TorchScript archives (``torch.jit.save``) hold ``data.pkl`` of ``__torch__.*`` objects whose
attributes are the tensors and child modules themselves; their ``code/`` is never read, let
alone run.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from .errors import CheckpointError
from .pickled_objects import PickledObject

# What the conversion command accepts as inert records besides the allowlist: torch's own
# module classes, and the user's module classes (a capitalised last name), never imported.
MODULE_PATTERNS = ("torch.nn.modules.*", "torch.nn.backends.*", "torch.nn.utils.*", "__torch__.*")
MAX_DEPTH = 100


def is_module_record(value: Any) -> bool:
    """Whether ``value`` is a pickled ``nn.Module``: a record whose state has ``_modules``, or a
    TorchScript module (``__torch__.*``, its attributes held directly)."""
    return isinstance(value, PickledObject) and isinstance(value.state, dict) and (
        "_modules" in value.state or value.class_path.startswith("__torch__."))


def looks_like_class(global_name: str) -> bool:
    """A capitalised last name (``__main__.Tagger``), as classes are named; functions are not accepted this way."""
    name = global_name.rpartition(".")[2]
    return name[:1].isupper() and name.isidentifier()


def module_state_dict(record: PickledObject, prefix: str = "", _depth: int = 0) -> OrderedDict:
    """``model.state_dict()`` of a pickled module record: parameters and persistent buffers by dotted path."""
    if _depth > MAX_DEPTH:
        raise CheckpointError(f"pickled modules nested more than {MAX_DEPTH} levels deep at {prefix[:80]!r}")
    state = record.state
    found: OrderedDict = OrderedDict()
    if "_modules" not in state:  # TorchScript: parameters, buffers and children are plain attributes
        for name, value in state.items():
            if isinstance(value, np.ndarray):
                found[f"{prefix}{name}"] = value
            elif is_module_record(value):
                found.update(module_state_dict(value, f"{prefix}{name}.", _depth + 1))
        return found
    skipped = state.get("_non_persistent_buffers_set") or set()
    for section in ("_parameters", "_buffers"):
        entries = state.get(section) or {}
        if not isinstance(entries, dict):
            raise CheckpointError(f"pickled module {prefix or record.class_path!r}: {section} is not a mapping")
        for name, value in entries.items():
            if value is None or (section == "_buffers" and name in skipped):
                continue
            if not isinstance(value, np.ndarray):
                raise CheckpointError(f"pickled module {prefix or record.class_path!r}: {section}[{name!r}] is a "
                                      f"{type(value).__name__}, not a tensor")
            found[f"{prefix}{name}"] = value
    children = state.get("_modules") or {}
    if not isinstance(children, dict):
        raise CheckpointError(f"pickled module {prefix or record.class_path!r}: _modules is not a mapping")
    for name, child in children.items():
        if child is None:
            continue
        if not is_module_record(child):
            raise CheckpointError(f"pickled module {prefix or record.class_path!r}: child {name!r} is not a module")
        found.update(module_state_dict(child, f"{prefix}{name}.", _depth + 1))
    return found
