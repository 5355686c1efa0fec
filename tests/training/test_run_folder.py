"""Tests of mlxseq/training/run_folder.py: model folders swapped whole, crash recovery, metrics, primary-only writes."""

import json

import pytest

from mlxseq.training.run_folder import RunFolder


def writer(text):
    def write(folder):
        folder.mkdir(parents=True)
        (folder / "weights").write_text(text)

    return write


def test_a_model_folder_is_replaced_whole(tmp_path):
    run = RunFolder(tmp_path)
    run.write_model("last", writer("one"))
    run.write_model("last", writer("two"))
    assert (tmp_path / "last" / "weights").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_a_writer_that_fails_leaves_the_old_folder(tmp_path):
    run = RunFolder(tmp_path)
    run.write_model("best", writer("good"))

    def broken(folder):
        folder.mkdir()
        (folder / "weights").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        run.write_model("best", broken)
    assert (tmp_path / "best" / "weights").read_text() == "good"
    run.recover()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_recover_undoes_a_crash_between_the_two_renames(tmp_path):
    (tmp_path / ".last.old").mkdir()
    (tmp_path / ".last.old" / "weights").write_text("previous")
    (tmp_path / ".last.tmp").mkdir()  # the new folder, complete or not: it never replaced last
    RunFolder(tmp_path).recover()
    assert (tmp_path / "last" / "weights").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_metrics_are_appended_read_back_and_trimmed_for_a_resume(tmp_path):
    run = RunFolder(tmp_path)
    for step in (10, 20, 30):
        run.append_metrics({"kind": "train", "step": step, "loss": 1.0 / step})
    with open(run.metrics_path, "a") as handle:
        handle.write('{"kind": "train", "st')  # a line cut short by kill -9
    assert [r["step"] for r in run.read_metrics()] == [10, 20, 30]
    assert [r["step"] for r in run.keep_metrics_until(20)] == [10, 20]
    assert [json.loads(line)["step"] for line in run.metrics_path.read_text().splitlines()] == [10, 20]


def test_a_secondary_process_writes_nothing(tmp_path):
    run = RunFolder(tmp_path / "out", primary=False)
    run.write_model("last", writer("x"))
    run.append_metrics({"step": 1})
    run.write_text("config.yaml", "x")
    assert not run.write_curves([{"kind": "train", "step": 1, "loss": 1.0}])
    assert not (tmp_path / "out").exists()


def test_recover_removes_a_checkpoint_folder_cut_short_and_keeps_the_complete_ones(tmp_path):
    run = RunFolder(tmp_path)
    run.write_checkpoint(3, lambda folder: folder.mkdir(), keep=2)
    cut = tmp_path / "checkpoints" / ".step-00000006.tmp"
    cut.mkdir()
    run.recover()
    assert not cut.exists()
    assert [p.name for p in run.checkpoints()] == ["step-00000003"]


_HOLD_LOCK = """
import sys
from mlxseq.training.run_folder import RunFolder
with RunFolder(sys.argv[1]).locked():
    print("held", flush=True)
    sys.stdin.read()  # until the test closes stdin (or kills the process)
"""


def _holder(folder):
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(folder)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_process_cannot_take_a_held_run_folder_until_the_holder_ends(tmp_path):
    from mlxseq.training.run_folder import RunFolderBusyError

    holder = _holder(tmp_path / "run")
    try:
        with pytest.raises(RunFolderBusyError, match=rf"another training run \(pid {holder.pid}\) is using this folder"):
            with RunFolder(tmp_path / "run").locked():
                pass
    finally:
        holder.kill()  # as kill -9 would: the OS releases the lock
        holder.wait()
    with RunFolder(tmp_path / "run").locked():
        with RunFolder(tmp_path / "run").locked():  # re-entrant within one process
            assert (tmp_path / "run" / ".lock").read_text().strip() == str(__import__("os").getpid())
    with RunFolder(tmp_path / "run", primary=False).locked():  # other ranks take no lock
        pass


def test_mlxseq_train_in_a_held_folder_stops_with_one_line(tmp_path):
    from typer.testing import CliRunner

    from mlxseq.cli import app
    from tests.support.configs import write_training_config

    (tmp_path / "train.txt").write_text("the quick brown fox\n" * 50)
    config = write_training_config(tmp_path, {
        "version": 1, "task": "lm", "output_dir": str(tmp_path / "run"),
        "model": {"model_type": "lm", "embed_size": 8, "hidden_size": 8, "num_layers": 1},
        "data": {"train": [str(tmp_path / "train.txt")], "valid_fraction": 0.1, "batch_size": 2, "seq_len": 8},
        "training": {"max_steps": 2, "eval_every": 0, "log_every": 1},
    }, {})
    holder = _holder(tmp_path / "run")
    try:
        result = CliRunner().invoke(app, ["train", str(config)])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 1
    assert result.output.strip() == (f"error: {tmp_path / 'run'}: another training run (pid {holder.pid}) is using "
                                     "this folder; wait for it to end or choose another output_dir")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_recover_removes_atomic_writes_cut_short(tmp_path):
    run = RunFolder(tmp_path)
    (tmp_path / ".curves.png.k2j4.tmp.png").write_bytes(b"partial")
    (tmp_path / ".metrics.jsonl.x8.tmp").write_text("partial")
    (tmp_path / "curves.png").write_bytes(b"kept")
    run.recover()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]


def test_curves_and_log_lines_say_what_the_loss_counts(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    from mlxseq.training.curves import plot_curves
    from mlxseq.training.progress import LossUnits, Progress

    units = LossUnits("example", perplexity=False, loss_label="cross-entropy per example", training_note="adversarial")
    labels = []
    monkeypatch.setattr(Axes, "set_ylabel", lambda self, text, *a, **k: labels.append(text))
    legends = []
    monkeypatch.setattr(Axes, "legend", lambda self, *a, **k: legends.append([l.get_label() for l in self.lines]))
    records = [{"kind": "train", "step": 10, "loss": 0.5, "examples_per_s": 100.0},
               {"kind": "validation", "step": 10, "loss": 0.4, "accuracy": 80.0}]
    assert plot_curves(records, tmp_path / "curves.png", units=units)
    assert labels == ["loss (cross-entropy per example)", "validation metric"]
    assert legends[0] == ["training loss (adversarial)", "validation loss"] and legends[1] == ["accuracy"]
    lines = []
    with Progress(100, 0, enabled=False, log=lines.append, units=units) as progress:
        progress.window({"step": 10, "epoch": 0, "loss": 0.5, "examples_per_s": 100.0, "lr": 0.001})
    assert lines == ["step 10/100  epoch 0  loss 0.5000  100 examples/s  lr 1.000e-03"]
