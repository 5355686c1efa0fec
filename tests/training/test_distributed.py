"""Tests of mlxseq/training/distributed.py: two local ranks over MLX's ring backend on 127.0.0.1.

Each test starts its ranks itself (tests/training/distributed_worker.py) on free ports,
with a deadline, and kills them if anything goes wrong. Two ranks must end with the same
parameters as each other and as one process trained on the same global batches.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from mlxseq.training.distributed import (
    DistributedError,
    World,
    _no_answer,
    _Watchdog,
    init_world,
    launched_backend,
    shard_rows,
)
from mlxseq.runs.from_config import train_from_config
from tests.tasks.test_language_model import write_config as write_lm_config
from tests.training import distributed_worker as worker

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 150  # seconds for one launch of both ranks (compiling on a loaded 2-core machine included)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def consecutive_free_ports(count: int) -> int:
    """The first of ``count`` free consecutive ports (what ``mlx.launch -p PORT -n count`` listens on)."""
    for _ in range(100):
        first = free_ports(1)[0]
        sockets = [socket.socket() for _ in range(count)]
        try:
            for offset, s in enumerate(sockets):
                s.bind(("127.0.0.1", first + offset))
            return first
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free port range")


def run_bounded(command: list[str], deadline: float = DEADLINE) -> subprocess.CompletedProcess:
    """Run ``command`` in its own process group; kill the whole group if it outlives ``deadline``."""
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=deadline)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"{' '.join(command)} did not finish within {deadline} s")
    return subprocess.CompletedProcess(command, process.returncode, output)


def launch(out: Path, scenario: str, ranks=(0, 1), size: int = 2, deadline: float = DEADLINE) -> list[tuple[int, str]]:
    """Run the worker as ``ranks`` of a ring of ``size`` on 127.0.0.1; (exit code, stderr) of each."""
    out.mkdir(parents=True, exist_ok=True)
    hostfile = out / "hosts.json"
    hostfile.write_text(json.dumps([[f"127.0.0.1:{p}"] for p in free_ports(size)]))
    processes, logs = [], []
    try:
        for rank in ranks:
            log = open(out / f"rank{rank}.log", "w+")
            logs.append(log)
            env = {**os.environ, "MLX_RANK": str(rank), "MLX_HOSTFILE": str(hostfile)}
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "tests.training.distributed_worker", str(out), scenario],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            ))
        end = time.monotonic() + deadline
        for process in processes:
            process.wait(timeout=max(end - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        pytest.fail(f"{scenario}: the ranks did not finish within {deadline} s")
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    results = []
    for process, log in zip(processes, logs):
        log.seek(0)
        results.append((process.returncode, log.read()))
        log.close()
    return results


def check_ok(results):
    for code, output in results:
        assert code == 0, output


def load(out: Path, rank: int):
    return dict(np.load(out / f"rank{rank}.npz")), json.loads((out / f"rank{rank}.json").read_text())


def assert_same_parameters(a: dict, b: dict, atol: float):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=atol, err_msg=key)


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    """The reference: one process, the same global batches, 6 steps."""
    model, losses = worker.run(tmp_path_factory.mktemp("single") / "run")
    return worker.parameters(model), losses


def test_the_batches_include_an_uneven_split_and_an_empty_shard():
    sampler = worker.Batches().sampler
    sizes = [len(b) for epoch in (0, 1) for b in sampler.batches(epoch)]
    assert sorted(sizes) == [1, 1, 7, 7, 7, 7]  # 7 rows: 4 and 3; 1 row: rank 1 gets none
    assert [shard_rows(7, r, 2) for r in (0, 1)] == [(0, 4), (4, 7)]
    assert [shard_rows(1, r, 2) for r in (0, 1)] == [(0, 1), (1, 1)]


def test_two_ranks_end_with_the_parameters_of_one_process(tmp_path, single_process):
    check_ok(launch(tmp_path, "train"))
    (rank0, report0), (rank1, report1) = load(tmp_path, 0), load(tmp_path, 1)
    assert report0["size"] == report1["size"] == 2 and report0["ended"] == report1["ended"] == "done"
    assert_same_parameters(rank0, rank1, atol=0)  # the all-reduce gives both ranks the same update
    reference, losses = single_process
    assert_same_parameters(rank0, reference, atol=2e-6)
    assert np.allclose([report0["losses"][str(s)] for s in range(1, 7)], [losses[s] for s in range(1, 7)], atol=1e-6)
    # Rank 0 alone wrote the run folder: each record once, and the resume checkpoint at step 6.
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in records if r["kind"] == "validation"] == [("validation", 3), ("validation", 6)]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert json.loads((tmp_path / "run" / "resume" / "state.json").read_text())["step"] == 6


def test_ctrl_c_on_one_rank_stops_both_and_the_run_resumes_exactly(tmp_path, single_process):
    check_ok(launch(tmp_path, "interrupt"))
    for rank in (0, 1):
        report = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert report["ended"].startswith("interrupted: interrupted at step 4"), report
    assert json.loads((tmp_path / "run" / "resume" / "state.json").read_text())["step"] == 4
    check_ok(launch(tmp_path, "resume"))
    (rank0, report0), (rank1, _) = load(tmp_path, 0), load(tmp_path, 1)
    assert sorted(report0["losses"]) == ["5", "6"]  # steps 5 and 6 only: it resumed after step 4
    assert_same_parameters(rank0, rank1, atol=0)
    assert_same_parameters(rank0, single_process[0], atol=2e-6)


def test_a_missing_peer_ends_with_a_timeout_message_naming_it(tmp_path):
    start = time.monotonic()
    [(code, output)] = launch(tmp_path, "init", ranks=(0,), deadline=60)
    assert time.monotonic() - start < 40
    hosts = json.loads((tmp_path / "hosts.json").read_text())
    assert code == 1, output
    assert (
        f"error: distributed start-up timed out after 2 s: rank 0 of 2 (listening on {hosts[0][0]}) "
        f"heard nothing from rank 1 at {hosts[1][0]}"
    ) in output, output


def test_the_watchdog_kills_a_process_stuck_past_the_deadline(tmp_path):
    code = (
        "import time; from mlxseq.training.distributed import _Watchdog\n"
        "w = _Watchdog(0.5, 'rank 3 heard nothing from rank 2')\n"
        "time.sleep(30)\n"
    )
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert time.monotonic() - start < 20
    assert done.returncode == -signal.SIGKILL
    assert "error: rank 3 heard nothing from rank 2 (stopped by the start-up watchdog)" in done.stderr


def test_a_stopped_watchdog_leaves_the_process_alone():
    watchdog = _Watchdog(0.2, "never shown")
    watchdog.stop()
    assert watchdog.process.returncode == 0
    time.sleep(0.4)  # still here


def test_the_launcher_environment_picks_the_backend():
    assert launched_backend({}) is None
    assert launched_backend({"MLX_RANK": "1", "MLX_HOSTFILE": "/tmp/h.json"}) == "ring"
    assert launched_backend({"MLX_RANK": "0", "MLX_JACCL_COORDINATOR": "10.0.0.1:5000"}) == "jaccl"
    assert launched_backend({"MLX_RANK": "0", "MLX_WORLD_SIZE": "8", "NCCL_HOST_IP": "10.0.0.1"}) == "nccl"
    assert launched_backend({"OMPI_COMM_WORLD_SIZE": "2"}) == "mpi"


def test_without_a_launcher_training_is_single_process_unless_distributed_is_required():
    assert init_world(None, environ={}) == World() and init_world(False, environ={"OMPI_COMM_WORLD_SIZE": "2"}) == World()
    with pytest.raises(DistributedError, match="needs processes started by a launcher, e.g. `mlx.launch"):
        init_world(True, environ={})


def test_a_single_world_passes_batches_and_values_through():
    world, batch = World(), (mx.zeros((3, 2)), mx.ones((3,)))
    assert world.shard(batch) is batch and world.broadcast_json({"a": 1}) == {"a": 1} and world.any(True)
    world.check_same("anything", [1, 2])


def test_a_shard_splits_rows_and_leaves_other_arrays_whole():
    world = World(group=None, rank=1, size=2)
    x, flag = mx.arange(10).reshape(5, 2), mx.array(3)
    shard = world.shard((x, mx.arange(5), flag))
    assert shard[0].tolist() == [[6, 7], [8, 9]] and shard[1].tolist() == [3, 4] and shard[2] is flag
    assert World(rank=1, size=2).shard((mx.zeros((1, 4)),)) is None


def test_each_rank_spells_its_rows_of_a_batch_from_the_whole_table():
    from mlxseq.pipelines.classifier import TextClassifier, TextSettings
    from mlxseq.data import BatchSampler, CharTokenizer, WordTokenizer
    from mlxseq.models.classifier import ModelArgs, build_model
    from mlxseq.tasks.classification import LabelledBatches

    texts = [f"w{i}" for i in range(63)] + ["w0"]  # 63 distinct words and the padding word: 64 rows, as many as the batch
    words, chars = WordTokenizer.build(texts), CharTokenizer.build(texts)
    mx.random.seed(0)
    model = build_model(ModelArgs(vocab_size=words.vocab_size, num_classes=2, embed_size=4, hidden_size=3,
                                  char_vocab_size=chars.vocab_size, char_embed_size=3, char_hidden_size=2))
    classifier = TextClassifier(model, words, TextSettings(["0", "1"], max_word_chars=4), chars=chars)
    sampler = BatchSampler([1] * 64, 64, multiple=1, max_batch_size=64, seed=0)
    batches = LabelledBatches(classifier, [classifier.encode(t) for t in texts], [classifier.spell(t) for t in texts],
                              np.zeros(64, dtype=np.int32), sampler, multiple=1)
    batch = next(iter(batches))
    assert batch[2].shape[0] == batch[0].shape[0] == 64 and batches.whole_arrays == (2, 3)
    whole = np.array(model(*batch[:-1]))
    for rank in (0, 1):
        shard = World(rank=rank, size=2).shard(batch, batches.whole_arrays)
        assert shard[2].shape == batch[2].shape and shard[4].shape == (32, 1)  # whole table, own rows of spelling_ids
        assert np.allclose(np.array(model(*shard[:-1])), whole[32 * rank: 32 * rank + 32], atol=1e-6)


def test_each_rank_takes_its_roots_with_their_spans_and_the_sums_add_up():
    from mlxseq.pipelines.classifier import TextClassifier, TextSettings
    from mlxseq.data import BatchSampler, WordTokenizer, nested_spans
    from mlxseq.models.classifier import ModelArgs, build_model
    from mlxseq.tasks.classification import SpanBatches, make_loss

    texts = ["a b c d", "b c", "c", "e f g", "f g", "h i", "i", "j"]  # 4 roots holding 8 spans
    words = WordTokenizer.build(texts)
    mx.random.seed(0)
    model = build_model(ModelArgs(vocab_size=words.vocab_size, num_classes=2, embed_size=4, hidden_size=3, dropout=0.0))
    classifier = TextClassifier(model, words, TextSettings(["0", "1"]))
    encoded = [classifier.encode(t) for t in texts]
    table = nested_spans([t.split() for t in texts])
    sampler = BatchSampler([len(encoded[k]) for k in table.roots], 64, multiple=8, max_batch_size=64, seed=0)
    batches = SpanBatches(classifier, encoded, None, np.arange(8, dtype=np.int32) % 2, table, 3.0, sampler, multiple=8)
    batch = next(iter(batches))
    assert batch[0].shape[0] == 4 and batches.whole_arrays == ()
    loss = make_loss(0.0, spans=True)
    total, count = loss(model, batch)
    shards = [World(rank=rank, size=2).shard(batch, batches.whole_arrays) for rank in (0, 1)]
    assert all(s[0].shape[0] == 2 and s[2].shape == (2, batch[2].shape[1]) for s in shards)  # two roots, all their spans
    parts = [loss(model, shard) for shard in shards]
    assert count.item() == 4 * 3.0 + 4 == sum(c.item() for _, c in parts)  # whole texts weigh 3, the phrases 1
    assert total.item() == pytest.approx(sum(t.item() for t, _ in parts), rel=1e-5)


def test_each_rank_tags_its_sentences_from_the_whole_spelling_table():
    from mlxseq.pipelines.classifier import TextSettings
    from mlxseq.data import BatchSampler, CharTokenizer, WordTokenizer
    from mlxseq.models.tagger import ModelArgs, build_model
    from mlxseq.pipelines.tagger import WordEncoder
    from mlxseq.tasks.tagging import SentenceBatches

    sentences = [[f"w{i}"] for i in range(63)] + [["w0"]]  # 63 distinct words and the padding word: 64 rows
    words = WordTokenizer.build(" ".join(s[0] for s in sentences))
    chars = CharTokenizer.build(s[0] for s in sentences)
    encoder = WordEncoder(words, chars, TextSettings(["A", "B"], max_word_chars=4))
    mx.random.seed(0)
    model = build_model(ModelArgs(vocab_size=words.vocab_size, num_tags=2, char_vocab_size=chars.vocab_size, embed_size=4,
                                  char_embed_size=3, char_hidden_size=2, hidden_size=3, num_layers=1))
    model.eval()
    sampler = BatchSampler([1] * 64, 64, multiple=1, max_batch_size=64, seed=0)
    batches = SentenceBatches(encoder, [encoder.word_ids(s) for s in sentences], [encoder.char_ids(s) for s in sentences],
                              [[0]] * 64, sampler, multiple=1)
    batch = next(iter(batches))
    assert batch[2].shape[0] == batch[0].shape[0] == 64 and batches.whole_arrays == (2, 3)
    whole = np.array(model.emissions(*batch[:-1]))
    for rank in (0, 1):
        shard = World(rank=rank, size=2).shard(batch, batches.whole_arrays)
        assert shard[2].shape == batch[2].shape and shard[4].shape == (32, 1)
        assert np.allclose(np.array(model.emissions(*shard[:-1])), whole[32 * rank: 32 * rank + 32], atol=1e-6)


def test_start_up_messages_name_the_rank_and_address(tmp_path):
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps([["10.0.0.1:5000"], ["10.0.0.2:5000"], ["10.0.0.3:5000"]]))
    env = {"MLX_RANK": "2", "MLX_HOSTFILE": str(hostfile)}
    refused = _no_answer("ring", 60, ("[ring] Couldn't connect (error: 111)", False), env)
    assert refused.startswith("distributed start-up failed: rank 2 of 3 could not connect to rank 0 at 10.0.0.1:5000")
    waited = _no_answer("ring", 60, None, env)
    assert waited.startswith(
        "distributed start-up timed out after 60 s: rank 2 of 3 (listening on 10.0.0.3:5000) "
        "heard nothing from rank 1 at 10.0.0.2:5000: is it running"
    )
    nccl = _no_answer("nccl", 5, None, {"MLX_RANK": "3", "NCCL_HOST_IP": "10.0.0.1", "NCCL_PORT": "12345"})
    assert nccl.startswith("distributed start-up timed out after 5 s: rank 3 heard nothing from rank 0 at 10.0.0.1:12345")


@pytest.mark.skipif(not (shutil.which("mlx.launch") and shutil.which("mlxseq")), reason="mlx.launch or mlxseq not on PATH")
def test_mlx_launch_trains_a_stream_language_model_and_resumes_it_exactly(tmp_path):
    """The README's command; stopping mid-epoch, the state each rank carries for its streams must survive."""
    config = write_lm_config(tmp_path, training={"max_steps": 6, "eval_every": 3, "log_every": 1})
    train_from_config(config, [f"output_dir={tmp_path / 'single'}"], quiet=True)
    for steps in (3, 6):  # 24 batches per epoch: step 3 is mid-epoch, the carried state matters
        command = [
            shutil.which("mlx.launch"), "-n", "2", "-p", str(consecutive_free_ports(2)), "--",
            shutil.which("mlxseq"), "train", str(config), "--set", f"training.max_steps={steps}", "--quiet",
        ]
        done = run_bounded(command)
        assert done.returncode == 0, done.stdout
        assert done.stdout.count("trained to step") == 1, done.stdout  # rank 0 alone reports
    single, launched = (
        [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        for name in ("single", "run")
    )
    assert [(r["kind"], r["step"]) for r in launched] == [(r["kind"], r["step"]) for r in single]
    np.testing.assert_allclose([r["loss"] for r in launched], [r["loss"] for r in single], rtol=1e-5)
    state = json.loads((tmp_path / "run" / "resume" / "state.json").read_text())
    assert state["step"] == 6 and (tmp_path / "run" / "resume" / state["folder"] / "ranks.safetensors").is_file()
