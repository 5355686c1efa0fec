"""Helpers that run the same recurrent computation in torch and in mlxseq."""

import mlx.core as mx
import numpy as np
import torch

import mlxseq

ATOL = 1e-5
RTOL = 1e-5

KINDS = {
    # name: (torch class, mlxseq class, constructor kwargs)
    "rnn_tanh": (torch.nn.RNN, mlxseq.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (torch.nn.RNN, mlxseq.RNN, {"nonlinearity": "relu"}),
    "gru": (torch.nn.GRU, mlxseq.GRU, {}),
    "lstm": (torch.nn.LSTM, mlxseq.LSTM, {}),
    "lstm_proj": (torch.nn.LSTM, mlxseq.LSTM, {"proj_size": 3}),
}


def to_mx(t):
    return mx.array(t.detach().numpy())


def load_torch_weights(module, torch_module):
    """Load a torch module's state dict into an mlxseq module by name."""
    module.load_weights([(k, to_mx(v)) for k, v in torch_module.state_dict().items()])


def assert_close(actual, expected, what, atol=ATOL, rtol=RTOL):
    np.testing.assert_allclose(np.array(actual), expected.detach().numpy(), atol=atol, rtol=rtol, err_msg=what)


def cotangents(shapes, seed):
    """Random weights that turn outputs into a scalar loss with non-trivial gradients."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g) for s in shapes]
