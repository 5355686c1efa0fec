"""`mlxseq convert` of bare torch RNN/GRU/LSTM checkpoints into model folders, through the CLI."""

import mlx.core as mx
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import mlxseq
from mlxseq.cli import app

runner = CliRunner()


def _convert(*args):
    return runner.invoke(app, ["convert", *map(str, args)])


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.nn.LSTM(4, 6, num_layers=2, bidirectional=True, batch_first=True),
        lambda: torch.nn.LSTM(4, 6, proj_size=3, batch_first=True),
        lambda: torch.nn.GRU(4, 6, bias=False, batch_first=True),
    ],
)
def test_converted_layer_gives_torch_outputs(tmp_path, make, legacy):
    torch.manual_seed(0)
    layer = make()
    torch.save(layer.state_dict(), tmp_path / "layer.pt", _use_new_zipfile_serialization=not legacy)
    result = _convert(tmp_path / "layer.pt", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "found torch-rnn" in result.output
    model = mlxseq.load(tmp_path / "out")
    x = torch.randn(2, 5, 4)
    expected, _ = layer(x)
    actual, _ = model(mx.array(x.numpy()))
    np.testing.assert_allclose(np.array(actual), expected.detach().numpy(), atol=1e-5)


def test_rnn_relu_needs_its_nonlinearity_and_prefix_picks_a_layer(tmp_path):
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.RNN(3, 5, nonlinearity="relu", batch_first=True)
            self.decoder = torch.nn.GRUCell(5, 5)

    net = Net()
    torch.save({"epoch": 3, "model_state_dict": net.state_dict()}, tmp_path / "net.pt")
    result = _convert(tmp_path / "net.pt", tmp_path / "out")
    assert result.exit_code == 1
    assert "2 recurrent layers found ('encoder.', 'decoder.'); choose one with --prefix" in result.output

    result = runner.invoke(
        app, ["convert", str(tmp_path / "net.pt"), str(tmp_path / "out"), "--prefix", "encoder.", "--nonlinearity", "relu"]
    )
    assert result.exit_code == 0, result.output
    model = mlxseq.load(tmp_path / "out")
    x = torch.randn(2, 4, 3)
    np.testing.assert_allclose(
        np.array(model(mx.array(x.numpy()))[0]), net.encoder(x)[0].detach().numpy(), atol=1e-5
    )
    result = runner.invoke(app, ["convert", str(tmp_path / "net.pt"), str(tmp_path / "cell"), "--prefix", "decoder."])
    assert result.exit_code == 0, result.output
    cell = mlxseq.load(tmp_path / "cell")
    h = torch.randn(2, 5)
    np.testing.assert_allclose(
        np.array(cell(mx.array(h.numpy()), mx.array(h.numpy()))), net.decoder(h, h).detach().numpy(), atol=1e-5
    )


def test_unsupported_and_bad_inputs_fail_with_a_message(tmp_path):
    torch.save({"attn.weight": torch.zeros(2, 2), "attn_combine.weight": torch.zeros(2, 2)}, tmp_path / "tut.pt")
    result = _convert(tmp_path / "tut.pt", tmp_path / "o1")
    assert result.exit_code == 1 and "seq2seq-tutorial" in result.output

    torch.save({"linear.weight": torch.zeros(2, 2)}, tmp_path / "lin.pt")
    result = _convert(tmp_path / "lin.pt", tmp_path / "o2")
    assert result.exit_code == 1 and "no recognised weights" in result.output

    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    result = _convert(tmp_path / "junk.pt", tmp_path / "o3")
    assert result.exit_code == 1 and "junk.pt" in result.output

    result = _convert(tmp_path / "missing.pt", tmp_path / "o4")
    assert result.exit_code == 1 and "missing.pt" in result.output

    torch.save(torch.nn.GRU(2, 3).state_dict(), tmp_path / "gru.pt")
    (tmp_path / "taken").write_text("a file where the folder should go")
    result = _convert(tmp_path / "gru.pt", tmp_path / "taken")
    assert result.exit_code == 1 and "taken" in result.output

    torch.save(torch.nn.LSTM(2, 3), tmp_path / "module.pt")  # a whole pickled module, not a state dict
    result = _convert(tmp_path / "module.pt", tmp_path / "o5")
    assert result.exit_code == 1 and "torch.nn.modules.rnn.LSTM" in result.output
    assert not (tmp_path / "o5").exists()
