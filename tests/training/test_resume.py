"""Tests of mlxseq/training/resume.py: the pointer file, strict reading, a checkpoint that fits the model."""

import json

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import pytest
from mlx.utils import tree_flatten

from mlxseq.training.resume import ResumeError, load_checkpoint, read_state, save_checkpoint

STATE = {"step": 7, "epoch": 1, "batches": {"index": 3}, "random_key": [0, 5], "trackers": {}, "elapsed": 1.5}


def model_and_optimizer(width=4):
    model = nn.Sequential(nn.Linear(3, width), nn.Dropout(0.1), nn.Linear(width, 2))
    optimizer = optim.AdamW(1e-3, bias_correction=True)
    optimizer.init(model.trainable_parameters())
    return model, optimizer


def test_save_and_load_round_trip_parameters_and_optimizer_state(tmp_path):
    mx.random.seed(0)
    model, optimizer = model_and_optimizer()
    optimizer.state["step"] = mx.array(7, mx.uint64)
    optimizer.state["layers"][0]["weight"]["m"] = mx.ones((4, 3))
    first = save_checkpoint(tmp_path, model, optimizer, STATE)
    second = save_checkpoint(tmp_path, model, optimizer, {**STATE, "step": 8})
    assert [p.name for p in tmp_path.glob("step-*")] == [second.name] and first != second
    mx.random.seed(1)
    other, other_optimizer = model_and_optimizer()
    state = load_checkpoint(tmp_path, other, other_optimizer)
    assert state["step"] == 8 and state["batches"] == {"index": 3}
    for (name, a), (_, b) in zip(tree_flatten(model.parameters()), tree_flatten(other.parameters())):
        assert mx.array_equal(a, b).item(), name
    assert other_optimizer.state["step"].item() == 7
    assert mx.array_equal(other_optimizer.state["layers"][0]["weight"]["m"], mx.ones((4, 3))).item()
    assert other_optimizer.state["layers"][1] == {}  # the dropout's empty entry survives


def test_a_checkpoint_of_another_model_is_refused_by_name(tmp_path):
    model, optimizer = model_and_optimizer(4)
    save_checkpoint(tmp_path, model, optimizer, STATE)
    wider, wider_optimizer = model_and_optimizer(5)
    with pytest.raises(ResumeError, match=r"does not fit this model: .*model.safetensors: weight layers\.\d\.weight has shape"):
        load_checkpoint(tmp_path, wider, wider_optimizer)


def test_state_json_is_read_strictly(tmp_path):
    with pytest.raises(ResumeError, match="no resume checkpoint"):
        read_state(tmp_path)
    model, optimizer = model_and_optimizer()
    save_checkpoint(tmp_path, model, optimizer, STATE)
    path = tmp_path / "state.json"
    state = json.loads(path.read_text())
    path.write_text(json.dumps({**state, "surprise": 1}))
    with pytest.raises(ResumeError, match=r"state.json: unknown keys \['surprise'\]"):
        read_state(tmp_path)
    path.write_text(json.dumps({**state, "format_version": 99}))
    with pytest.raises(ResumeError, match="format_version 99 is not supported"):
        read_state(tmp_path)
    path.write_text(json.dumps({**state, "folder": "step-gone"}))
    with pytest.raises(ResumeError, match="names 'step-gone', which is not there"):
        read_state(tmp_path)
    path.write_text("{")
    with pytest.raises(ResumeError, match="not valid JSON"):
        read_state(tmp_path)
