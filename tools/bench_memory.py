"""Peak memory and time of recurrent layers against the sequence length: mlxseq vs torch.nn vs mlx.nn.

Each measurement runs in a fresh process (peak RSS is a per-process high-water
mark): the layer is built, then one forward pass (eval mode, no gradient) or one
training step (forward, backward of ``output.sum()``, gradients of all parameters)
runs on a random ``(B, T, D)`` batch. Reported per run:

- ``rss``: the process's peak resident memory growth over what it held once the
  library was imported and the layer built (``ru_maxrss`` before and after);
- ``mx peak``: MLX's own peak of array memory (``mx.get_peak_memory``), MLX only;
- ``s``: wall time of that one pass, compilation included (the first call).

    python tools/bench_memory.py                           # the table in docs/reliability.md (LSTM, B=1, D=H=64)
    python tools/bench_memory.py --kind gru --lengths 100,1000 --only mlxseq,torch
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_common beside this script
from bench_common import run_worker  # noqa: E402

RUNNERS = ("mlxseq", "mlxseq-graph", "torch", "mlx.nn")  # mlxseq-graph: MLXSEQ_NATIVE=0
MODES = ("forward", "train")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# --- workers (each in its own process) ------------------------------------------


def _torch_pass(kind, B, T, D, H, mode):
    import torch

    layer = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind](D, H, batch_first=True)
    x = torch.randn(B, T, D)
    before = _peak_rss_mb()
    start = time.perf_counter()
    if mode == "forward":
        layer.eval()
        with torch.no_grad():
            layer(x)
    else:
        layer(x)[0].sum().backward()
    return before, time.perf_counter() - start, None, f"torch {torch.__version__}"


def _mlx_pass(runner, kind, B, T, D, H, mode):
    if runner.startswith("mlxseq"):
        if runner == "mlxseq-graph":
            os.environ["MLXSEQ_NATIVE"] = "0"
        import mlxseq  # first: loads OpenBLAS before mlx.core

        layer = {"lstm": mlxseq.LSTM, "gru": mlxseq.GRU, "rnn": mlxseq.RNN}[kind](D, H)
    import mlx.core as mx
    import mlx.nn as nn

    if runner == "mlx.nn":
        layer = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind](D, H)
    x = mx.random.normal((B, T, D))
    mx.eval(layer.parameters(), x)

    def output(params):
        layer.update(params)
        out = layer(x)
        return out[0] if isinstance(out, tuple) else out

    before = _peak_rss_mb()
    mx.reset_peak_memory()
    start = time.perf_counter()
    if mode == "forward":
        layer.eval()
        mx.eval(output(layer.parameters()))
    else:
        mx.eval(mx.grad(lambda p: output(p).sum())(layer.parameters()))
    seconds = time.perf_counter() - start
    return before, seconds, mx.get_peak_memory() / 2**20, f"MLX {mx.__version__}"


def worker(runner, kind, B, T, D, H, mode):
    if runner == "torch":
        before, seconds, mx_peak, versions = _torch_pass(kind, B, T, D, H, mode)
    else:
        before, seconds, mx_peak, versions = _mlx_pass(runner, kind, B, T, D, H, mode)
    print(json.dumps(dict(rss=_peak_rss_mb() - before, mx_peak=mx_peak, s=seconds, versions=versions)))


# --- driver -----------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", default="lstm", choices=("lstm", "gru", "rnn"))
    parser.add_argument("--lengths", default="100,1000,2000,5000,10000", help="comma-separated T")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--only", default=",".join(RUNNERS), help="comma-separated runners")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--timeout", type=float, default=600, help="seconds per measurement")
    parser.add_argument("--worker", nargs=3, metavar=("RUNNER", "MODE", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = (args.batch, args.input_size, args.hidden_size)
    if args.worker:
        runner, mode, T = args.worker
        worker(runner, args.kind, args.batch, int(T), args.input_size, args.hidden_size, mode)
        return

    lengths = [int(t) for t in args.lengths.split(",")]
    runners = args.only.split(",")
    print(f"{args.kind.upper()} B={shape[0]} D={shape[1]} H={shape[2]}, one layer; "
          f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print("| T | mode | " + " | ".join(f"{r} rss MB | s" for r in runners) + " | mlxseq mx peak MB |")
    print("|---|---|" + "---|---|" * len(runners) + "---|")
    versions = set()
    for mode in args.modes.split(","):
        for T in lengths:
            cells, mx_peak = [], "-"
            for runner in runners:
                common = ["--kind", args.kind, "--batch", str(shape[0]), "--input-size", str(shape[1]),
                          "--hidden-size", str(shape[2])]
                try:
                    r = run_worker(__file__, [*common, "--worker", runner, mode, str(T)], f"{runner} {mode} T={T}",
                                   timeout=args.timeout)
                except (SystemExit, subprocess.TimeoutExpired) as error:  # a crash or a time-out is a result too
                    cells.append(f"{'timed out' if isinstance(error, subprocess.TimeoutExpired) else 'failed'} | -")
                    continue
                versions.add(r["versions"])
                cells.append(f"{r['rss']:.0f} | {r['s']:.2f}")
                if runner == "mlxseq":
                    mx_peak = f"{r['mx_peak']:.1f}"
            print(f"| {T} | {mode} | " + " | ".join(cells) + f" | {mx_peak} |", flush=True)
    print("versions: " + ", ".join(sorted(versions)))


if __name__ == "__main__":
    main()
