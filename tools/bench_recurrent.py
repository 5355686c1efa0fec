"""Tokens per second of recurrent layers: mlxseq vs torch.nn (CPU) vs mlx.nn, in one run.

Each library runs in its own process, so that each gets the BLAS it would get
as installed: mlxseq loads OpenBLAS before MLX; "mlx.nn" is a plain install
(the wheel's reference BLAS on Linux); "mlx.nn+OpenBLAS" is mlx.nn with the
same BLAS mlxseq uses, to separate the layer code from the BLAS.

Measured: inference (forward) and a training step (forward, backward of
``output.mean()``, gradients of all parameters), medians after warm-up, and the
step's peak memory: the growth of the process's resident memory (VmHWM after
resetting it through /proc/self/clear_refs, over the RSS before the step), with
the free memory of glibc's heap given back first (``malloc_trim``) and MLX's
buffer cache off for that step, so that every page the step touches counts in
both libraries (without it, torch's step reuses pages its heap kept from earlier
steps and the growth undercounts its peak by half and more, and MLX's cache hides
what it holds). The timed runs come before, with both allocators as they are.
"mlxseq" runs the path ``mlxseq info`` names (the native recurrence where it is
built); "mlxseq-graph" is mlxseq with ``MLXSEQ_NATIVE=0`` (its MLX graph).
MLX functions run eagerly and under ``mx.compile``, the faster counts;
torch runs eagerly (its fused CPU kernels). Tokens are B * T.

    python tools/bench_recurrent.py                 # the table in docs/speed.md
    python tools/bench_recurrent.py --runs 3 --only mlxseq,torch
    python tools/bench_recurrent.py --only mlxseq,torch --runs 5 --rounds 3   # ratios of 3 rounds
    python tools/bench_recurrent.py --device gpu    # MLX's GPU vs torch on CUDA

With ``--device gpu`` MLX runs on its default GPU (Metal or CUDA) and torch on
CUDA (cuDNN's fused layers; without CUDA, e.g. on a Mac, leave torch out with
``--only mlxseq,mlx.nn``), each timing to the end of its device's work; the peak memory is
then the device memory a step adds over what was allocated before it
(``mx.get_peak_memory``, ``torch.cuda.max_memory_allocated``).
"""

import argparse
import ctypes
import json
import os
import platform
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_common beside this script
from bench_common import median_time, run_worker  # noqa: E402

CONFIGS = {
    1: dict(kind="lstm", B=64, T=50, D=256, H=512, layers=1, bidirectional=False),
    2: dict(kind="lstm", B=64, T=50, D=256, H=512, layers=2, bidirectional=True),
    3: dict(kind="gru", B=64, T=50, D=256, H=512, layers=1, bidirectional=False),
}
RUNNERS = ("mlxseq", "mlxseq-graph", "torch", "mlx.nn", "mlx.nn+OpenBLAS")


def _resident_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_step_mb(step) -> float:
    """Peak resident memory that one call of ``step()`` adds, in MB (Linux; NaN elsewhere)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM to the current RSS
    except OSError:
        return float("nan")
    try:
        ctypes.CDLL(None).malloc_trim(0)  # pages the heap kept are given back: reusing them counts again
    except AttributeError:  # not glibc
        pass
    before = _resident_mb("VmRSS")
    step()
    return _resident_mb("VmHWM") - before


# --- workers (each in its own process) ------------------------------------------


def _torch_worker(cfg, runs, gpu):
    import torch

    device = "cuda" if gpu else "cpu"
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cfg["kind"]]
    layer = cls(cfg["D"], cfg["H"], num_layers=cfg["layers"], bidirectional=cfg["bidirectional"], batch_first=True)
    layer = layer.to(device)
    x = torch.randn(cfg["B"], cfg["T"], cfg["D"], device=device)
    done = torch.cuda.synchronize if gpu else (lambda: None)

    def infer():
        with torch.no_grad():
            layer(x)
        done()

    def train():
        layer.zero_grad()
        out, _ = layer(x)
        out.mean().backward()
        done()

    if not gpu:
        versions = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
        return median_time(infer, runs), median_time(train, runs), peak_step_mb(train), versions
    versions = f"torch {torch.__version__} on {torch.cuda.get_device_name()}, cuDNN {torch.backends.cudnn.version()}"
    infer_s, train_s = median_time(infer, runs), median_time(train, runs)
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    train()
    return infer_s, train_s, (torch.cuda.max_memory_allocated() - before) / 2**20, versions


def _mlx_layer(cfg, runner):
    """A layer of the configuration built from mlxseq or from mlx.nn."""
    import mlx.core as mx
    import mlx.nn as nn

    if runner == "mlxseq":
        import mlxseq

        cls = {"lstm": mlxseq.LSTM, "gru": mlxseq.GRU}[cfg["kind"]]
        return cls(cfg["D"], cfg["H"], num_layers=cfg["layers"], bidirectional=cfg["bidirectional"])

    cls = {"lstm": nn.LSTM, "gru": nn.GRU}[cfg["kind"]]

    class Stacked(nn.Module):
        # mlx.nn has single-layer, single-direction layers: stack and reverse by hand.
        def __init__(self):
            super().__init__()
            dirs = 2 if cfg["bidirectional"] else 1
            self.cells = [
                cls(cfg["D"] if k == 0 else cfg["H"] * dirs, cfg["H"])
                for k in range(cfg["layers"])
                for _ in range(dirs)
            ]
            self.dirs = dirs

        def __call__(self, x):
            for k in range(cfg["layers"]):
                outs = []
                for d in range(self.dirs):
                    layer = self.cells[k * self.dirs + d]
                    out = layer(x if d == 0 else x[:, ::-1])
                    out = out[0] if isinstance(out, tuple) else out  # nn.LSTM: (hidden, cell)
                    outs.append(out if d == 0 else out[:, ::-1])
                x = mx.concatenate(outs, axis=-1) if len(outs) > 1 else outs[0]
            return x, None

    return Stacked()


def _mlx_worker(cfg, runs, runner, gpu):
    if runner in ("mlxseq", "mlxseq-graph", "mlx.nn+OpenBLAS"):
        from mlxseq.system import blas

        blas.preload()
    import mlx.core as mx
    import mlx.nn as nn

    from mlxseq.system import blas, native

    mx.set_default_device(mx.gpu if gpu else mx.cpu)
    layer = _mlx_layer(cfg, runner)
    x = mx.random.normal((cfg["B"], cfg["T"], cfg["D"]))
    mx.eval(layer.parameters(), x)

    def forward(x):
        return layer(x)[0]

    grad_step = nn.value_and_grad(layer, lambda x: layer(x)[0].mean())
    used = blas.describe() if runner != "mlx.nn" else "reference BLAS of the mlx wheel"
    if gpu:
        used = f"on {mx.device_info().get('device_name', 'the GPU')}"
    if runner.startswith("mlxseq"):
        used += f"; recurrence: {native.describe()}"
    # Each function eagerly and under mx.compile; the faster counts (compiling a
    # whole unrolled loop is not always a win on the CPU). The plain install is
    # measured eagerly only: one training step of it takes tens of seconds.
    forwards, steps = [forward], [grad_step]
    if runner != "mlx.nn":
        forwards.append(mx.compile(forward))
        steps.append(mx.compile(grad_step))
    infer_s = min(median_time(lambda f=f: mx.eval(f(x)), runs) for f in forwards)
    train_s = min(median_time(lambda f=f: mx.eval(f(x)), runs) for f in steps)
    if gpu:
        before = mx.get_active_memory()
        mx.reset_peak_memory()
        mx.eval(grad_step(x))
        return infer_s, train_s, (mx.get_peak_memory() - before) / 2**20, f"mlx {mx.__version__}, {used}"
    mx.set_cache_limit(0)  # freed buffers go back to the system, as torch's do (see the module's text)
    mx.clear_cache()
    return infer_s, train_s, peak_step_mb(lambda: mx.eval(grad_step(x))), f"mlx {mx.__version__}, {used}"


def worker(runner, config, runs, gpu=False):
    cfg = CONFIGS[config]
    if runner == "torch":
        return _torch_worker(cfg, runs, gpu)
    return _mlx_worker(cfg, runs, runner, gpu)


# --- driver -------------------------------------------------------------------


def _run_worker(runner, config, runs, timeout, device="cpu"):
    env = dict(os.environ)
    if runner == "mlx.nn":
        env["MLXSEQ_BLAS"] = "reference"
    if runner == "mlxseq-graph":
        env["MLXSEQ_NATIVE"] = "0"
    arguments = ["--worker", runner, "--config", str(config), "--runs", str(runs), "--device", device]
    return run_worker(__file__, arguments, f"{runner} config {config}", env=env, timeout=timeout)


def _describe(cfg):
    layers = f"{cfg['layers']} layer{'s' if cfg['layers'] > 1 else ''}"
    bi = ", bidirectional" if cfg["bidirectional"] else ""
    return f"{cfg['kind'].upper()} B={cfg['B']} T={cfg['T']} D={cfg['D']} H={cfg['H']}, {layers}{bi}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            fields = dict(line.split(":", 1) for line in info if ":" in line)
        return (f"{fields['model name'].strip()} (family {fields['cpu family'].strip()} "
                f"model {fields['model'].strip()})")
    except (OSError, KeyError):
        return ""


def print_memory_table(results, runners, configs, device) -> None:
    added_to = "the resident set" if device == "cpu" else "the device memory allocated"
    print(f"\nPeak memory of a training step (MB the step adds to {added_to}):\n")
    print("| config | " + " | ".join(runners) + " |")
    print("|" + "---|" * (len(runners) + 1))
    for config in configs:
        print(f"| ({config}) | " + " | ".join(f"{results[config, r]['peak_mb']:,.0f}" for r in runners) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="timed runs per measurement (median)")
    parser.add_argument("--slow-runs", type=int, default=3, help="timed runs for the plain mlx.nn install")
    parser.add_argument("--only", help="comma-separated runners (default: all; on the GPU mlxseq,torch,mlx.nn)")
    parser.add_argument("--configs", default="1,2,3", help="comma-separated configuration numbers")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure each configuration this many times, the runners one after another in each round; "
                             "each figure is then its median over the rounds, and each round's mlxseq / torch ratio "
                             "is shown too (the machine's speed drifts between minutes: runners measured back to "
                             "back share more of it)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="gpu: MLX's default GPU and torch on CUDA (runners mlxseq, torch and mlx.nn)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--config", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("runs", "slow_runs", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")

    if args.worker:
        infer_s, train_s, peak_mb, versions = worker(args.worker, args.config, args.runs, args.device == "gpu")
        print(json.dumps({"infer": infer_s, "train": train_s, "peak_mb": peak_mb, "versions": versions}))
        return

    only = args.only or (",".join(RUNNERS) if args.device == "cpu" else "mlxseq,torch,mlx.nn")
    runners = [r for r in only.split(",") if r]
    configs = [int(c) for c in args.configs.split(",")]
    results, versions, rounds = {}, {}, {}
    for config in configs:
        for round_ in range(args.rounds):
            for runner in runners:
                runs = args.slow_runs if runner == "mlx.nn" else args.runs
                r = _run_worker(runner, config, runs, timeout=3600, device=args.device)
                rounds.setdefault((config, runner), []).append(r)
                versions[runner] = r["versions"]
                print(f"  measured {runner:16s} config {config}: infer {r['infer']:.4f} s, train {r['train']:.4f} s, "
                      f"peak {r['peak_mb']:.0f} MB", file=sys.stderr)
        for runner in runners:  # each figure: its median over the rounds
            measured = rounds[config, runner]
            results[config, runner] = {k: statistics.median(m[k] for m in measured) for k in ("infer", "train", "peak_mb")}

    cpu = _cpu_model() or platform.processor() or platform.machine()
    print(f"Machine: {platform.system()} {cpu}, {os.cpu_count()} cores; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}")
    for runner in runners:
        print(f"- {runner}: {versions[runner]}")
    print(f"Medians of {args.runs} runs ({args.slow_runs} for plain mlx.nn) after a warm-up run; tokens = B*T.")
    if args.rounds > 1:
        print(f"Each figure the median of {args.rounds} rounds; the ratios of each round in brackets.")
    print()
    header = "| config | mode | " + " | ".join(f"{r} tok/s" for r in runners)
    if "torch" in runners and "mlxseq" in runners:
        header += " | mlxseq / torch"
    if "mlx.nn" in runners and "mlxseq" in runners:
        header += " | mlxseq / mlx.nn"
    print(header + " |")
    print("|" + "---|" * (header.count("|")))
    for config in configs:
        cfg = CONFIGS[config]
        tokens = cfg["B"] * cfg["T"]
        for mode in ("infer", "train"):
            speed = {r: tokens / results[config, r][mode] for r in runners}
            row = f"| ({config}) {_describe(cfg)} | {'inference' if mode == 'infer' else 'training step'} | "
            row += " | ".join(f"{speed[r]:,.0f}" for r in runners)
            if "torch" in runners and "mlxseq" in runners:
                row += f" | {speed['mlxseq'] / speed['torch']:.2f}x"
                if args.rounds > 1:
                    each = [t[mode] / m[mode] for m, t in zip(rounds[config, "mlxseq"], rounds[config, "torch"])]
                    row += " (" + " / ".join(f"{ratio:.2f}" for ratio in each) + ")"
            if "mlx.nn" in runners and "mlxseq" in runners:
                row += f" | {speed['mlxseq'] / speed['mlx.nn']:.1f}x"
            print(row + " |")
    print_memory_table(results, runners, configs, args.device)


if __name__ == "__main__":
    main()
