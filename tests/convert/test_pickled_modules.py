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


class WeightDrop(torch.nn.Module):
    """AWD-LSTM's DropConnect wrapper (salesforce/awd-lstm-lm, 2017): it deletes the wrapped
    LSTM's ``weight_hh_l0`` and keeps the weight as the parameter ``weight_hh_l0_raw``."""

    def __init__(self, module, weights):
        super().__init__()
        self.module, self.weights = module, weights
        for name in weights:
            w = getattr(module, name)
            del module._parameters[name]
            module.register_parameter(f"{name}_raw", torch.nn.Parameter(w.data))


class RNNModel(torch.nn.Module):
    """AWD-LSTM's language model: one single-layer LSTM per level, sizes differing, decoder tied."""

    def __init__(self, tokens=20, embedding=6, hidden=9, levels=3):
        super().__init__()
        self.encoder = torch.nn.Embedding(tokens, embedding)
        self.rnns = torch.nn.ModuleList([
            WeightDrop(torch.nn.LSTM(embedding if k == 0 else hidden, hidden if k < levels - 1 else embedding),
                       ["weight_hh_l0"]) for k in range(levels)])
        self.decoder = torch.nn.Linear(hidden, tokens)
        self.decoder.weight = self.encoder.weight


def test_an_awd_lstm_saved_as_model_criterion_optimizer_converts_level_by_level_without_torch(tmp_path):
    torch.manual_seed(0)
    model = RNNModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=30, weight_decay=1.2e-6)
    torch.save([model, torch.nn.CrossEntropyLoss(), optimizer], tmp_path / "awd.pt")  # as its main.py saves
    done = subprocess.run([sys.executable, "-c", CONVERT_WITHOUT_TORCH, str(tmp_path / "awd.pt"), str(tmp_path / "x")],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 1
    assert "3 recurrent layers found ('0.rnns.0.module.', '0.rnns.1.module.', '0.rnns.2.module.')" in done.stderr
    x = torch.randn(5, 2, 9)
    for k, option in ((1, ["--prefix", "0.rnns.1.module."]), (2, ["--key", "0.rnns.2"])):
        out = tmp_path / f"level{k}"
        done = subprocess.run([sys.executable, "-c", CONVERT_WITHOUT_TORCH, str(tmp_path / "awd.pt"), str(out),
                               *option], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
        assert done.returncode == 0, done.stderr
        lstm = torch.nn.LSTM(9, 9 if k == 1 else 6)
        weights = dict(model.rnns[k].module.named_parameters())
        lstm.load_state_dict({name.removesuffix("_raw"): value for name, value in weights.items()})
        expected = lstm(x)[0].detach().numpy()
        layer = mlxseq.load(out)
        layer.batch_first = False
        np.testing.assert_allclose(np.array(layer(mx.array(x.numpy()))[0]), expected, atol=1e-5)
    assert "not converted (11 tensors): 0.decoder.bias" in subprocess.run(
        [sys.executable, "-c", CONVERT_WITHOUT_TORCH, str(tmp_path / "awd.pt"), str(tmp_path / "y"), "--prefix",
         "0.rnns.0.module."], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT).stdout


def test_a_plain_weight_beside_its_raw_copy_is_the_one_read(tmp_path):
    """fastai's WeightDropout keeps both ``rnns.0.weight_hh_l0_raw`` and ``rnns.0.module.weight_hh_l0``."""
    from mlxseq.convert import torch_rnn_config

    lstm = torch.nn.LSTM(3, 4)
    state = {f"module.{k}": v.numpy() for k, v in lstm.state_dict().items()}
    state["module.weight_hh_l0_raw"] = np.zeros((16, 4), dtype=np.float32)
    _, weights = torch_rnn_config(state, "module.")
    np.testing.assert_array_equal(weights["weight_hh_l0"], lstm.weight_hh_l0.detach().numpy())
