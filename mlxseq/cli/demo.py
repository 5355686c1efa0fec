"""A short demonstration of the recurrent layers: ragged batch, forward, backward, timing."""

import time

import mlx.core as mx

from mlxseq.system.environment import describe_environment
from mlxseq.layers import RECURRENT_LAYERS

LAYERS = RECURRENT_LAYERS


def run_demo(kind: str, batch: int, steps: int, hidden: int, echo=print) -> None:
    if kind not in LAYERS:
        raise ValueError(f"kind must be one of {sorted(LAYERS)}, got {kind!r}")
    for key, value in describe_environment().items():
        echo(f"{key + ':':<14}{value}")
    mx.random.seed(0)
    features = 64
    layer = LAYERS[kind](features, hidden, num_layers=2, bidirectional=True)
    x = mx.random.normal((batch, steps, features))
    lengths = mx.random.randint(1, steps + 1, (batch,))
    lengths[0] = steps

    def loss_fn(params, x):
        layer.update(params)
        output, _ = layer(x, lengths=lengths)
        return (output**2).mean()

    step = mx.compile(mx.value_and_grad(loss_fn))
    params = layer.trainable_parameters()
    output, final = layer(x, lengths=lengths)
    state = final[0] if isinstance(final, tuple) else final
    echo(f"\n{type(layer).__name__}(64, {hidden}, num_layers=2, bidirectional=True)")
    echo(f"input {tuple(x.shape)}, lengths {lengths[:6].tolist()}...")
    echo(f"output {tuple(output.shape)}, h_n {tuple(state.shape)}")
    times = []
    for _ in range(4):
        start = time.perf_counter()
        loss, grads = step(params, x)
        mx.eval(loss, grads)
        times.append(time.perf_counter() - start)
    best = min(times[1:])
    tokens = int(lengths.sum().item())
    echo(f"training step (forward + backward): {best * 1e3:.1f} ms, {tokens / best:,.0f} tokens/s, loss {loss.item():.4f}")
