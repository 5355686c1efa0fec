"""Per-token latency and tokens/s of generation: mlxseq vs the same model in torch, in one run.

Both sides run the same language model (the bundled character LSTM when present,
else a random model of its shape) with the same weights, one token per step with
the state carried: embedding -> recurrent layers -> output projection ->
log-softmax -> argmax (end-of-text forbidden, so every run makes exactly N
tokens). mlxseq runs :func:`mlxseq.decoding.generate_steps` over
:class:`mlxseq.Generator`'s compiled step, as ``mlxseq generate`` does; torch runs
the equivalent loop under ``torch.inference_mode()``. Batch 1 checks that both
produce the same tokens. Each side runs in its own process (torch and MLX do not
share threads); medians of several runs after a warm-up.

    python tools/bench_generate.py                     # the table in docs/speed.md
    python tools/bench_generate.py --tokens 100 --runs 3 --batch 1,32
"""

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_common beside this script
from bench_common import median_time, run_worker  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHAPE = dict(vocab_size=69, embed_size=64, hidden_size=512, num_layers=2, rnn_type="lstm")


def _export_weights(folder: Path) -> dict:
    """Write the model's weights as .npz (for torch) and return its shape; a random model if none is bundled."""
    import mlxseq  # noqa: F401  (loads OpenBLAS before MLX)
    import mlx.core as mx
    import numpy as np
    from mlx.utils import tree_flatten

    from mlxseq.pipelines.generator import BUNDLED_MODEL
    from mlxseq.models import language_model

    if (BUNDLED_MODEL / "config.json").is_file():
        model = mlxseq.load(BUNDLED_MODEL)
        source = f"bundled model {BUNDLED_MODEL.name}"
    else:
        mx.random.seed(0)
        model = language_model.build_model(language_model.ModelArgs(**DEFAULT_SHAPE, dropout=0.0))
        source = "random weights (no bundled model)"
    args = model.args
    if args.tie_embeddings:
        raise SystemExit("the torch side of this benchmark has no tied output layer")
    np.savez(folder / "weights.npz", **{k: np.array(v) for k, v in tree_flatten(model.parameters())})
    shape = dict(vocab_size=args.vocab_size, embed_size=args.embed_size, hidden_size=args.hidden_size,
                 num_layers=args.num_layers, rnn_type=args.rnn_type)
    return {"shape": shape, "source": source}


# --- workers (each in its own process) --------------------------------------------------------


def _mlxseq_worker(spec):
    import mlxseq
    import mlx.core as mx
    import numpy as np

    from mlxseq.decoding.search import generate_steps
    from mlxseq.pipelines.generator import Generator
    from mlxseq.models import language_model

    model = language_model.build_model(language_model.ModelArgs(**spec["shape"], dropout=0.0))
    model.load_weights([(k, mx.array(v)) for k, v in np.load(spec["weights"]).items()])
    model.eval()
    generator = Generator(model, tokenizer=None)
    results = {}
    for batch in spec["batches"]:
        produced = []

        def run():
            rows = []
            state = model.init_state(batch)
            for step in generate_steps(generator, state, bos_id=spec["first"], eos_id=spec["eos"],
                                       max_tokens=spec["tokens"], min_length=spec["tokens"],
                                       banned_ids=[0, 2], batch_size=batch):
                rows.append(step.tokens)
            mx.eval(rows)
            produced[:] = [np.array(mx.stack(rows, axis=1))[0].tolist()]

        results[batch] = {"seconds": median_time(run, spec["runs"]), "tokens": produced[0]}
    return {"results": results, "versions": f"mlx {mx.__version__}, {mlxseq.system.blas.describe()}"}


def _torch_worker(spec):
    import numpy as np
    import torch

    shape, weights = spec["shape"], np.load(spec["weights"])
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[shape["rnn_type"]]

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(shape["vocab_size"], shape["embed_size"])
            self.rnn = cls(shape["embed_size"], shape["hidden_size"], num_layers=shape["num_layers"], batch_first=True)
            self.output = torch.nn.Linear(shape["hidden_size"], shape["vocab_size"])

    model = Model().eval()
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
    banned = torch.zeros(shape["vocab_size"])
    banned[[0, 2, spec["eos"]]] = float("-inf")  # pad, bos, and eos before N tokens, as mlxseq's run
    results = {}
    for batch in spec["batches"]:
        produced = []

        def run():
            tokens = torch.full((batch, 1), spec["first"], dtype=torch.long)
            state, rows = None, []
            with torch.inference_mode():
                for _ in range(spec["tokens"]):
                    out, state = model.rnn(model.embedding(tokens), state)
                    logprobs = torch.log_softmax(model.output(out[:, -1]), dim=-1) + banned
                    tokens = logprobs.argmax(dim=-1, keepdim=True)
                    rows.append(tokens)
            produced[:] = [torch.cat(rows, dim=1)[0].tolist()]

        results[batch] = {"seconds": median_time(run, spec["runs"]), "tokens": produced[0]}
    return {"results": results, "versions": f"torch {torch.__version__}, {torch.get_num_threads()} threads"}


WORKERS = {"mlxseq": _mlxseq_worker, "torch": _torch_worker}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=200, help="tokens generated per run")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per setting (median reported)")
    parser.add_argument("--batch", default="1,32", help="batch sizes, comma-separated")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        result = WORKERS[options.worker](json.loads(options.spec))
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory() as tmp:
        model = _export_weights(Path(tmp))
        spec = {**model, "weights": str(Path(tmp) / "weights.npz"), "tokens": options.tokens, "runs": options.runs,
                "batches": [int(b) for b in options.batch.split(",")], "first": 4, "eos": 3}
        found = {name: run_worker(__file__, ["--worker", name, "--spec", json.dumps(spec)], f"{name} worker")
                 for name in WORKERS}

    shape = model["shape"]
    print(f"Machine: {platform.system()} {platform.machine()}")
    for name, result in found.items():
        print(f"- {name}: {result['versions']}")
    print(f"Model: {model['source']}: {shape['rnn_type'].upper()} {shape['num_layers']}x{shape['hidden_size']}, "
          f"embedding {shape['embed_size']}, vocabulary {shape['vocab_size']}")
    print(f"{options.tokens} tokens per run, greedy; medians of {options.runs} runs after a warm-up.\n")
    print("| batch | mlxseq ms/token | torch ms/token | mlxseq tokens/s | torch tokens/s | mlxseq / torch speed |")
    print("|---|---|---|---|---|---|")
    for batch in spec["batches"]:
        ours, theirs = (found[n]["results"][str(batch)]["seconds"] for n in ("mlxseq", "torch"))
        per_token = [1000 * t / options.tokens for t in (ours, theirs)]
        rates = [batch * options.tokens / t for t in (ours, theirs)]
        print(f"| {batch} | {per_token[0]:.2f} | {per_token[1]:.2f} | {rates[0]:,.0f} | {rates[1]:,.0f} | "
              f"{theirs / ours:.2f}x |")
    same = found["mlxseq"]["results"]["1"]["tokens"] == found["torch"]["results"]["1"]["tokens"] if 1 in spec["batches"] else None
    if same is not None:
        print(f"\nBatch 1: the same {options.tokens} greedy tokens from both: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
