"""Port a whole PyTorch model's weights onto an MLX module tree by name: :func:`load_torch_weights`.

A model written in MLX with the same attribute names as its torch original takes the
torch state dict as it is, but for the layouts MLX stores differently:

- ``nn.Conv1d`` weight: torch ``(out, in, k)`` -> MLX ``(out, k, in)``;
- ``nn.Conv2d`` weight: torch ``(out, in, kh, kw)`` -> MLX ``(out, kh, kw, in)``;
- BatchNorm's ``num_batches_tracked`` counter has no MLX counterpart and is passed over.

``Linear``, ``Embedding``, ``LayerNorm``, BatchNorm's running statistics and every mlxseq
layer and cell keep torch's names and shapes. Torch is never imported: the weights come
from a checkpoint file read by :func:`mlxseq.convert.load_torch_checkpoint` (state dicts,
nested checkpoints, whole pickled modules, TorchScript) or from a mapping of arrays
(numpy, MLX, or anything with ``.numpy()``, such as torch tensors).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

PASSED_OVER = ("num_batches_tracked",)  # torch bookkeeping without an MLX counterpart


def load_torch_weights(module: nn.Module, checkpoint_or_state_dict: Any, prefix: str = "",
                       strict: bool = True) -> nn.Module:
    """Load torch weights into ``module`` by name; returns ``module``.

    Args:
        module: the MLX model, its parameter names those of the torch model.
        checkpoint_or_state_dict: a checkpoint file path, or a mapping name -> array.
        prefix: only the source's names starting with it are used, with it removed
            (``"model."`` for a state dict saved from a wrapper).
        strict: every parameter of ``module`` must be given, and nothing else; otherwise
            what is given is loaded and the rest left as it is.

    Raises:
        ValueError: naming every missing, unexpected and mis-shaped tensor (strict), or a
            mis-shaped one (not strict).
    """
    source = _source_arrays(checkpoint_or_state_dict)
    source = {name[len(prefix):]: value for name, value in source.items()
              if name.startswith(prefix) and not name.endswith(PASSED_OVER)}
    layouts = _torch_layouts(module)
    target = dict(tree_flatten(module.parameters()))
    missing = sorted(set(target) - set(source))
    unexpected = sorted(set(source) - set(target))
    loaded, mis_shaped = [], []
    for name in sorted(set(target) & set(source)):
        value = np.asarray(source[name])
        if name in layouts and value.ndim == len(layouts[name]):
            value = value.transpose(layouts[name])
        if tuple(value.shape) != tuple(target[name].shape):
            mis_shaped.append(f"{name} {tuple(value.shape)} (expected {tuple(target[name].shape)})")
            continue
        loaded.append((name, mx.array(value).astype(target[name].dtype)))
    problems = [f"{what}: {', '.join(names)}" for what, names in
                (("missing", missing if strict else []), ("unexpected", unexpected if strict else []),
                 ("mis-shaped", mis_shaped)) if names]
    if problems:
        raise ValueError("torch weights do not fit the model: " + "; ".join(problems))
    module.load_weights(loaded, strict=False)
    return module


def _source_arrays(checkpoint_or_state_dict: Any) -> dict[str, Any]:
    if isinstance(checkpoint_or_state_dict, (str, os.PathLike)):
        from .folder import flat_arrays, load_accepting_module_classes
        from .pickled_modules import MODULE_PATTERNS

        path = os.fspath(checkpoint_or_state_dict)
        return flat_arrays(load_accepting_module_classes(path, MODULE_PATTERNS), path)
    if not isinstance(checkpoint_or_state_dict, Mapping):
        raise ValueError(f"expected a checkpoint path or a mapping of name -> array, got "
                         f"{type(checkpoint_or_state_dict).__name__}")
    arrays = {}
    for name, value in checkpoint_or_state_dict.items():
        if hasattr(value, "detach"):  # a torch tensor, read without importing torch
            value = value.detach().cpu().numpy()
        arrays[str(name)] = np.array(value)
    return arrays


def _torch_layouts(module: nn.Module) -> dict[str, tuple[int, ...]]:
    """Parameter name -> axis order that turns torch's layout into MLX's, where they differ."""
    layouts = {}
    for path, child in module.named_modules():
        name = f"{path}.weight" if path else "weight"
        if isinstance(child, nn.Conv1d):
            layouts[name] = (0, 2, 1)  # (out, in, k) -> (out, k, in)
        elif isinstance(child, nn.Conv2d):
            layouts[name] = (0, 2, 3, 1)  # (out, in, kh, kw) -> (out, kh, kw, in)
    return layouts
