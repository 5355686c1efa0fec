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
