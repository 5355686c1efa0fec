"""TorchScript archives (torch.jit.save of scripted and traced modules): weights out, nothing run."""

from __future__ import annotations

import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest
import torch

import mlxseq
from mlxseq.convert import load_torch_checkpoint, module_state_dict
from mlxseq.convert.pickled_modules import MODULE_PATTERNS
from tests.convert.checkpoint_builders import REPO_ROOT, global_op, pickle_of, plain, rewrite_zip


class Encoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(10, 3)
        self.rnn = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True)
        self.out = torch.nn.Linear(8, 2)

    def forward(self, x):
        return self.out(self.rnn(self.emb(x))[0])


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    folder = tmp_path_factory.mktemp("torchscript")
    torch.manual_seed(0)
    model = Encoder().eval()
    torch.jit.save(torch.jit.script(model), folder / "scripted.pt")
    torch.jit.save(torch.jit.trace(model, torch.zeros(1, 3, dtype=torch.long)), folder / "traced.pt")
    return model, folder


@pytest.mark.parametrize("name", ["scripted.pt", "traced.pt"])
def test_the_weights_of_an_archive_are_its_state_dict(archives, name):
    model, folder = archives
    state = module_state_dict(load_torch_checkpoint(folder / name, allow=MODULE_PATTERNS))
    expected = model.state_dict()
    assert sorted(state) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(state[key], value.numpy())


CONVERT_WITHOUT_TORCH = """
import sys
sys.modules["torch"] = None
from mlxseq.cli import app
sys.argv = ["mlxseq", "convert", *sys.argv[1:]]
app()
"""


def _convert(*arguments, cwd):
    return subprocess.run([sys.executable, "-c", CONVERT_WITHOUT_TORCH, *map(str, arguments)], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize("name", ["scripted.pt", "traced.pt"])
def test_convert_takes_the_gru_out_of_an_archive_without_torch(archives, name, tmp_path):
    model, folder = archives
    done = _convert(folder / name, tmp_path / "out", cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert "GRU(input_size=3, hidden_size=4, num_layers=2, bias=True, bidirectional=True" in done.stdout
    x = torch.randn(2, 5, 3)
    np.testing.assert_allclose(np.array(mlxseq.load(tmp_path / "out")(mx.array(x.numpy()))[0]),
                               model.rnn(x)[0].detach().numpy(), atol=1e-5)


def test_code_in_an_archive_never_runs(archives, tmp_path):
    _, folder = archives
    marker = tmp_path / "ran"
    evil = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('code ran')\n".encode()

    def poison(name, data):
        if name.endswith(".py"):
            return evil  # code/ is never read
        if name.endswith("data.pkl"):
            # a call through a __torch__ name before the module: a record at most, never a call
            call = global_op("__torch__", "os_system") + plain(("touch", str(marker))) + b"R"
            return pickle_of(b"}(" + plain("call") + call + plain("model") + data[2:-1] + b"u")
        return data

    rewrite_zip(folder / "scripted.pt", tmp_path / "poisoned.pt", poison)
    done = _convert(tmp_path / "poisoned.pt", tmp_path / "out", cwd=tmp_path)
    assert not marker.exists()
    assert done.returncode == 0, done.stderr  # the weights are still there, the call a record
    assert "GRU(input_size=3, hidden_size=4" in done.stdout
