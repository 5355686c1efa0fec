"""The scan over long sequences: memory linear in the length, for inference and training, and
a gradient of 10,000 steps on the MLX graph.

Each measurement runs in a fresh process, since peak RSS is a per-process
high-water mark; the process is capped in time. What used to grow with the square
of T was heap memory outside MLX's arrays (its peak stays small either way), so
the bound is on the process's resident memory.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

needs_clear_refs = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(),
                                reason="measures peak memory through Linux's /proc/self/clear_refs")

_MEASURE = """
import json, sys
import mlxseq
import mlx.core as mx

kind, T, train = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "train"
layer = {"lstm": mlxseq.LSTM, "gru": mlxseq.GRU, "rnn": mlxseq.RNN}[kind](16, 16, bidirectional=True)
x = mx.random.normal((2, T, 16))
lengths = mx.array([T, T // 2])
mx.eval(layer.parameters(), x)

def total(params):
    layer.update(params)
    return layer(x, lengths=lengths)[0].sum()

def status_mb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024

# The peak is measured from here: Linux resets VmHWM to the current RSS when "5" is
# written to clear_refs, so what importing and setting up took does not count.
before = status_mb("VmRSS")
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")
if train:
    mx.eval(mx.grad(total)(layer.parameters()))
else:
    layer.eval()
    mx.eval(total(layer.parameters()))
print(json.dumps(status_mb("VmHWM") - before))
"""


def _growth_mb(kind: str, steps: int, mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", _MEASURE, kind, str(steps), mode], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_clear_refs
@pytest.mark.parametrize("kind,mode", [("lstm", "forward"), ("lstm", "train"), ("gru", "train")])
def test_memory_grows_linearly_with_the_sequence_length(kind, mode):
    # Bidirectional with lengths: both directions and the masked path. With O(T^2)
    # memory (an LSTM forward: 0.8 GB at T=1,000, 3.1 GB at T=2,000) the ratio
    # below is about 100; linear growth gives about 10.
    short = _growth_mb(kind, 200, mode)
    long = _growth_mb(kind, 2000, mode)
    assert long <= 2.5 * 10 * max(short, 4.0), f"T=200: {short:.1f} MB, T=2000: {long:.1f} MB"


_LONG_GRADIENT = """
import mlxseq
import mlx.core as mx
import mlx.nn as nn
from mlxseq.system import native

layer = mlxseq.LSTM(2, 2, bidirectional=True)
x = mx.random.normal((2, 10_000, 2))
lengths = mx.array([10_000, 6_000])
gradient = nn.value_and_grad(layer, lambda x: layer(x, lengths=lengths)[0].sum())
with native.disabled():  # the MLX graph: what GPUs and builds without the extension run
    loss, grads = gradient(x)
    mx.eval(loss, grads)
print("done")
"""


def test_the_graph_differentiates_a_bidirectional_layer_over_10000_steps():
    # Transformations walk a graph from each node's first input on: the reverse direction's outputs,
    # stacked in time order, led them down all 10,000 steps at once and overflowed the C++ stack
    # (a segmentation fault); stacked in the order the steps ran they go one step at a time.
    done = subprocess.run([sys.executable, "-c", _LONG_GRADIENT], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0 and done.stdout.strip() == "done", (done.returncode, done.stderr[-2000:])
