"""Tests of mlxseq/tasks/tagging.py: a toy tagging problem learned (softmax and CRF), the masked loss."""

import json
import math
import random
from pathlib import Path

import mlx.core as mx
import pytest

from mlxseq.data import read_conllu
from mlxseq.pipelines.tagger import SequenceTagger
from mlxseq.tasks.tagging import masked_cross_entropy
from mlxseq.runs.from_config import train_from_config
from tests.support.configs import write_training_config

LETTERS = "a b c d e f g h".split()


def toy_sentence(rng: random.Random) -> tuple[list[str], list[str]]:
    """Letters and numbers; a run of numbers is one NUM entity (B-NUM then I-NUM), letters are O.
    Numbers are random, so most are rare: only their characters tell them apart."""
    words, tags = [], []
    for _ in range(rng.randint(2, 10)):
        if rng.random() < 0.4:
            words.append(str(rng.randint(0, 9999)))
            tags.append("I-NUM" if tags and tags[-1] != "O" else "B-NUM")
        else:
            words.append(rng.choice(LETTERS))
            tags.append("O")
    return words, tags


def write_conllu(path: Path, count: int, seed: int) -> None:
    rng = random.Random(seed)
    blocks = []
    for n in range(count):
        words, tags = toy_sentence(rng)
        rows = [f"{i + 1}\t{w}\t_\t{t}\t_\t_\t_\t_\t_\t_" for i, (w, t) in enumerate(zip(words, tags))]
        blocks.append(f"# sent_id = {n}\n" + "\n".join(rows) + "\n")
    path.write_text("\n".join(blocks) + "\n")


def write_config(folder: Path, **model) -> Path:
    write_conllu(folder / "train.conllu", 800, 0)
    write_conllu(folder / "valid.conllu", 100, 1)
    raw = {
        "version": 1, "task": "tagging", "output_dir": str(folder / "run"),
        "model": {"model_type": "tagger", "embed_size": 16, "char_embed_size": 8, "char_hidden_size": 16,
                  "hidden_size": 16, "num_layers": 1, "dropout": 0.0, **model},
        "data": {"train": str(folder / "train.conllu"), "valid": str(folder / "valid.conllu"), "max_word_chars": 4},
        "training": {"lr": 0.02, "max_steps": 150, "batch_tokens": 512, "eval_every": 75, "log_every": 25,
                     "label_smoothing": 0.0, "metric": "accuracy"},
    }
    return write_training_config(folder, raw)


@pytest.mark.parametrize("crf", [False, True])
def test_a_tiny_tagger_learns_bio_entities_of_unseen_words(tmp_path, crf):
    result = train_from_config(write_config(tmp_path, crf=crf), quiet=True)
    assert result.metrics["accuracy"] >= 97.0 and result.metrics["entity_f1"] >= 95.0
    best = tmp_path / "run" / "best"
    tagger = SequenceTagger.load(best)
    assert tagger.tags == ["B-NUM", "I-NUM", "O"] and (best / "chars.json").is_file()
    found = tagger.tag([["a", "31415", "27", "b"], ["8675309"], []])
    assert found == [["O", "B-NUM", "I-NUM", "O"], ["B-NUM"], []]
    config = json.loads((best / "config.json").read_text())
    assert config["crf"] is crf and config["char_vocab_size"] == 4 + 10 + 8  # specials, digits, letters
    valid = read_conllu(tmp_path / "valid.conllu")
    again = tagger.evaluate([s.words for s in valid], [s.tags for s in valid])
    assert again["accuracy"] == pytest.approx(result.metrics["accuracy"])


def test_the_masked_loss_ignores_padding():
    logits = mx.array([[[0.0, math.log(3.0)], [5.0, -5.0], [9.0, 9.0]]])  # step 2 is padding
    targets = mx.array([[1, 0, 1]])
    total, count = masked_cross_entropy(logits, targets, mx.array([2]))
    expected = -math.log(3 / 4) - math.log(1 / (1 + math.exp(-10.0)))
    assert count.item() == 2 and total.item() == pytest.approx(expected, rel=1e-5)
    other, _ = masked_cross_entropy(logits.at[0, 2].add(100.0), mx.array([[1, 0, 0]]), mx.array([2]))
    assert other.item() == pytest.approx(total.item(), rel=1e-6)
