"""Tests of mlxseq/training/step.py: clipping, compile modes, the fallback for untraceable models, the random key."""

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlxseq.training.step import TrainStep, random_key, set_random_key


class Regression(nn.Module):
    def __init__(self, read_values=False):
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.dropout = nn.Dropout(0.5)
        self.read_values = read_values

    def __call__(self, x):
        if self.read_values:
            np.array(x)  # reading values: impossible while mx.compile traces
        return self.linear(self.dropout(x))


def loss_fn(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).sum(), mx.array(x.shape[0] * 2)


def batch(seed):
    rng = np.random.default_rng(seed)
    return mx.array(rng.normal(size=(4, 3)).astype(np.float32)), mx.array(rng.normal(size=(4, 2)).astype(np.float32))


def run(mode, read_values=False, steps=3, clip=0.5, log=None):
    mx.random.seed(0)
    model = Regression(read_values)
    optimizer = optim.Adam(1e-2, bias_correction=True)
    optimizer.init(model.trainable_parameters())
    step = TrainStep(model, optimizer, loss_fn, clip, mode, log=log)
    losses = []
    for i in range(steps):
        loss, count, norm = step(batch(i))
        mx.eval(loss, model.parameters(), optimizer.state)
        losses.append(loss.item())
    return dict(tree_flatten(model.parameters())), losses, step


def test_clipping_scales_the_gradient_to_the_global_norm():
    mx.random.seed(0)
    model = Regression()
    model.eval()  # no dropout: the gradient is the plain one
    before = {k: mx.array(v) for k, v in tree_flatten(model.parameters())}
    optimizer = optim.SGD(learning_rate=1.0)
    _, grads = nn.value_and_grad(model, lambda m, x, y: loss_fn(m, (x, y))[0] / 8)(model, *batch(0))
    norm = float(np.sqrt(sum((np.array(g) ** 2).sum() for _, g in tree_flatten(grads))))
    loss, count, reported = TrainStep(model, optimizer, loss_fn, 0.1, "eager")(batch(0))
    assert reported.item() == pytest.approx(norm, rel=1e-5) and norm > 0.1
    for name, g in tree_flatten(grads):  # SGD with lr 1: the step is the clipped gradient
        change = before[name] - dict(tree_flatten(model.parameters()))[name]
        np.testing.assert_allclose(np.array(change), np.array(g) * 0.1 / norm, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("mode", ["step", "update"])
def test_compiled_modes_match_the_eager_step(mode):
    eager, eager_losses, _ = run("eager")
    compiled, losses, _ = run(mode)
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-5)
    for name in eager:
        np.testing.assert_allclose(np.array(compiled[name]), np.array(eager[name]), rtol=1e-5, atol=1e-6)


def test_auto_falls_back_to_compiling_the_update_and_restores_the_state():
    notes = []
    fallback, losses, step = run("auto", read_values=True, log=notes.append)
    assert step.mode == "update"
    assert len(notes) == 1 and "cannot be compiled whole" in notes[0]
    reference, reference_losses, _ = run("update", read_values=True)
    assert losses == reference_losses  # the failed trace left no trace in parameters, optimizer or random key
    for name in reference:
        assert mx.array_equal(fallback[name], reference[name]).item()


def test_auto_compiles_the_whole_step_when_the_model_allows():
    _, _, step = run("auto")
    assert step.mode == "auto" and len(step._shapes) == 1


def test_the_random_key_round_trips():
    mx.random.seed(123)
    mx.random.uniform(shape=(2,))
    key = random_key()
    first = mx.random.uniform(shape=(5,))
    mx.random.uniform(shape=(7,))
    set_random_key(key)
    assert random_key() == key
    assert mx.array_equal(mx.random.uniform(shape=(5,)), first).item()


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="compile mode must be one of"):
        TrainStep(Regression(), optim.SGD(learning_rate=0.1), loss_fn, 1.0, "jit")
