"""A whole torch model ported to MLX by name: mlxseq.load_torch_weights."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import torch

import mlxseq


class TorchSpeech(torch.nn.Module):
    """A Conv1d front end, BatchNorm, a 2-layer LSTM and a Linear head: the README's example."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(13, 32, kernel_size=3, padding=1)
        self.norm = torch.nn.BatchNorm1d(32)
        self.rnn = torch.nn.LSTM(32, 48, num_layers=2, batch_first=True)
        self.head = torch.nn.Linear(48, 10)

    def forward(self, x):  # (B, T, 13)
        x = torch.relu(self.norm(self.conv(x.transpose(1, 2)))).transpose(1, 2)
        return self.head(self.rnn(x)[0])


class MLXSpeech(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(13, 32, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm(32)
        self.rnn = mlxseq.LSTM(32, 48, num_layers=2)
        self.head = nn.Linear(48, 10)

    def __call__(self, x):  # (B, T, 13): MLX convolutions are channels-last
        return self.head(self.rnn(nn.relu(self.norm(self.conv(x))))[0])


@pytest.fixture
def trained():
    torch.manual_seed(0)
    model = TorchSpeech()
    model.train()
    for _ in range(3):  # running statistics that differ from their initial values
        model(torch.randn(4, 20, 13))
    return model.eval()


@pytest.mark.parametrize("given", ["state_dict", "file", "whole_module_file"])
def test_a_torch_model_ported_by_name_gives_torchs_outputs(trained, tmp_path, given):
    if given == "state_dict":
        source = trained.state_dict()
    elif given == "file":
        torch.save(trained.state_dict(), tmp_path / "model.pt")
        source = tmp_path / "model.pt"
    else:
        torch.save(trained, tmp_path / "model.pt")
        source = tmp_path / "model.pt"
    model = mlxseq.load_torch_weights(MLXSpeech(), source)
    model.eval()
    x = torch.randn(2, 15, 13)
    np.testing.assert_allclose(np.array(model(mx.array(x.numpy()))), trained(x).detach().numpy(), atol=1e-4)


def test_strict_loading_names_every_missing_unexpected_and_mis_shaped_tensor(trained):
    state = dict(trained.state_dict())
    del state["head.bias"]
    state["extra.weight"] = torch.zeros(2)
    state["rnn.weight_hh_l1"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=r"missing: head\.bias; unexpected: extra\.weight; mis-shaped: rnn\.weight_hh_l1 "
                                         r"\(3, 3\) \(expected \(192, 48\)\)"):
        mlxseq.load_torch_weights(MLXSpeech(), state)
    del state["rnn.weight_hh_l1"]
    model = mlxseq.load_torch_weights(MLXSpeech(), state, strict=False)  # the rest loads, head.bias stays
    np.testing.assert_array_equal(np.array(model.head.weight), trained.head.weight.detach().numpy())


def test_a_prefix_selects_a_wrapped_state_dict(trained):
    wrapped = {f"model.{k}": v for k, v in trained.state_dict().items()}
    wrapped["step"] = torch.tensor(5)
    model = mlxseq.load_torch_weights(MLXSpeech(), wrapped, prefix="model.")
    np.testing.assert_array_equal(np.array(model.conv.weight), trained.conv.weight.detach().numpy().transpose(0, 2, 1))
