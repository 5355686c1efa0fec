"""Reading nn.RNN/GRU/LSTM configurations off real torch state dicts."""

from __future__ import annotations

import itertools
from collections import OrderedDict

import numpy as np
import pytest
import torch

from mlxseq.convert import TorchRNNConfig, find_torch_rnn_prefixes, torch_rnn_config

TORCH_LAYERS = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}
TORCH_CELLS = {"rnn": torch.nn.RNNCell, "gru": torch.nn.GRUCell, "lstm": torch.nn.LSTMCell}


def numpy_state(module, prefix=""):
    return OrderedDict((prefix + k, v.detach().numpy()) for k, v in module.state_dict().items())


@pytest.mark.parametrize("kind, num_layers, bidirectional, bias",
                         list(itertools.product(TORCH_LAYERS, [1, 3], [False, True], [True, False])))
def test_layer_config_matches_the_torch_constructor(kind, num_layers, bidirectional, bias):
    layer = TORCH_LAYERS[kind](5, 4, num_layers=num_layers, bidirectional=bidirectional, bias=bias)
    state = numpy_state(layer)
    config, weights = torch_rnn_config(state)
    assert config == TorchRNNConfig(kind=kind, input_size=5, hidden_size=4, num_layers=num_layers,
                                    bias=bias, bidirectional=bidirectional)
    assert list(weights) == list(state)
    assert all(weights[k] is state[k] for k in state)


def test_projected_lstm_under_a_prefix():
    lstm = torch.nn.LSTM(6, 8, num_layers=2, bidirectional=True, proj_size=3)
    state = {"embedding.weight": np.zeros((10, 6)), **numpy_state(lstm, "encoder.rnn."),
             "generator.weight": np.zeros((10, 6))}
    config, weights = torch_rnn_config(state, "encoder.rnn.")
    assert config == TorchRNNConfig(kind="lstm", input_size=6, hidden_size=8, num_layers=2,
                                    bidirectional=True, proj_size=3, prefix="encoder.rnn.")
    assert weights["weight_ih_l1_reverse"].shape == (32, 6)  # 2 directions x proj_size 3
    assert set(weights) == set(lstm.state_dict())


@pytest.mark.parametrize("kind, bias", list(itertools.product(TORCH_CELLS, [True, False])))
def test_cell_config(kind, bias):
    cell = TORCH_CELLS[kind](7, 3, bias=bias)
    config, weights = torch_rnn_config(numpy_state(cell, "decoder.cell."), prefix="decoder.cell.")
    assert config == TorchRNNConfig(kind=kind, input_size=7, hidden_size=3, bias=bias, cell=True,
                                    prefix="decoder.cell.")
    assert set(weights) == set(cell.state_dict())


def test_find_prefixes_in_a_model():
    state = {"embed.weight": np.zeros(1), **numpy_state(torch.nn.GRU(3, 2, num_layers=2), "encoder.rnn."),
             **numpy_state(torch.nn.LSTMCell(2, 2), "decoder.cell."), **numpy_state(torch.nn.RNN(2, 2))}
    assert find_torch_rnn_prefixes(state) == ["encoder.rnn.", "decoder.cell.", ""]


def test_no_weights_under_the_prefix_lists_the_ones_found():
    state = numpy_state(torch.nn.GRU(3, 2), "encoder.rnn.")
    message = r"no RNN/GRU/LSTM weights under prefix 'decoder\.'.*\['encoder\.rnn\.'\]"
    with pytest.raises(ValueError, match=message):
        torch_rnn_config(state, "decoder.")


def test_missing_layer_is_reported():
    state = numpy_state(torch.nn.LSTM(3, 2, num_layers=3))
    del state["weight_hh_l1"]
    with pytest.raises(ValueError, match=r"missing \['weight_hh_l1'\]"):
        torch_rnn_config(state)


def test_wrong_shape_is_reported():
    state = numpy_state(torch.nn.GRU(3, 2, num_layers=2))
    state["weight_ih_l1"] = np.zeros((6, 5))
    with pytest.raises(ValueError, match=r"weight_ih_l1 has shape \(6, 5\), expected \(6, 2\)"):
        torch_rnn_config(state)


@pytest.mark.parametrize("key, value", [("weight_ih_l0", np.zeros(24)), ("weight_hh_l0", np.zeros((2, 12, 3))),
                                        ("weight_ih_l0", 1.5)])
def test_a_weight_that_is_not_a_matrix_is_named(key, value):
    state = numpy_state(torch.nn.LSTM(3, 2))
    state[key] = value
    with pytest.raises(ValueError, match=rf"{key} has shape \(.*\); a recurrent weight is a matrix \(2 dimensions\)"):
        torch_rnn_config(state)


def test_gate_rows_that_fit_no_kind():
    state = {"weight_ih_l0": np.zeros((8, 3)), "weight_hh_l0": np.zeros((8, 4))}  # 2 x hidden
    with pytest.raises(ValueError, match="not 1x \\(RNN\\), 3x \\(GRU\\) or 4x \\(LSTM\\)"):
        torch_rnn_config(state)


@pytest.mark.parametrize("torch_layer, kwargs", [
    (torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2), {}),
    (torch.nn.RNN(3, 4, nonlinearity="relu", bias=False), {"nonlinearity": "relu"}),
    (torch.nn.GRUCell(3, 4), {}),
], ids=["lstm_projected_bidirectional", "rnn_relu_without_bias", "gru_cell"])
def test_build_torch_rnn_loads_the_weights(torch_layer, kwargs):
    # The layers are written alongside this package; only this test needs them.
    pytest.importorskip("mlxseq.layers")
    import mlx.core as mx
    from mlx.utils import tree_flatten

    from mlxseq.convert import build_torch_rnn

    config, weights = torch_rnn_config(numpy_state(torch_layer))
    layer = build_torch_rnn(config, weights, **kwargs)
    loaded = dict(tree_flatten(layer.parameters()))
    assert sorted(loaded) == sorted(weights)
    for key, value in weights.items():
        assert np.array_equal(np.array(loaded[key]), value), key
    x = torch.randn(2, 5, 3) if not config.cell else torch.randn(2, 3)
    expected = torch_layer(x.transpose(0, 1) if not config.cell else x)
    expected = expected[0].transpose(0, 1) if not config.cell else expected
    output = layer(mx.array(x.numpy()))
    output = output[0] if isinstance(output, tuple) else output
    np.testing.assert_allclose(np.array(output), expected.detach().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("options, expected", [
    (dict(kind="lstm", peephole=True), dict(peephole=True)),
    (dict(kind="lstm", learn_initial_state=True, proj_size=2), dict(learn_initial_state=True, proj_size=2)),
    (dict(kind="gru", learn_initial_state=True), dict(learn_initial_state=True)),
])
def test_mlxseq_variant_weights_are_read_by_name_and_round_trip(tmp_path, options, expected):
    import mlx.core as mx

    import mlxseq
    from mlxseq.convert import build_torch_rnn

    layer_cls = {"lstm": mlxseq.LSTM, "gru": mlxseq.GRU}[options.pop("kind")]
    layer = layer_cls(5, 4, num_layers=2, bidirectional=True, **options)
    state = {f"rnn.{name}": np.array(value) for name, value in layer.parameters().items()}
    config, weights = torch_rnn_config(state, "rnn.")
    assert {name: getattr(config, name) for name in expected} == expected
    rebuilt = build_torch_rnn(config, weights)
    x = mx.random.normal((2, 3, 5))
    np.testing.assert_array_equal(np.array(rebuilt(x)[0]), np.array(layer(x)[0]))


def test_a_gru_read_with_reset_after_false_is_chos_gru():
    layer = torch.nn.GRU(5, 4)
    config, _ = torch_rnn_config(numpy_state(layer), reset_after=False)
    assert config.kind == "gru" and config.reset_after is False
    config, _ = torch_rnn_config(numpy_state(torch.nn.LSTM(5, 4)), reset_after=False)
    assert config.reset_after is True  # only a GRU has a reset gate


def test_peepholes_on_a_gru_are_named():
    state = numpy_state(torch.nn.GRU(5, 4))
    state["weight_ph_l0"] = np.zeros(12, dtype=np.float32)
    with pytest.raises(ValueError, match="weight_ph .peepholes. under '' belongs only to an LSTM, found a gru"):
        torch_rnn_config(state)


@pytest.mark.parametrize("kind, kwargs", [("gru", {}), ("lstm", {"bidirectional": True, "num_layers": 2}),
                                          ("lstm", {"proj_size": 2})])
def test_matrices_stored_in_out_are_transposed_back(kind, kwargs):
    layer = TORCH_LAYERS[kind](5, 4, **kwargs)
    state = numpy_state(layer)
    stored = {name: (value.T.copy() if value.ndim == 2 else value) for name, value in state.items()}
    config, weights = torch_rnn_config(stored)
    assert config == torch_rnn_config(state)[0]
    for name, value in state.items():
        np.testing.assert_array_equal(weights[name], value)


def test_an_rnns_square_matrices_are_read_as_torch_stores_them():
    state = numpy_state(torch.nn.RNN(4, 4))
    _, weights = torch_rnn_config(state)
    np.testing.assert_array_equal(weights["weight_hh_l0"], state["weight_hh_l0"])
