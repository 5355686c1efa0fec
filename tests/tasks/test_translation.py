"""Tests of mlxseq/tasks/translation.py: a toy task learned, Multi30k loss falling, exact resume, tokenizers."""

import json
import random
from pathlib import Path

import mlx.core as mx
import pytest
from mlx.utils import tree_flatten

import mlxseq
from mlxseq.config import load_config
from mlxseq.tasks import translation
from mlxseq.runs.from_config import train_from_config
from mlxseq.training import ResumeError, TrainingInterrupted
from mlxseq.pipelines.translator import TranslationOptions, Translator
from tests.support.configs import write_training_config
from tests.support.corpora import corpus_file

REPO = Path(__file__).resolve().parents[2]
WORDS = "a b c d e f g h".split()


def write_reversal_corpus(folder: Path, train_pairs=2000, valid_pairs=100, seed=0) -> dict:
    """Sentences of 3-7 letters and their reversals, as parallel files; returns the data section."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, count in (("train", train_pairs), ("valid", valid_pairs)):
        sources = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7))) for _ in range(count)]
        for side, lines in (("src", sources), ("tgt", [" ".join(reversed(s.split())) for s in sources])):
            path = folder / f"{split}.{side}"
            path.write_text("\n".join(lines) + "\n")
            paths[f"{split}_{side}"] = str(path)
    return paths


def write_config(folder: Path, **sections) -> Path:
    raw = {
        "version": 1, "task": "translation", "output_dir": str(folder / "run"),
        "model": {"model_type": "seq2seq", "embed_size": 32, "hidden_size": 64, "rnn_type": "gru", "dropout": 0.0},
        "data": {**write_reversal_corpus(folder), "tokenizer": "word", "max_length": 16},
        "training": {"lr": 0.01, "warmup_steps": 30, "decay": "cosine", "min_lr": 0.001, "max_steps": 300,
                     "batch_tokens": 512, "eval_every": 150, "log_every": 50, "label_smoothing": 0.0, "metric": "exact"},
    }
    return write_training_config(folder, raw, sections)


def parameters(folder) -> dict:
    return dict(tree_flatten(mlxseq.load(folder).parameters()))


def test_a_tiny_seq2seq_learns_to_reverse_sentences(tmp_path):
    result = train_from_config(write_config(tmp_path), quiet=True)
    assert result.metrics["exact"] >= 95.0 and result.metrics["bleu"] >= 95.0
    assert result.metrics["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    best = tmp_path / "run" / "best"
    config = json.loads((best / "config.json").read_text())
    assert config["model_type"] == "seq2seq" and config["src_vocab_size"] == config["tgt_vocab_size"] == 12
    translator = Translator.load(best)  # the folder is complete: weights, config, tokenizer
    found = translator.translate(["h g a b c", "c a f f e d b"], TranslationOptions(beam_size=1))
    assert [hyps[0].text for hyps in found] == ["c b a g h", "b d e f f a c"]
    readme = (best / "README.md").read_text()
    assert "nrefs:1|case:mixed" in readme and f"mlxseq train {tmp_path / 'config.yaml'}" in readme
    assert "2000 kept" in readme


def test_the_loss_falls_on_a_multi30k_slice(tmp_path):
    multi30k = corpus_file("multi30k/raw/train.de.gz").parent
    overrides = [
        f"output_dir={tmp_path}", f"data.train_src={multi30k / 'train.de.gz'}", f"data.train_tgt={multi30k / 'train.en.gz'}",
        f"data.valid_src={multi30k / 'val.de.gz'}", f"data.valid_tgt={multi30k / 'val.en.gz'}",
        "data.max_train_pairs=500", "data.sentencepiece.vocab_size=1000", "model.embed_size=32", "model.hidden_size=64",
        # Pairs of at most 30 tokens padded to 32: one bucket, so the compiled step is traced twice only.
        "data.max_length=30", "data.bucket_multiple=32",
        "training.max_epochs=0", "training.max_steps=30", "training.warmup_steps=0", "training.lr=3e-3",
        "training.decay=none", "training.batch_tokens=512", "training.log_every=5", "training.eval_every=0",
        "validation.max_sentences=16", "validation.max_length_ratio=1.0",
    ]
    result = train_from_config(REPO / "configs" / "multi30k_de_en.yaml", overrides, quiet=True)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.7, losses  # 6.8 -> 5.7 nats here
    assert (tmp_path / "tokenizer" / "tokenizer.model").is_file()  # joint sentencepiece BPE
    assert result.metrics["ppl"] < 600 and "bleu" in result.metrics
    assert "16 sentences" in result.metrics["decoding"]


def test_a_seq2seq_run_stopped_twice_ends_bit_identical_to_a_straight_run(tmp_path):
    sections = dict(
        model={"dropout": 0.3},
        data={"tokenizer": "char", "joint_vocab": False, "bucket_multiple": 16},  # one bucket: few traces
        training={"max_steps": 24, "eval_every": 8, "save_every": 5, "log_every": 4, "warmup_steps": 4,
                  "decay": "inverse_sqrt", "label_smoothing": 0.1, "metric": "loss"},
        validation={"bleu": False},
    )
    straight = write_config(tmp_path / "a", **sections)
    train_from_config(straight, quiet=True)
    stopped = write_config(tmp_path / "b", **sections)

    def fail_at(step_to_fail, error):
        def on_step(step, loss):
            if step == step_to_fail:
                raise error

        return on_step

    with pytest.raises(TrainingInterrupted):
        train_from_config(stopped, quiet=True, on_step=fail_at(9, KeyboardInterrupt))
    with pytest.raises(RuntimeError, match="power cut"):
        train_from_config(stopped, quiet=True, on_step=fail_at(17, RuntimeError("power cut")))  # last save: 16
    result = train_from_config(stopped, resume=True, quiet=True)
    assert result.step == 24
    a, b = parameters(tmp_path / "a" / "run" / "last"), parameters(tmp_path / "b" / "run" / "last")
    assert a.keys() == b.keys() and all(mx.array_equal(a[k], b[k]).item() for k in a)
    assert sorted(p.name for p in (tmp_path / "b" / "run" / "last").glob("*.json")) == ["config.json", "source.json", "target.json"]


def test_the_tokenizer_is_reused_and_a_resume_cannot_change_it(tmp_path):
    path = write_config(tmp_path, training={"max_steps": 2, "eval_every": 0, "metric": "loss"}, validation={"bleu": False},
                        data={"min_frequency": 1})
    train_from_config(path, quiet=True)
    tokenizer = tmp_path / "run" / "tokenizer" / "tokenizer.json"
    written = tokenizer.stat().st_mtime_ns
    train_from_config(path, ["training.max_steps=3"], quiet=True)
    assert tokenizer.stat().st_mtime_ns == written
    with pytest.raises(ResumeError, match=r"tokenizer was trained with other data settings \(min_frequency\)"):
        train_from_config(path, ["training.max_steps=4", "data.min_frequency=2"], quiet=True)


def test_pairs_over_max_length_are_dropped_and_counted(tmp_path):
    path = write_config(tmp_path, data={"max_length": 5})
    config = load_config(path)
    parts = translation.prepare(config, tmp_path / "run", resuming=False, command="test")
    kept = sum(len(batch[0]) for batch in parts.batches)
    assert 0 < kept < 2000 and f"train: {kept} pairs ({2000 - kept} over 5 tokens dropped)" in parts.description
    assert all(batch[1].max().item() <= 5 for batch in parts.batches)
