"""Tests of mlxseq/models/forecaster.py: shapes, instance normalisation, decoders, errors."""

import mlx.core as mx
import numpy as np
import pytest

import mlxseq
from mlxseq.checkpoint import save_model
from mlxseq.models.forecaster import ModelArgs, build_model


def small(**changes):
    mx.random.seed(0)
    args = ModelArgs(**{"num_features": 3, "input_length": 12, "horizon": 5, "segment_length": 4,
                        "hidden_size": 8, **changes})
    model = build_model(args)
    model.eval()
    return model


@pytest.mark.parametrize("decoder", ["direct", "autoregressive"])
@pytest.mark.parametrize("channel_independent", [True, False])
@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
def test_shapes_and_windows_are_independent(decoder, channel_independent, rnn_type):
    model = small(decoder=decoder, channel_independent=channel_independent, rnn_type=rnn_type)
    x = mx.random.normal((4, 12, 3))
    y = model(x)
    assert y.shape == (4, 5, 3)
    assert np.allclose(np.array(model(x[2:3])), np.array(y[2:3]), atol=1e-5)  # a window alone = in a batch


def test_instance_norm_shifts_predictions_with_the_input():
    model = small()
    x = mx.random.normal((2, 12, 3))
    shift = mx.array([10.0, -3.0, 0.5])
    assert np.allclose(np.array(model(x + shift)), np.array(model(x) + shift), atol=1e-4)
    plain = small(instance_norm=False)
    assert not np.allclose(np.array(plain(x + shift)), np.array(plain(x) + shift), atol=1e-2)


def test_channel_independence_treats_features_alike():
    model = small()
    x = mx.random.normal((1, 12, 3))
    swapped = x[:, :, ::-1]
    assert np.allclose(np.array(model(swapped)), np.array(model(x)[:, :, ::-1]), atol=1e-5)


def test_the_model_folder_round_trips(tmp_path):
    model = small(decoder="autoregressive", num_layers=2)
    save_model(tmp_path, model, "forecaster", model.args)
    x = mx.random.normal((2, 12, 3))
    assert np.array_equal(np.array(mlxseq.load(tmp_path)(x)), np.array(model(x)))


def test_bad_arguments_and_shapes_are_named():
    with pytest.raises(ValueError, match="segment_length 5 must divide input_length 12"):
        small(segment_length=5)
    with pytest.raises(ValueError, match=r"expected inputs of shape \(B, L=12, D=3\), got shape \(2, 10, 3\)"):
        small()(mx.zeros((2, 10, 3)))
