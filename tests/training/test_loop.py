"""Tests of mlxseq/training/loop.py on a tiny classifier with dropout: exact resume, crashes, NaN, stopping.

The model is small enough that every run takes well under a second once compiled,
so runs are compared bit for bit: an interrupted and resumed run must end with the
very parameters and optimizer state of a run that was never stopped.
"""

import json
import math
import os
import signal
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlxseq.checkpoint import save_weights
from mlxseq.data import BatchSampler
from mlxseq.tasks.batches import SamplerBatches
from mlxseq.training import (
    ResumeError,
    TrainingArgs,
    TrainingDivergedError,
    TrainingError,
    TrainingInterrupted,
    train,
)
from mlxseq.training import resume as resume_module
from mlxseq.training.resume import read_state

N, FEATURES, CLASSES = 50, 6, 3


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(FEATURES, 16)
        self.dropout = nn.Dropout(0.3)
        self.out = nn.Linear(16, CLASSES)

    def __call__(self, x):
        return self.out(self.dropout(nn.relu(self.hidden(x))))


class Batches(SamplerBatches):
    """ResumableBatches over (features, labels, weights); 7 batches per epoch (6 of 8, one of 2)."""

    def __init__(self, weights=None, seed=0):
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(N, FEATURES)).astype(np.float32)
        self.y = (self.x[:, 0] > 0).astype(np.int32) + (self.x[:, 1] > 1).astype(np.int32)
        self.w = np.ones(N, np.float32) if weights is None else weights
        super().__init__(BatchSampler(np.ones(N, dtype=np.int64), 64, seed=seed))

    def __iter__(self):
        for idx in self.sampler:
            yield mx.array(self.x[idx]), mx.array(self.y[idx]), mx.array(self.w[idx])


def loss_fn(model, batch):
    x, y, w = batch
    losses = nn.losses.cross_entropy(model(x), y) * w
    return losses.sum(), mx.array(x.shape[0])


def validate(model):
    batches = Batches()
    x, y = mx.array(batches.x), mx.array(batches.y)
    loss = nn.losses.cross_entropy(model(x), y).mean().item()
    mx.random.uniform(shape=(3,))  # validation that draws random numbers must not disturb training
    return {"loss": loss, "accuracy": float((model(x).argmax(-1) == y).mean().item()), "note": "all 50"}


def save_model(folder, model, summary):
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(folder / "model.safetensors", model)
    (folder / "summary.json").write_text(json.dumps({"step": summary["step"], "best": summary["best"]}))


ARGS = dict(
    lr=0.05, warmup_steps=3, decay="cosine", max_steps=20, eval_every=4, log_every=2, clip_norm=0.5,
    label_smoothing=0.0, save_every=3, seed=0,
)


def run(out, batches=None, *, on_step=None, resume=None, **changes):
    mx.random.seed(0)
    model = Classifier()
    result = train(
        model, batches or Batches(), loss_fn, TrainingArgs(**{**ARGS, **changes}), out,
        validate=validate, save_model=save_model, resume=resume, progress=False, log=None, on_step=on_step,
    )
    return model, result


def flat(model):
    return dict(tree_flatten(model.parameters()))


def assert_identical(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        assert mx.array_equal(a[name], b[name]).item(), f"{name} differs"


def optimizer_state(out):
    state = read_state(Path(out) / "resume")
    return mx.load(str(Path(out) / "resume" / state["folder"] / "optimizer.safetensors"))


def raise_at(step_to_fail, error):
    def on_step(step, loss):
        if step == step_to_fail:
            raise error

    return on_step


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """20 steps in one go: the reference every interrupted run must reproduce exactly."""
    out = tmp_path_factory.mktemp("straight")
    model, result = run(out)
    return out, flat(model), result


def test_a_run_stopped_by_ctrl_c_and_resumed_equals_an_uninterrupted_run(straight, tmp_path):
    reference_dir, reference, _ = straight
    with pytest.raises(TrainingInterrupted, match="interrupted at step 10"):
        run(tmp_path, on_step=raise_at(10, KeyboardInterrupt))  # mid-epoch 2, between checkpoints
    assert read_state(tmp_path / "resume")["step"] == 10
    model, result = run(tmp_path, resume=True)
    assert result.step == 20 and result.stopped == "max_steps"
    assert_identical(flat(model), reference)
    assert_identical(optimizer_state(tmp_path), optimizer_state(reference_dir))


def test_a_real_sigint_finishes_the_step_saves_and_stops(straight, tmp_path):
    _, reference, _ = straight

    def interrupt(step, loss):
        if step == 5:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends; the handler turns it into a flag

    with pytest.raises(TrainingInterrupted, match="at step 5"):
        run(tmp_path, on_step=interrupt)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    model, _ = run(tmp_path)
    assert_identical(flat(model), reference)


def test_a_crash_resumes_from_the_last_checkpoint_and_still_ends_identical(straight, tmp_path):
    _, reference, _ = straight
    with pytest.raises(RuntimeError, match="callback failed"):
        run(tmp_path, on_step=raise_at(11, RuntimeError("callback failed")))
    assert read_state(tmp_path / "resume")["step"] == 9  # save_every=3; nothing saved on a crash
    model, _ = run(tmp_path)
    assert_identical(flat(model), reference)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["kind"], r["step"]) for r in records]
    assert len(keys) == len(set(keys)), "steps redone after the crash were logged twice"
    assert [s for k, s in keys if k == "validation"] == [4, 8, 12, 16, 20]


def test_a_save_that_fails_midway_leaves_the_previous_checkpoint_loadable(straight, tmp_path, monkeypatch):
    _, reference, _ = straight
    real = resume_module.save_arrays
    calls = []

    def failing(path, arrays):
        calls.append(path)
        if len(calls) == 3:  # the model file of the second checkpoint is written, then the disk fills up
            Path(path).with_suffix(".partial").write_bytes(b"\x00" * 10)
            raise OSError("No space left on device")
        real(path, arrays)

    monkeypatch.setattr(resume_module, "save_arrays", failing)
    with pytest.raises(TrainingError, match=r"could not write the resume checkpoint in .* \(No space left on device\); "
                                            r"is the disk full\? its resume checkpoint of step 3 is whole"):
        run(tmp_path)
    monkeypatch.setattr(resume_module, "save_arrays", real)
    state = read_state(tmp_path / "resume")
    assert state["step"] == 3
    leftovers = sorted(p.name for p in (tmp_path / "resume").glob("step-*"))
    assert len(leftovers) == 2 and state["folder"] in leftovers  # the broken one is ignored
    model, _ = run(tmp_path)
    assert_identical(flat(model), reference)
    assert [p.name for p in (tmp_path / "resume").glob("step-*")] == [read_state(tmp_path / "resume")["folder"]]


def test_a_nan_loss_stops_at_its_step_and_keeps_the_checkpoint(tmp_path):
    poisoned = int(Batches().sampler.batches(0)[5][0])  # an example of the 6th batch
    weights = np.ones(N, np.float32)
    weights[poisoned] = np.nan
    with pytest.raises(TrainingDivergedError, match="loss is nan at step 6 ") as caught:
        run(tmp_path, Batches(weights))
    # Checkpoints came at step 3 (save_every) and 4 (eval_every); the NaN step saved nothing.
    assert f"the resume checkpoint of step 4 in {tmp_path / 'resume'} is intact" in str(caught.value)
    assert read_state(tmp_path / "resume")["step"] == 4
    mx.random.seed(1)
    model = Classifier()
    from mlxseq.training.loop import make_optimizer

    optimizer = make_optimizer(TrainingArgs(**ARGS))
    optimizer.init(model.trainable_parameters())
    resume_module.load_checkpoint(tmp_path / "resume", model, optimizer)
    assert all(mx.isfinite(v).all().item() for v in flat(model).values())


def test_early_stopping_after_patience_validations_without_improvement(tmp_path):
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.9])

    def getting_worse(model):
        return {"bleu": next(scores)}

    mx.random.seed(0)
    args = TrainingArgs(**{**ARGS, "max_steps": 100, "eval_every": 2, "metric": "bleu", "patience": 2})
    result = train(Classifier(), Batches(), loss_fn, args, tmp_path, validate=getting_worse,
                   save_model=save_model, progress=False, log=None)
    assert (result.stopped, result.step) == ("early_stopping", 8)
    assert result.best == {"metric": "bleu", "value": 0.7, "step": 4}
    assert json.loads((tmp_path / "best" / "summary.json").read_text())["step"] == 4
    assert json.loads((tmp_path / "last" / "summary.json").read_text())["step"] == 8


def test_max_epochs_ends_training_at_the_epoch_boundary(tmp_path):
    _, result = run(tmp_path, max_steps=0, max_epochs=2, eval_every=0)
    assert (result.step, result.stopped) == (14, "max_epochs")
    assert read_state(tmp_path / "resume")["step"] == 14


def test_metrics_log_and_curves(straight):
    out, _, result = straight
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train_records] == list(range(2, 21, 2))
    first = train_records[0]
    assert set(first) == {"kind", "step", "epoch", "loss", "ppl", "tokens_per_s", "lr", "grad_norm", "elapsed"}
    assert first["ppl"] == pytest.approx(math.exp(first["loss"]))
    assert first["lr"] == pytest.approx(0.05 * 2 / 3)  # warmup: step 2 of 3
    validation = [r for r in records if r["kind"] == "validation"]
    assert validation[-1]["loss"] == result.metrics["loss"] and validation[-1]["note"] == "all 50"
    png = (out / "curves.png").read_bytes() if (out / "curves.png").exists() else None
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert png is None
    else:
        assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_flags_refuse_what_cannot_be_done(straight, tmp_path):
    with pytest.raises(ResumeError, match="no resume checkpoint"):
        run(tmp_path / "fresh", resume=True)
    out, _, _ = straight
    with pytest.raises(ResumeError, match="already holds a run"):
        run(out, resume=False)


def test_a_missing_metric_names_the_ones_there(tmp_path):
    with pytest.raises(Exception, match=r"training.metric 'bleu' is not a validation metric; got \['accuracy', 'loss'\]"):
        run(tmp_path, metric="bleu")


def test_validation_does_not_move_the_training_random_stream(straight, tmp_path):
    _, reference, _ = straight

    def quiet_validate(model):  # the same metrics, without drawing random numbers
        batches = Batches()
        x, y = mx.array(batches.x), mx.array(batches.y)
        return {"loss": nn.losses.cross_entropy(model(x), y).mean().item()}

    mx.random.seed(0)
    model = Classifier()
    train(model, Batches(), loss_fn, TrainingArgs(**ARGS), tmp_path, validate=quiet_validate,
          save_model=save_model, progress=False, log=None)
    assert_identical(flat(model), reference)


def test_keep_checkpoints_keeps_the_model_folders_of_the_last_saves(tmp_path):
    saved = {}

    def remember(step, loss):
        if step in (15, 16, 18, 20):
            saved[step] = {k: mx.array(v) for k, v in flat(model_holder["model"]).items()}

    model_holder = {}
    mx.random.seed(0)
    model_holder["model"] = model = Classifier()
    train(
        model, Batches(), loss_fn, TrainingArgs(**{**ARGS, "keep_checkpoints": 3}), tmp_path,
        validate=validate, save_model=save_model, progress=False, log=None, on_step=remember,
    )
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["step-00000016", "step-00000018", "step-00000020"]  # saves at 3, 4, 6, 8, 9, ... 18, 20
    for name in kept:
        step = int(name[len("step-"):])
        weights = mx.load(str(tmp_path / "checkpoints" / name / "model.safetensors"))
        assert_identical(weights, saved[step])
        assert json.loads((tmp_path / "checkpoints" / name / "summary.json").read_text())["step"] == step


def test_a_resumed_run_drops_kept_checkpoints_of_steps_it_redoes(tmp_path):
    with pytest.raises(RuntimeError, match="callback failed"):
        run(tmp_path, on_step=raise_at(11, RuntimeError("callback failed")), keep_checkpoints=5)
    assert read_state(tmp_path / "resume")["step"] == 9
    stale = tmp_path / "checkpoints" / "step-00000010"
    stale.mkdir()  # as if a crash had come between the checkpoint and the resume state
    run(tmp_path, keep_checkpoints=5, max_steps=10)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step-00000003", "step-00000004", "step-00000006", "step-00000008", "step-00000009",
                     "step-00000010"][-5:]
    assert (tmp_path / "checkpoints" / "step-00000010" / "model.safetensors").is_file()


def test_keep_checkpoints_must_not_be_negative():
    with pytest.raises(ValueError, match="keep_checkpoints must be >= 0, got -1"):
        TrainingArgs(**{**ARGS, "keep_checkpoints": -1})
