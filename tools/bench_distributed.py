"""Data-parallel training speed: 1 process vs N local processes over MLX's ring backend, same global batch.

Each run trains a language model (``model_type: lm``, LSTM) with the compiled
training step of ``mlxseq.training`` on synthetic tokens: the global batch of
B streams x T tokens is split into N shards (one per process), the summed
losses, token counts and gradients are all-reduced in one message, and every
process applies the same update. Reported: global tokens per second (B*T per
step over the median step time), and the communication time of one step,
timed separately: the median of an all-reduce of a gradient-sized message,
on its own.

Processes are started by this script as ``mlx.launch`` starts them (MLX_RANK and
an MLX_HOSTFILE of 127.0.0.1 ports). On a machine with fewer cores than
processes x threads the processes compete for cores: the point there is the
overhead, not a speed-up.

    python tools/bench_distributed.py                       # 1 and 2 processes
    python tools/bench_distributed.py --processes 1,2,4 --batch 64 --hidden 512
"""

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _worker(settings: dict) -> dict:
    import mlxseq  # noqa: F401 - OpenBLAS before mlx.core
    import mlx.core as mx
    import mlx.optimizers as optim
    import numpy as np
    from mlx.utils import tree_flatten, tree_map

    from mlxseq.losses import label_smoothed_cross_entropy
    from mlxseq.models import language_model
    from mlxseq.training.distributed import all_sum_tree, init_world
    from mlxseq.training.step import TrainStep

    world = init_world(None, timeout=120)
    mx.random.seed(0)
    args = language_model.ModelArgs(
        vocab_size=settings["vocab"], embed_size=settings["embed"], hidden_size=settings["hidden"],
        num_layers=settings["layers"], rnn_type="lstm", dropout=0.0,
    )
    model = language_model.build_model(args)
    optimizer = optim.Adam(1e-3)
    optimizer.init(model.trainable_parameters())

    def loss_fn(model, batch):
        inputs, targets = batch
        logits, _ = model(inputs)
        return label_smoothed_cross_entropy(logits, targets, -1, 0.0)

    step = TrainStep(model, optimizer, loss_fn, clip_norm=1.0, mode="step", group=world.group)
    rng = np.random.default_rng(0)
    B, T = settings["batch"], settings["seq_len"]
    tokens = rng.integers(0, settings["vocab"], size=(B, T + 1)).astype(np.int32)
    batch = world.shard((mx.array(tokens[:, :-1]), mx.array(tokens[:, 1:])))

    def one_step():
        loss, count, norm = step(batch)
        mx.eval(loss, count, norm, model.parameters(), optimizer.state)

    times = []
    for i in range(settings["warmup"] + settings["steps"]):
        start = time.perf_counter()
        one_step()
        if i >= settings["warmup"]:
            times.append(time.perf_counter() - start)
    grads = tree_map(mx.zeros_like, model.trainable_parameters())
    message = (mx.array(0.0), mx.array(0), grads)
    comm = []
    if world.distributed:
        for i in range(settings["warmup"] + settings["steps"]):
            world.barrier()
            start = time.perf_counter()
            mx.eval(all_sum_tree(message, world.group))
            if i >= settings["warmup"]:
                comm.append(time.perf_counter() - start)
    parameters = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    return {
        "rank": world.rank, "size": world.size, "step_s": statistics.median(times),
        "comm_s": statistics.median(comm) if comm else 0.0, "parameters": parameters,
        "message_mb": 4 * (parameters + 2) / 1e6, "mlx": mx.__version__,
    }


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run(processes: int, settings: dict, timeout: float) -> list[dict]:
    """Start ``processes`` workers (a ring on 127.0.0.1 if more than one); their results by rank."""
    with tempfile.TemporaryDirectory() as folder:
        env = dict(os.environ)
        if processes > 1:
            hostfile = Path(folder) / "hosts.json"
            hostfile.write_text(json.dumps([[f"127.0.0.1:{p}"] for p in _free_ports(processes)]))
            env["MLX_HOSTFILE"] = str(hostfile)
        children = []
        try:
            for rank in range(processes):
                if processes > 1:
                    env["MLX_RANK"] = str(rank)
                out = Path(folder) / f"rank{rank}.json"
                children.append((out, subprocess.Popen(
                    [sys.executable, __file__, "--worker", json.dumps(settings), str(out)],
                    cwd=ROOT, env=dict(env), start_new_session=True,
                )))
            end = time.monotonic() + timeout
            for _, child in children:
                child.wait(timeout=max(end - time.monotonic(), 0.1))
        finally:
            for _, child in children:
                if child.poll() is None:
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
        for out, child in children:
            if child.returncode != 0 or not out.is_file():
                raise SystemExit(f"a worker of the {processes}-process run failed (exit {child.returncode})")
        return [json.loads(out.read_text()) for out, _ in children]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts")
    parser.add_argument("--batch", type=int, default=32, help="global batch: B streams")
    parser.add_argument("--seq-len", type=int, default=32, help="T tokens per stream and step")
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--embed", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10, help="timed steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600, help="seconds for one run of all processes")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        result = _worker(json.loads(options.worker[0]))
        Path(options.worker[1]).write_text(json.dumps(result))
        return
    settings = {k: getattr(options, k) for k in ("batch", "seq_len", "vocab", "embed", "hidden", "layers", "steps", "warmup")}
    rows = []
    for count in (int(n) for n in options.processes.split(",")):
        results = run(count, settings, options.timeout)
        step = max(r["step_s"] for r in results)  # the step ends when the slowest rank's does
        comm = statistics.median(r["comm_s"] for r in results)
        rows.append((count, step, comm, results[0]))
    first = rows[0][3]
    tokens = options.batch * options.seq_len
    print(f"Machine: {platform.system()} {platform.machine()}, {os.cpu_count()} cores; mlx {first['mlx']}, ring backend on 127.0.0.1")
    print(
        f"Model: lm, LSTM {options.layers} layer(s), embed {options.embed}, hidden {options.hidden}, vocab {options.vocab}: "
        f"{first['parameters']:,} parameters ({first['message_mb']:.1f} MB all-reduced per step as float32)"
    )
    print(f"Global batch: {options.batch} streams x {options.seq_len} tokens = {tokens} tokens per step; "
          f"medians of {options.steps} steps after {options.warmup} warm-up steps; compiled step, Adam, clip 1.0")
    print()
    print("| processes | step ms | global tokens/s | all-reduce ms per step | all-reduce share of step |")
    print("|---|---|---|---|---|")
    for count, step, comm, _ in rows:
        share = f"{100 * comm / step:.0f}%" if count > 1 else "-"
        comm_text = f"{1000 * comm:.1f}" if count > 1 else "-"
        print(f"| {count} | {1000 * step:.1f} | {tokens / step:,.0f} | {comm_text} | {share} |")


if __name__ == "__main__":
    main()
