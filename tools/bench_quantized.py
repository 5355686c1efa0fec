"""The bundled models in float32, float16, 8-bit and 4-bit: size on disk, quality and speed.

Translator: BLEU and chrF (sacrebleu) on the first ``--sentences`` of Multi30k's
test_2016_flickr with the folder's decoding settings, and sentences per second. Character LM:
nats per character on ``--chars`` characters of Tiny Shakespeare's last 10% (in chunks of 256
with the state carried), and generated tokens per second (batch 1). Quantized folders are
made with ``mlxseq quantize`` (Linear, Embedding and recurrent weights); float16 is every
weight and the computation in half precision. The recurrent matrices compute dequantized on the
CPU and quantized on a GPU (``mx.quantized_matmul`` at every step); MLXSEQ_QUANTIZED_RECURRENCE=1
or 0 picks either on any device (mlxseq.quantization).

    python tools/bench_quantized.py --data ../shared/data --sentences 300
    MLXSEQ_QUANTIZED_RECURRENCE=1 python tools/bench_quantized.py --models lm
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from pathlib import Path

import mlxseq  # first: it loads OpenBLAS before mlx.core (after it, MLX keeps its slow reference BLAS)
import mlx.core as mx  # noqa: E402, I001
from mlx.utils import tree_flatten, tree_map  # noqa: E402
from mlxseq.checkpoint import quantize_folder
from mlxseq.metrics import score_translations
from mlxseq.pipelines.generator import BUNDLED_MODEL as CHAR_MODEL
from mlxseq.pipelines.generator import GenerationOptions, Generator
from mlxseq.pipelines.translator import BUNDLED_MODEL as TRANSLATOR
from mlxseq.pipelines.translator import Translator
from mlxseq.quantization import keeps_recurrent_quantized

VARIANTS = ("float32", "float16", "8-bit", "4-bit")


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) / 1e6


def _disk_mb(variant: str, folder: Path, model) -> float:
    """The folder's size; for float32 the size its weights would take stored in float32 (the
    bundled folders store float16)."""
    if variant != "float32":
        return _size_mb(folder)
    weights = sum(v.size for _, v in tree_flatten(model.parameters()))
    others = sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name != "model.safetensors")
    return (4 * weights + others) / 1e6


def _folders(source: Path, work: Path) -> dict[str, Path]:
    folders = {"float32": source, "float16": source}
    for bits in (8, 4):
        folders[f"{bits}-bit"] = quantize_folder(source, work / f"{source.name}-{bits}bit", bits=bits)
    return folders


def _half(model):
    model.update(tree_map(lambda v: v.astype(mx.float16) if mx.issubdtype(v.dtype, mx.floating) else v,
                                   model.parameters()))
    return model


def translator_rows(data: Path, sentences: int, work: Path) -> list[dict]:
    read = lambda name: gzip.open(data / "multi30k" / "raw" / name, "rt", encoding="utf-8").read().splitlines()
    sources, references = read("test_2016_flickr.de.gz")[:sentences], read("test_2016_flickr.en.gz")[:sentences]
    rows = []
    for variant, folder in _folders(TRANSLATOR, work).items():
        print(f"translator {variant} ...", flush=True)
        translator = Translator.load(folder)
        if variant == "float16":
            _half(translator.model)
        try:
            translator.translate(sources[:16])  # compile before timing
            started = time.perf_counter()
            found = translator.translate(sources)
            seconds = time.perf_counter() - started
        except ValueError as error:  # float16 computation can overflow: say so
            rows.append({"model": "translator", "variant": variant, "error": str(error).split(" (")[0]})
            continue
        scores = score_translations([h[0].text for h in found], references)
        rows.append({"model": "translator", "variant": variant, "mb": _disk_mb(variant, folder, translator.model),
                     "bleu": scores.bleu, "chrf": scores.chrf, "per_s": len(sources) / seconds,
                     "settings": translator.options().signature()})
    return rows


def lm_rows(data: Path, chars: int, work: Path) -> list[dict]:
    text = (data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    held_out = text[int(0.9 * len(text)):][:chars]
    rows = []
    for variant, folder in _folders(CHAR_MODEL, work).items():
        generator = Generator.load(folder)
        if variant == "float16":
            _half(generator.model)
        ids = mx.array([generator.tokenizer.encode(held_out)])
        print(f"char LM {variant} ...", flush=True)
        total, state = 0.0, None
        for start in range(0, ids.shape[1] - 1, 256):
            x, y = ids[:, start:start + 256], ids[:, start + 1:start + 257]
            x = x[:, : y.shape[1]]
            logits, state = generator.model(x, state)
            logp = logits.astype(mx.float32) - mx.logsumexp(logits.astype(mx.float32), axis=-1, keepdims=True)
            total += -mx.take_along_axis(logp, y[..., None], axis=-1).sum().item()
        nats = total / (ids.shape[1] - 1)
        options = GenerationOptions(max_tokens=300, temp=0.0)
        generator.generate("ROMEO:", GenerationOptions(max_tokens=20))
        started = time.perf_counter()
        generator.generate("ROMEO:", options)
        per_s = 300 / (time.perf_counter() - started)
        rows.append({"model": "char LM", "variant": variant, "mb": _disk_mb(variant, folder, generator.model),
                     "nats_per_char": nats,
                     "per_s": per_s})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--sentences", type=int, default=300)
    parser.add_argument("--chars", type=int, default=20000)
    parser.add_argument("--models", choices=["all", "translator", "lm"], default="all")
    parser.add_argument("--output")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        if args.models in ("all", "translator"):
            rows += translator_rows(Path(args.data), args.sentences, Path(work))
        if args.models in ("all", "lm"):
            rows += lm_rows(Path(args.data), args.chars, Path(work))
    recurrence = "quantized (mx.quantized_matmul)" if keeps_recurrent_quantized() else "dequantized at load"
    print(f"mlxseq {mlxseq.__version__}, MLX {mx.__version__} ({mx.default_device()}); "
          f"quantized folders' recurrent matrices: {recurrence}")
    print("| model | weights | size MB | quality | speed |")
    print("| --- | --- | ---: | --- | ---: |")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['variant']} | | {r['error']} | |")
        elif r["model"] == "translator":
            print(f"| translator | {r['variant']} | {r['mb']:.1f} | BLEU {r['bleu']:.2f}, chrF {r['chrf']:.1f} | "
                  f"{r['per_s']:.1f} sentences/s |")
        else:
            print(f"| char LM | {r['variant']} | {r['mb']:.1f} | {r['nats_per_char']:.3f} nats/char | "
                  f"{r['per_s']:.0f} tokens/s |")
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
