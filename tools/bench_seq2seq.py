"""Training tokens/s and translation sentences/s: mlxseq's seq2seq vs the same model in torch, in one run.

The model is the bundled Multi30k configuration (bidirectional GRU encoder, dense
bridge, GRU decoder with Luong "general" attention and input feeding, output
projection) with random weights; torch gets the same weights, so greedy decoding
makes the same tokens on both sides and both decode the same number of steps.

- Training: one update (teacher forcing, label-smoothed cross-entropy over
  non-pad tokens, Adam, global-norm clipping) on a batch of B sentence pairs of
  S source and T target tokens; target tokens per second. mlxseq runs its
  compiled training step (:class:`mlxseq.training.step.TrainStep`), torch its
  eager step with dropout 0.3 on both.
- Translation: sentences/s of :class:`mlxseq.Translator` (what ``mlxseq
  translate`` runs) and of torch's equivalent batched loop, greedy and beam 5 over
  the same sources. torch's beam keeps K rows per source and stops when the best
  beam of every source has ended (ended beams only extend with eos at no cost);
  mlxseq's beam search is its exact one (2K candidates, early stop once no alive
  beam can win), so beam figures compare equal work only roughly.

Each side runs in its own process; medians after a warm-up.

    python tools/bench_seq2seq.py                     # the table in docs/speed.md
    python tools/bench_seq2seq.py --runs 3 --sentences 64
"""

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_common beside this script
from bench_common import add_worker_options, answer_as_worker, median_time, run_worker  # noqa: E402

SHAPE = dict(vocab=5000, embed=256, hidden=512, batch=128, src_len=16, tgt_len=16)
PAD, UNK, BOS, EOS = 0, 1, 2, 3


def _data(spec):
    """The same random batch and sentences on both sides."""
    import numpy as np

    rng = np.random.default_rng(0)
    B, S, T, V = spec["batch"], spec["src_len"], spec["tgt_len"], spec["vocab"]
    src = rng.integers(4, V, size=(B, S))
    tgt = rng.integers(4, V, size=(B, T + 1))
    tgt[:, 0] = BOS
    lengths = rng.integers(S // 2, S + 1, size=B)
    lengths[0] = S
    for b, n in enumerate(lengths):
        src[b, n:] = PAD
    sentences = [rng.integers(4, V, size=rng.integers(6, 20)).tolist() for _ in range(spec["sentences"])]
    return src, lengths, tgt, sentences


def _model_args(spec):
    from mlxseq.models import seq2seq

    return seq2seq.ModelArgs(
        src_vocab_size=spec["vocab"], tgt_vocab_size=spec["vocab"], embed_size=spec["embed"],
        hidden_size=spec["hidden"], rnn_type="gru", bidirectional=True, attention="general",
        decoder_style="luong", input_feed=True, bridge="dense", dropout=0.3,
    )


def _export_weights(folder: Path, spec) -> None:
    import mlxseq  # noqa: F401  (OpenBLAS before MLX)
    import mlx.core as mx
    import numpy as np
    from mlx.utils import tree_flatten

    from mlxseq.models import seq2seq

    mx.random.seed(0)
    model = seq2seq.build_model(_model_args(spec))
    np.savez(folder / "weights.npz", **{k: np.array(v) for k, v in tree_flatten(model.parameters())})


# --- mlxseq ---------------------------------------------------------------------------------------


def _mlxseq_worker(spec):
    import mlxseq
    import mlx.core as mx
    import numpy as np

    from mlxseq.data import SPECIAL_TOKENS, TokenizerPair, WordTokenizer
    from mlxseq.models import seq2seq
    from mlxseq.tasks.translation import make_loss
    from mlxseq.training.loop import make_optimizer
    from mlxseq.training.args import TrainingArgs
    from mlxseq.training.step import TrainStep
    from mlxseq.pipelines.translator import TranslationOptions

    src, lengths, tgt, sentences = _data(spec)
    model = seq2seq.build_model(_model_args(spec))
    model.load_weights([(k, mx.array(v)) for k, v in np.load(spec["weights"]).items()])
    results = {}

    args = TrainingArgs(lr=1e-3, clip_norm=1.0, max_steps=1)
    optimizer = make_optimizer(args)
    optimizer.init(model.trainable_parameters())
    model.train()
    step = TrainStep(model, optimizer, make_loss(0.1), args.clip_norm)
    batch = (mx.array(src, dtype=mx.int32), mx.array(lengths, dtype=mx.int32),
             mx.array(tgt[:, :-1], dtype=mx.int32), mx.array(tgt[:, 1:], dtype=mx.int32))

    def train():
        loss, count, norm = step(batch)
        mx.eval(loss, count, norm, model.parameters(), optimizer.state)

    results["train"] = median_time(train, spec["runs"])

    model.load_weights([(k, mx.array(v)) for k, v in np.load(spec["weights"]).items()])  # as torch's for decoding
    model.eval()
    words = WordTokenizer(list(SPECIAL_TOKENS) + [f"w{i}" for i in range(4, spec["vocab"])])
    translator = mlxseq.Translator(model, TokenizerPair(words, words))
    texts = [" ".join(f"w{i}" for i in ids) for ids in sentences]
    outputs = {}
    for name, beam in (("greedy", 1), ("beam5", 5)):
        options = TranslationOptions(beam_size=beam, length_penalty=0.0, batch_size=spec["decode_batch"])

        def translate():
            outputs[name] = [hyps[0].tokens for hyps in translator.translate(texts, options)]

        results[name] = median_time(translate, spec["runs"])
    return {"seconds": results, "greedy_tokens": outputs["greedy"],
            "versions": f"mlx {mx.__version__}, {mlxseq.system.blas.describe()}"}


# --- torch ----------------------------------------------------------------------------------------


def _torch_model(spec):
    import torch
    from torch import nn

    V, E, H = spec["vocab"], spec["embed"], spec["hidden"]

    class Seq2Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.src_embedding = nn.Embedding(V, E)
            self.encoder = nn.GRU(E, H // 2, batch_first=True, bidirectional=True)
            self.bridge = nn.Linear(H, H)
            self.embedding = nn.Embedding(V, E)
            self.cell = nn.GRUCell(E + H, H)
            self.linear_in = nn.Linear(H, H, bias=False)
            self.linear_out = nn.Linear(2 * H, H, bias=False)
            self.output = nn.Linear(H, V)
            self.dropout = nn.Dropout(0.3)

        def encode(self, src, lengths):
            packed = nn.utils.rnn.pack_padded_sequence(
                self.dropout(self.src_embedding(src)), lengths, batch_first=True, enforce_sorted=False)
            out, h = self.encoder(packed)
            memory, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
            mask = torch.arange(src.shape[1])[None, :] < lengths[:, None]
            h0 = torch.tanh(self.bridge(torch.cat([h[0], h[1]], dim=-1)))
            return {"memory": memory, "keys": self.linear_in(memory), "mask": mask, "h": h0,
                    "feed": torch.zeros(src.shape[0], H)}

        def step(self, tokens, state):
            x = torch.cat([self.dropout(self.embedding(tokens)), state["feed"]], dim=-1)
            h = self.cell(x, state["h"])
            scores = torch.bmm(state["keys"], h[:, :, None])[:, :, 0].masked_fill(~state["mask"], float("-inf"))
            context = torch.bmm(torch.softmax(scores, dim=-1)[:, None], state["memory"])[:, 0]
            feed = torch.tanh(self.linear_out(torch.cat([context, h], dim=-1)))
            return self.output(self.dropout(feed)), {**state, "h": h, "feed": feed}

    model = Seq2Seq()
    import numpy as np

    weights = {k: torch.from_numpy(np.array(v)) for k, v in np.load(spec["weights"]).items()}
    renamed = {
        "src_embedding.weight": weights["encoder.embedding.weight"],
        "bridge.weight": weights["bridge.linears.0.weight"], "bridge.bias": weights["bridge.linears.0.bias"],
        "embedding.weight": weights["embedding.weight"],
        "linear_in.weight": weights["attention.linear_in.weight"], "linear_out.weight": weights["linear_out.weight"],
        "output.weight": weights["output.weight"], "output.bias": weights["output.bias"],
    }
    renamed.update({f"encoder.{k[len('encoder.rnn.'):]}": v for k, v in weights.items() if k.startswith("encoder.rnn.")})
    renamed.update({f"cell.{k[len('cells.0.'):]}": v for k, v in weights.items() if k.startswith("cells.0.")})
    model.load_state_dict(renamed)
    return model


def _reorder(state, index):
    return {k: v[index] for k, v in state.items()}


def _torch_greedy(model, src, lengths, max_tokens):
    import torch

    state = model.encode(src, lengths)
    tokens = torch.full((src.shape[0],), BOS, dtype=torch.long)
    banned = torch.zeros(model.output.out_features)
    banned[[PAD, BOS, UNK]] = float("-inf")
    ended = torch.zeros(src.shape[0], dtype=torch.bool)
    rows = []
    for _ in range(max_tokens):
        logits, state = model.step(tokens, state)
        tokens = (torch.log_softmax(logits, dim=-1) + banned).argmax(dim=-1)
        tokens = torch.where(ended, torch.full_like(tokens, EOS), tokens)
        rows.append(tokens)
        ended |= tokens == EOS
        if bool(ended.all()):
            break
    out = torch.stack(rows, dim=1).tolist()
    return [row[: row.index(EOS)] if EOS in row else row for row in out]


def _torch_beam(model, src, lengths, max_tokens, K):
    import torch

    B, V = src.shape[0], model.output.out_features
    state = _reorder(model.encode(src, lengths), torch.arange(B).repeat_interleave(K))
    tokens = torch.full((B * K,), BOS, dtype=torch.long)
    scores = torch.full((B, K), float("-inf"))
    scores[:, 0] = 0.0
    banned = torch.zeros(V)
    banned[[PAD, BOS, UNK]] = float("-inf")
    ended = torch.zeros(B * K, dtype=torch.bool)
    eos_only = torch.full((V,), float("-inf"))
    eos_only[EOS] = 0.0
    for _ in range(max_tokens):
        logits, state = model.step(tokens, state)
        logprobs = torch.where(ended[:, None], eos_only, torch.log_softmax(logits, dim=-1) + banned)
        candidates = (scores.reshape(B * K, 1) + logprobs).reshape(B, K * V)
        scores, flat = candidates.topk(K, dim=-1)
        beam, tokens = flat // V, (flat % V).reshape(-1)
        origin = (torch.arange(B)[:, None] * K + beam).reshape(-1)
        state, ended = _reorder(state, origin), ended[origin] | (tokens == EOS)
        if bool(ended.reshape(B, K)[:, 0].all()):
            break


def _torch_worker(spec):
    import torch

    torch.manual_seed(0)
    src, lengths, tgt, sentences = _data(spec)
    model = _torch_model(spec)
    results = {}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    src_t, len_t, tgt_t = torch.from_numpy(src).long(), torch.from_numpy(lengths).long(), torch.from_numpy(tgt).long()
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=PAD, label_smoothing=0.1, reduction="sum")
    model.train()

    def train():
        optimizer.zero_grad()
        state = model.encode(src_t, len_t)
        logits = []
        for t in range(tgt_t.shape[1] - 1):
            out, state = model.step(tgt_t[:, t], state)
            logits.append(out)
        logits = torch.stack(logits, dim=1)
        loss = loss_fn(logits.reshape(-1, logits.shape[-1]), tgt_t[:, 1:].reshape(-1)) / (tgt_t[:, 1:] != PAD).sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    results["train"] = median_time(train, spec["runs"])

    model = _torch_model(spec).eval()
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    greedy_out = {}

    def batches():
        for start in range(0, len(order), spec["decode_batch"]):
            chunk = order[start : start + spec["decode_batch"]]
            S = max(len(sentences[i]) for i in chunk)
            src_b = torch.full((len(chunk), S), PAD, dtype=torch.long)
            for row, i in enumerate(chunk):
                src_b[row, : len(sentences[i])] = torch.tensor(sentences[i])
            yield chunk, src_b, torch.tensor([len(sentences[i]) for i in chunk]), int(2.0 * S + 10)

    def greedy():
        with torch.inference_mode():
            for chunk, src_b, len_b, max_tokens in batches():
                for i, row in zip(chunk, _torch_greedy(model, src_b, len_b, max_tokens)):
                    greedy_out[i] = row

    def beam():
        with torch.inference_mode():
            for _, src_b, len_b, max_tokens in batches():
                _torch_beam(model, src_b, len_b, max_tokens, 5)

    results["greedy"] = median_time(greedy, spec["runs"])
    results["beam5"] = median_time(beam, spec["runs"])
    return {"seconds": results, "greedy_tokens": [greedy_out[i] for i in range(len(sentences))],
            "versions": f"torch {torch.__version__}, {torch.get_num_threads()} threads"}


WORKERS = {"mlxseq": _mlxseq_worker, "torch": _torch_worker}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per measurement (median reported)")
    parser.add_argument("--sentences", type=int, default=256, help="sentences translated per run")
    parser.add_argument("--decode-batch", type=int, default=64, help="sentences decoded at once")
    add_worker_options(parser)
    options = parser.parse_args()
    if answer_as_worker(options, WORKERS):
        return

    with tempfile.TemporaryDirectory() as tmp:
        spec = {**SHAPE, "runs": options.runs, "sentences": options.sentences, "decode_batch": options.decode_batch,
                "weights": str(Path(tmp) / "weights.npz")}
        _export_weights(Path(tmp), spec)
        found = {name: run_worker(__file__, ["--worker", name, "--spec", json.dumps(spec)], f"{name} worker")
                 for name in WORKERS}

    print(f"Machine: {platform.system()} {platform.machine()}")
    for name, result in found.items():
        print(f"- {name}: {result['versions']}")
    print(f"Model: bi-GRU encoder {SHAPE['hidden'] // 2}x2, GRU decoder {SHAPE['hidden']}, general attention, "
          f"input feeding, embeddings {SHAPE['embed']}, vocabulary {SHAPE['vocab']} (random weights, shared)")
    print(f"Training batch: {SHAPE['batch']} pairs, source {SHAPE['src_len']} / target {SHAPE['tgt_len']} tokens; "
          f"translation: {options.sentences} sentences of 6-19 tokens, {options.decode_batch} at a time, "
          f"max length 2 x source + 10. Medians of {options.runs} runs after a warm-up.\n")
    print("| measurement | mlxseq | torch | mlxseq / torch |")
    print("|---|---|---|---|")
    ours, theirs = found["mlxseq"]["seconds"], found["torch"]["seconds"]
    tokens = SHAPE["batch"] * SHAPE["tgt_len"]
    print(f"| training, target tokens/s | {tokens / ours['train']:,.0f} | {tokens / theirs['train']:,.0f} | "
          f"{theirs['train'] / ours['train']:.2f}x |")
    for name, label in (("greedy", "greedy"), ("beam5", "beam 5")):
        print(f"| translation {label}, sentences/s | {options.sentences / ours[name]:,.1f} | "
              f"{options.sentences / theirs[name]:,.1f} | {theirs[name] / ours[name]:.2f}x |")
    same = sum(a == b for a, b in zip(found["mlxseq"]["greedy_tokens"], found["torch"]["greedy_tokens"]))
    print(f"\nGreedy translations identical on both sides: {same} of {options.sentences}")


if __name__ == "__main__":
    main()
