"""CTC loss, forward and backward: mlxseq.losses.ctc_loss against torch.nn.CTCLoss.

Random log-probabilities ``(T, B, C)``, targets of length up to S (each sequence its own input
and target length), ``reduction="mean"``; the time of the loss and its gradient with respect to
the log-probabilities. mlxseq runs eagerly and compiled (``mx.compile``, as inside a training
step), on its native CTC primitive (where the extension is built) and on its MLX graph
(``MLXSEQ_NATIVE=0``); each runs in its own process with its library's default threads.

    python tools/bench_ctc.py            # T=200, B=32, C=30, S=50
"""

from __future__ import annotations

import argparse
import json
import os
import platform

from bench_common import add_worker_options, answer_as_worker, median_time, run_worker


def _inputs(spec):
    import numpy as np

    rng = np.random.default_rng(0)
    T, B, C, S = spec["T"], spec["B"], spec["C"], spec["S"]
    logits = rng.standard_normal((T, B, C)).astype(np.float32)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    input_lengths = rng.integers(T * 3 // 4, T + 1, B)
    target_lengths = rng.integers(S // 2, S + 1, B)
    targets = rng.integers(1, C, (B, S))
    return log_probs, targets, input_lengths, target_lengths


def _mlxseq_worker(spec):
    import mlxseq  # noqa: I001  (first: it loads OpenBLAS before mlx.core)
    import mlx.core as mx
    from mlxseq.losses import ctc_loss

    log_probs, targets, input_lengths, target_lengths = (mx.array(a) for a in _inputs(spec))
    grad = mx.value_and_grad(lambda lp: ctc_loss(lp, targets, input_lengths, target_lengths))
    compiled = mx.compile(grad)
    loss, _ = grad(log_probs)
    eager = median_time(lambda: mx.eval(grad(log_probs)), spec["runs"])
    fast = median_time(lambda: mx.eval(compiled(log_probs)), spec["runs"], warmup=2)
    from mlxseq.system import native

    path = "native" if native.can_run_ctc(log_probs) else "MLX graph"
    return {"loss": float(loss), "eager": eager, "compiled": fast,
            "versions": f"mlxseq {mlxseq.__version__}, MLX {mx.__version__}, {path}"}


def _torch_worker(spec):
    import torch

    log_probs, targets, input_lengths, target_lengths = (torch.from_numpy(a) for a in _inputs(spec))
    log_probs.requires_grad_(True)
    criterion = torch.nn.CTCLoss(reduction="mean")

    def run():
        log_probs.grad = None
        loss = criterion(log_probs, targets, input_lengths, target_lengths)
        loss.backward()
        return loss

    loss = run()
    return {"loss": float(loss), "eager": median_time(run, spec["runs"]),
            "versions": f"torch {torch.__version__}, {torch.get_num_threads()} threads"}


WORKERS = {"mlxseq": _mlxseq_worker, "torch": _torch_worker}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in (("T", 200), ("B", 32), ("C", 30), ("S", 50), ("runs", 10)):
        parser.add_argument(f"--{name}", type=int, default=default)
    add_worker_options(parser)
    options = parser.parse_args()
    if answer_as_worker(options, WORKERS):
        return
    spec = {"T": options.T, "B": options.B, "C": options.C, "S": options.S, "runs": options.runs}
    runs = {"mlxseq": ("mlxseq", {}), "mlxseq-graph": ("mlxseq", {"MLXSEQ_NATIVE": "0"}), "torch": ("torch", {})}
    found = {name: run_worker(__file__, ["--worker", worker, "--spec", json.dumps(spec)], f"{name} worker",
                              env={**os.environ, **env})
             for name, (worker, env) in runs.items()}
    theirs = found["torch"]
    print(f"Machine: {platform.system()} {platform.machine()} ({platform.processor() or 'cpu'})")
    for name, result in found.items():
        print(f"- {name}: {result['versions']}")
    print(f"CTC loss + gradient, T={options.T} B={options.B} C={options.C} S={options.S}, reduction mean; "
          f"medians of {options.runs} runs.\n")
    print("| | ms | torch / this |")
    print("|---|---:|---:|")
    print(f"| torch.nn.CTCLoss | {1000 * theirs['eager']:.1f} | 1.00x |")
    for name in ("mlxseq", "mlxseq-graph"):
        for kind in ("eager", "compiled"):
            ms = 1000 * found[name][kind]
            print(f"| {name} ctc_loss, {kind} | {ms:.1f} | {theirs['eager'] / found[name][kind]:.2f}x |")
    print(f"\nSame loss: mlxseq {found['mlxseq']['loss']:.6f}, mlxseq-graph {found['mlxseq-graph']['loss']:.6f}, "
          f"torch {theirs['loss']:.6f}")


if __name__ == "__main__":
    main()
