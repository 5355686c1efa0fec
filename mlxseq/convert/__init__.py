"""Bring PyTorch weights into mlxseq without torch and without running pickled code.

- :func:`load_torch_checkpoint`: a ``torch.save`` file (zip or legacy layout),
  ``.safetensors`` or ``.npz`` -> Python objects with numpy arrays.
- :func:`module_state_dict`: what ``model.state_dict()`` gives, from a whole module
  saved with ``torch.save(model)`` and loaded as records
  (``allow=MODULE_PATTERNS + ("__main__.*",)``).
- :func:`torch_rnn_config` / :func:`find_torch_rnn_prefixes` /
  :func:`build_torch_rnn`: recognise ``nn.RNN/GRU/LSTM`` (and cell) weights in a
  state dict and build the matching mlxseq layer.

This package never imports torch.
"""

from .errors import CheckpointError, UnsafeGlobalError
from .pickled_modules import MODULE_PATTERNS, module_state_dict
from .pickled_objects import PickledGlobal, PickledObject
from .reader import load_torch_checkpoint
from .torch_rnn import TorchRNNConfig, build_torch_rnn, find_torch_rnn_prefixes, torch_rnn_config
from .torch_tensors import TorchDtype, TorchStorage

__all__ = [
    "CheckpointError",
    "MODULE_PATTERNS",
    "PickledGlobal",
    "PickledObject",
    "TorchDtype",
    "TorchRNNConfig",
    "TorchStorage",
    "UnsafeGlobalError",
    "build_torch_rnn",
    "find_torch_rnn_prefixes",
    "load_torch_checkpoint",
    "module_state_dict",
    "torch_rnn_config",
]
