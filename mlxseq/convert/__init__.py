"""Bring PyTorch weights into mlxseq without torch and without running pickled code.

- :func:`load_torch_checkpoint`: a ``torch.save`` file (zip or legacy layout),
  ``.safetensors`` or ``.npz`` -> Python objects with numpy arrays.

This package never imports torch.
"""

from .errors import CheckpointError, UnsafeGlobalError
from .pickled_objects import PickledGlobal, PickledObject
from .reader import load_torch_checkpoint
from .torch_tensors import TorchDtype, TorchStorage

__all__ = [
    "CheckpointError",
    "PickledGlobal",
    "PickledObject",
    "TorchDtype",
    "TorchStorage",
    "UnsafeGlobalError",
    "load_torch_checkpoint",
]
