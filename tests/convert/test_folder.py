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

    lstm = torch.nn.LSTM(2, 3)
    torch.save(lstm, tmp_path / "module.pt")  # a whole pickled module: its state dict is read as inert records
    result = _convert(tmp_path / "module.pt", tmp_path / "o5")
    assert result.exit_code == 0 and "found torch-rnn: LSTM(input_size=2, hidden_size=3" in result.output
    x = torch.randn(1, 4, 2)
    np.testing.assert_allclose(np.array(mlxseq.load(tmp_path / "o5")(mx.array(x.numpy()))[0]),
                               lstm(x.transpose(0, 1))[0].transpose(0, 1).detach().numpy(), atol=1e-5)


def test_tensors_left_out_of_the_folder_are_listed(tmp_path):
    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(10, 3)
            self.gru = torch.nn.GRU(3, 4)
            self.fc = torch.nn.Linear(4, 2)

    torch.save(Tagger().state_dict(), tmp_path / "tagger.pt")
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "tagger.pt"), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "not converted (3 tensors): emb.weight, fc.bias, fc.weight" in result.output.splitlines()


def test_keys_that_are_not_names_are_passed_over(tmp_path):
    state = dict(torch.nn.LSTM(3, 4).state_dict())
    state[1], state[("a", 1)] = torch.zeros(2), torch.zeros(2)
    torch.save(state, tmp_path / "mixed.pt")
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "mixed.pt"), str(tmp_path / "out")])
    assert result.exit_code == 0 and "found torch-rnn: LSTM(input_size=3, hidden_size=4" in result.output, result.output


def test_a_pickled_ordered_dict_cannot_hide_its_methods(tmp_path):
    from mlxseq.convert import CheckpointError, load_torch_checkpoint
    from tests.convert.checkpoint_builders import global_op, pickle_of, plain, write_zip_checkpoint

    body = global_op("collections", "OrderedDict") + b")R" + plain({"items": [1, 2]}) + b"b"
    path = write_zip_checkpoint(tmp_path / "shadow.pt", pickle_of(body))
    with pytest.raises(CheckpointError, match="sets attribute 'items' on an OrderedDict, which would hide its method"):
        load_torch_checkpoint(path)


def test_layers_are_found_in_nested_checkpoints_and_key_picks_a_part(tmp_path):
    torch.manual_seed(0)
    net, ema = torch.nn.LSTM(3, 4, num_layers=2), torch.nn.GRU(3, 5)
    optimizer = torch.optim.Adam(net.parameters())
    net(torch.randn(2, 1, 3))[0].sum().backward()
    optimizer.step()  # optimizer state: int keys, step counters
    torch.save({"step": 10, "model_state": net.state_dict(), "optimizer_state": optimizer.state_dict()},
               tmp_path / "run.pt")
    torch.save({"checkpoint": {"net": net.state_dict(), "ema": {"net": ema.state_dict()}}}, tmp_path / "deep.pt")
    runner = CliRunner()
    result = runner.invoke(app, ["convert", str(tmp_path / "run.pt"), str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert "found torch-rnn: LSTM(input_size=3, hidden_size=4, num_layers=2" in result.output
    assert "not converted (24 tensors): optimizer_state.state.0.exp_avg" in result.output
    x = torch.randn(2, 6, 3)
    np.testing.assert_allclose(np.array(mlxseq.load(tmp_path / "a")(mx.array(x.numpy()))[0]),
                               net(x.transpose(0, 1))[0].transpose(0, 1).detach().numpy(), atol=1e-5)
    two = runner.invoke(app, ["convert", str(tmp_path / "deep.pt"), str(tmp_path / "b")])
    assert two.exit_code == 1 and "2 recurrent layers found ('checkpoint.net.', 'checkpoint.ema.net.')" in two.output
    picked = runner.invoke(app, ["convert", str(tmp_path / "deep.pt"), str(tmp_path / "c"), "--key", "checkpoint.ema"])
    assert picked.exit_code == 0 and "GRU(input_size=3, hidden_size=5" in picked.output, picked.output
    wrong = runner.invoke(app, ["convert", str(tmp_path / "deep.pt"), str(tmp_path / "d"), "--key", "checkpoint.nope"])
    assert wrong.exit_code == 1
    assert wrong.output.strip() == f"error: {tmp_path / 'deep.pt'}: --key checkpoint.nope: no 'nope' in checkpoint (keys: net, ema)"
