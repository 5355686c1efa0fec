"""Whole modules saved with ``torch.save(model)``: their state dict, read without importing any class."""

from __future__ import annotations

import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest
import torch

import mlxseq
from mlxseq.convert import CheckpointError, load_torch_checkpoint
from mlxseq.convert.pickled_modules import MODULE_PATTERNS, module_state_dict
from tests.convert.checkpoint_builders import REPO_ROOT


class Tagger(torch.nn.Module):
    """What a beginner saves whole: embeddings, a bidirectional LSTM, a head, a buffer or two."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(10, 3)
        self.rnn = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
        self.head = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        self.register_buffer("carried", torch.randn(4, 1, 4))  # a carried hidden state
        self.register_buffer("scratch", torch.zeros(3), persistent=False)
        self.device_used = torch.device("cpu")
        self.tags = {"NOUN", "VERB"}


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = Tagger()
    torch.save(model, tmp_path / "whole.pt")
    torch.save({"epoch": 3, "model": model}, tmp_path / "wrapped.pt")
    return model, tmp_path


def test_a_whole_module_gives_what_its_state_dict_would(saved):
    model, folder = saved
    record = load_torch_checkpoint(folder / "whole.pt", allow=MODULE_PATTERNS + (f"{Tagger.__module__}.*",))
    state = module_state_dict(record)
    expected = model.state_dict()
    assert list(state) == list(expected)  # same names, same order, no non-persistent buffer
    for name, value in expected.items():
        np.testing.assert_array_equal(state[name], value.numpy())


def test_a_module_class_is_refused_unless_allowed_and_never_imported(saved):
    _, folder = saved
    with pytest.raises(CheckpointError, match=f"refusing to load the global '{Tagger.__module__}.Tagger'"):
        load_torch_checkpoint(folder / "whole.pt")


CONVERT_WITHOUT_TORCH = """
import sys
sys.modules["torch"] = None  # any import of torch now fails
from mlxseq.cli import app
sys.argv = ["mlxseq", "convert", *sys.argv[1:]]
app()
"""


@pytest.mark.parametrize("name", ["whole.pt", "wrapped.pt"])
def test_convert_takes_the_recurrent_layer_out_of_a_whole_module_without_torch(saved, name):
    model, folder = saved
    done = subprocess.run([sys.executable, "-c", CONVERT_WITHOUT_TORCH, str(folder / name), str(folder / "out"),
                           "--prefix", "rnn."], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert "LSTM(input_size=3, hidden_size=4, num_layers=2, bias=True, bidirectional=True" in done.stdout
    assert "not converted (6 tensors): carried, emb.weight, head.0.bias, head.0.weight, head.2.bias, head.2.weight" \
        in done.stdout
    x = torch.randn(2, 5, 3)
    np.testing.assert_allclose(np.array(mlxseq.load(folder / "out")(mx.array(x.numpy()))[0]),
                               model.rnn(x)[0].detach().numpy(), atol=1e-5)
