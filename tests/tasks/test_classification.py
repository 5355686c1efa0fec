"""Tests of mlxseq/tasks/classification.py: toy problems learned, the masked and adversarial losses, config checks."""

import json
import math
import random
from collections import Counter
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlxseq.checkpoint import ModelFolderError
from mlxseq.pipelines.classifier import TextClassifier
from mlxseq.config import ConfigError, load_config
from mlxseq.data import DataError, batch_spellings
from mlxseq.models.classifier import ModelArgs, build_model
from mlxseq.losses import classification_loss, distillation_loss, span_loss
from mlxseq.tasks.classification import make_loss, prepare
from mlxseq.training.adversarial import adversarial_step
from mlxseq.runs.from_config import train_from_config
from tests.support.configs import write_training_config
from tests.support.runs import train_stopped_and_resumed

WORDS = "a b c d e f g h".split()


def write_splits(folder: Path, splits: dict[str, list[str]]) -> dict:
    """``folder/<split>.tsv`` of each split's lines; their paths by split."""
    for split, lines in splits.items():
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return {split: str(folder / f"{split}.tsv") for split in splits}


def write_corpus(folder: Path, multi: bool, seed=0) -> dict:
    """Texts of 2-9 letters; label: whether 'x' occurs (multi-label: which of 'x' and 'y' occur)."""
    rng = random.Random(seed)
    splits = {}
    for split, count in (("train", 1200), ("valid", 100)):
        lines = ["sentence\tlabel"]
        for _ in range(count):
            words = [rng.choice(WORDS) for _ in range(rng.randint(2, 9))]
            present = [w for w in ("x", "y") if rng.random() < 0.5]
            for w in present if multi else present[:1]:
                words.insert(rng.randrange(len(words) + 1), w)
            label = ",".join(present) or "none" if multi else ("x" if "x" in words else "no")
            lines.append(f"{' '.join(words)}\t{label}")
        splits[split] = lines
    return write_splits(folder, splits)


def write_config(folder: Path, multi=False, **sections) -> Path:
    raw = {
        "version": 1, "task": "classification", "output_dir": str(folder / "run"),
        "model": {"model_type": "classifier", "embed_size": 16, "hidden_size": 16, "dropout": 0.0, "pooling": "max"},
        "data": {**write_corpus(folder, multi), "label_separator": "," if multi else ""},
        "training": {"lr": 0.01, "max_steps": 120, "batch_tokens": 512, "eval_every": 60, "log_every": 20,
                     "label_smoothing": 0.0, "metric": "accuracy"},
    }
    return write_training_config(folder, raw, sections)


def test_a_tiny_classifier_learns_whether_a_word_occurs(tmp_path):
    result = train_from_config(write_config(tmp_path), quiet=True)
    assert result.metrics["accuracy"] >= 97.0 and result.metrics["macro_f1"] >= 97.0
    best = tmp_path / "run" / "best"
    classifier = TextClassifier.load(best)
    assert classifier.settings.labels == ["no", "x"]
    found = classifier.predict(["a b x c d e f", "a b c d e f g h", "x"])
    assert [p.labels for p in found] == [["x"], ["no"], ["x"]] and all(p.probability > 0.5 for p in found)
    config = json.loads((best / "config.json").read_text())
    assert config["model_type"] == "classifier" and config["num_classes"] == 2 and config["vocab_size"] == 4 + 10  # specials, a-h, x, y
    assert "| accuracy |" in (best / "README.md").read_text()
    # A classifier's loss is per example: no perplexity, examples per second.
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert train and all("ppl" not in r and "tokens_per_s" not in r and r["examples_per_s"] > 0 for r in train)


def test_a_tiny_multi_label_classifier_learns_which_words_occur(tmp_path):
    result = train_from_config(write_config(tmp_path, multi=True, model={"pooling": "attention"}), quiet=True)
    assert result.metrics["accuracy"] >= 90.0  # exact label sets
    classifier = TextClassifier.load(tmp_path / "run" / "best")
    assert sorted(classifier.predict(["a y b x c"])[0].labels) == ["x", "y"]


def test_the_loss_on_hand_made_logits():
    logits = mx.array([[0.0, math.log(3.0)], [math.log(4.0), 0.0]])
    total, count = classification_loss(logits, mx.array([1, 1]))
    assert count.item() == 2 and total.item() == pytest.approx(-math.log(3 / 4) - math.log(1 / 5), rel=1e-5)
    smoothed, _ = classification_loss(logits[:1], mx.array([1]), smoothing=0.2)
    log_p = [math.log(1 / 4), math.log(3 / 4)]
    assert smoothed.item() == pytest.approx(-0.8 * log_p[1] - 0.2 * sum(log_p) / 2, rel=1e-5)
    # Multi-label: binary cross-entropy summed over labels, one count per example.
    total, count = classification_loss(mx.array([[0.0, 100.0, -2.0]]), mx.array([[1.0, 1.0, 0.0]]))
    expected = math.log(2.0) + 0.0 + math.log(1 + math.exp(-2.0))
    assert count.item() == 1 and total.item() == pytest.approx(expected, rel=1e-5)


def test_the_distillation_loss_on_hand_made_logits():
    logits = mx.array([[0.0, math.log(3.0)], [math.log(4.0), 0.0]])  # p = (1/4, 3/4), (4/5, 1/5)
    soft = mx.array([[0.5, 0.5], [0.9, 0.1]])
    total, count = distillation_loss(logits, mx.array([1, 1]), soft, 0.25)
    hard = -math.log(3 / 4) - math.log(1 / 5)
    taught = -(0.5 * math.log(1 / 4) + 0.5 * math.log(3 / 4)) - (0.9 * math.log(4 / 5) + 0.1 * math.log(1 / 5))
    assert count.item() == 2 and total.item() == pytest.approx(0.75 * hard + 0.25 * taught, rel=1e-5)
    assert distillation_loss(logits, mx.array([1, 1]), soft, 0.0)[0].item() == pytest.approx(hard, rel=1e-5)
    # Multi-label: the teachers' probabilities are the binary cross-entropy's targets.
    total, _ = distillation_loss(mx.array([[0.0, 2.0]]), mx.array([[1.0, 0.0]]), mx.array([[0.2, 0.6]]), 0.5)
    bce = lambda x, t: -t * math.log(1 / (1 + math.exp(-x))) - (1 - t) * math.log(1 - 1 / (1 + math.exp(-x)))
    expected = 0.5 * (bce(0.0, 1.0) + bce(2.0, 0.0)) + 0.5 * (bce(0.0, 0.2) + bce(2.0, 0.6))
    assert total.item() == pytest.approx(expected, rel=1e-5)


def flip_labels(path: str) -> str:
    """A copy of a toy TSV whose labels 'x' and 'no' are swapped: every label is wrong."""
    lines = Path(path).read_text().splitlines()
    flipped = [lines[0]] + [text + "\t" + ("no" if label == "x" else "x")
                            for text, label in (line.split("\t") for line in lines[1:])]
    out = Path(path).with_name("flipped.tsv")
    out.write_text("\n".join(flipped) + "\n")
    return str(out)


def test_a_student_learns_from_its_teachers_what_its_labels_get_wrong(tmp_path):
    for name in ("teacher", "student-1.0", "student-0.0"):
        (tmp_path / name).mkdir()
    train_from_config(write_config(tmp_path / "teacher"), quiet=True)
    teacher = str(tmp_path / "teacher" / "run" / "best")
    flipped = flip_labels(str(tmp_path / "teacher" / "train.tsv"))
    for weight, accuracy in ((1.0, lambda a: a >= 95.0), (0.0, lambda a: a <= 5.0)):
        folder = tmp_path / f"student-{weight}"
        result = train_from_config(write_config(folder, data={"train": flipped},
                                                training={"teachers": [teacher, teacher], "teacher_weight": weight}),
                                   quiet=True)
        assert accuracy(result.metrics["accuracy"]), (weight, result.metrics)  # valid labels are right
        assert f"- distilled: targets (1 - {weight}) x label + {weight} x the mean probabilities of {teacher}" in \
            (folder / "run" / "best" / "README.md").read_text()


def test_teachers_must_know_the_same_labels(tmp_path):
    for name in ("teacher", "student", "none"):
        (tmp_path / name).mkdir()
    train_from_config(write_config(tmp_path / "teacher", training={"max_steps": 1}), quiet=True)
    renamed = tmp_path / "teacher" / "renamed.tsv"  # label 'no' called 'yes'
    renamed.write_text((tmp_path / "teacher" / "train.tsv").read_text().replace("\tno\n", "\tyes\n"))
    teacher = str(tmp_path / "teacher" / "run" / "best")
    config = write_config(tmp_path / "student", data={"train": str(renamed)}, training={"teachers": [teacher]})
    with pytest.raises(DataError, match=r"training.teachers: .*best has the labels \['no', 'x'\], the training data \['x', 'yes'\]"):
        train_from_config(config, quiet=True)
    with pytest.raises(ModelFolderError, match="training.teachers: no model folder at .*missing"):
        train_from_config(write_config(tmp_path / "none", training={"teachers": [str(tmp_path / "missing")]}), quiet=True)
    with pytest.raises(ConfigError, match=r"training: teacher_weight must be in \[0, 1\], got 1.5"):
        load_config(config, ["training.teacher_weight=1.5"])


def adversarial_model(eps, **changes):
    mx.random.seed(0)
    model = build_model(ModelArgs(vocab_size=20, num_classes=3, embed_size=8, hidden_size=6, dropout=0.0, **changes))
    model.train()
    return model


def test_the_adversarial_step_has_norm_eps_per_example_along_its_own_gradient():
    model = adversarial_model(0.5)
    tokens, lengths, labels = mx.array([[3, 4, 5, 6], [7, 8, 0, 0]]), mx.array([4, 2]), mx.array([0, 2])
    e = model.embed(tokens, lengths)
    batch_grad = mx.grad(lambda x: classification_loss(model.classify(x, lengths), labels)[0])(e)
    r = np.array(adversarial_step(batch_grad, 0.5))
    assert np.allclose(np.linalg.norm(r.reshape(2, -1), axis=1), 0.5, rtol=1e-5)
    assert np.all(r[1, 2:] == 0)  # padding is never moved
    for b in range(2):  # each example alone: the gradient of its own loss, scaled to eps
        n = int(lengths[b])
        alone = mx.grad(lambda x: classification_loss(model.classify(x, lengths[b:b + 1]), labels[b:b + 1])[0])(e[b:b + 1, :n])
        alone = np.array(alone)[0]
        assert np.allclose(r[b, :n], 0.5 * alone / np.linalg.norm(alone), atol=1e-6)


def test_a_per_token_adversarial_radius_grows_with_the_square_root_of_the_length():
    model = adversarial_model(0.5)
    tokens, lengths, labels = mx.array([[3, 4, 5, 6], [7, 8, 0, 0]]), mx.array([4, 2]), mx.array([0, 2])
    e = model.embed(tokens, lengths)
    batch_grad = mx.grad(lambda x: classification_loss(model.classify(x, lengths), labels)[0])(e)
    r = np.array(adversarial_step(batch_grad, 0.5, lengths))
    assert np.allclose(np.linalg.norm(r.reshape(2, -1), axis=1), [0.5 * 2.0, 0.5 * math.sqrt(2.0)], rtol=1e-5)
    assert np.all(r[1, 2:] == 0)
    assert np.allclose(r, np.array(adversarial_step(batch_grad, 0.5)) * np.array([2.0, math.sqrt(2.0)])[:, None, None],
                       atol=1e-6)  # the same direction as the whole-example radius


def test_the_training_loss_takes_the_per_token_radius_from_the_model_config(tmp_path):
    model = adversarial_model(0.3)
    batch = (mx.array([[3, 4, 5, 6], [7, 8, 9, 0]]), mx.array([4, 3]), mx.array([1, 2]))
    e = model.embed(*batch[:2])
    r = adversarial_step(mx.grad(lambda x: classification_loss(model.classify(x, batch[1]), batch[2])[0])(e), 0.3,
                         batch[1])
    expected = sum(classification_loss(model.classify(x, batch[1]), batch[2])[0].item() for x in (e, e + r))
    (total, _), _ = make_loss(0.0, adversarial=0.3, per_token=True).value_and_grad(model, batch)
    assert total.item() == pytest.approx(expected, rel=1e-5)
    (whole, _), _ = make_loss(0.0, adversarial=0.3).value_and_grad(model, batch)
    assert whole.item() != pytest.approx(expected, rel=1e-3)  # the radius made a difference
    config = load_config(write_config(tmp_path, training={"adversarial": 0.3, "adversarial_per_token": True}))
    parts = prepare(config, tmp_path / "run", resuming=False, command="test")
    (from_config, _), _ = parts.loss.value_and_grad(model, batch)
    assert from_config.item() == pytest.approx(expected, rel=1e-5)


def test_adversarial_gradients_are_those_of_the_clean_plus_the_perturbed_loss():
    model = adversarial_model(0.3)
    batch = (mx.array([[3, 4, 5, 6], [7, 8, 9, 0]]), mx.array([4, 3]), mx.array([1, 2]))
    loss_fn = make_loss(0.0, adversarial=0.3)
    (total, count), grads = loss_fn.value_and_grad(model, batch)
    # Independently: r from the embedding gradient, then d/dW of loss(e(W)) + loss(e(W) + r) with r fixed.
    e = model.embed(*batch[:2])
    r = adversarial_step(mx.grad(lambda x: classification_loss(model.classify(x, batch[1]), batch[2])[0])(e), 0.3)

    def both(model):
        e = model.embed(*batch[:2])
        return (classification_loss(model.classify(e, batch[1]), batch[2])[0]
                + classification_loss(model.classify(e + r, batch[1]), batch[2])[0])

    expected_total, expected = nn.value_and_grad(model, both)(model)
    assert count.item() == 2 and total.item() == pytest.approx(expected_total.item(), rel=1e-5)
    for (name, got), (_, want) in zip(tree_flatten(grads), tree_flatten(expected)):
        assert np.allclose(np.array(got), np.array(want), atol=1e-6), name
    clean = classification_loss(model(*batch[:2]), batch[2])[0].item()
    assert total.item() > 2 * clean  # the perturbed term is the larger one: r goes uphill
    assert loss_fn(model, batch)[0].item() == pytest.approx(clean, rel=1e-6)  # the plain call: the clean loss
    assert not hasattr(make_loss(0.0), "value_and_grad")


def test_both_adversarial_passes_read_the_same_dropped_words():
    model = adversarial_model(0.3)
    model.args.word_dropout = 0.5
    tokens, lengths, labels = mx.array([[3, 4, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14]]), mx.array([6, 6]), mx.array([1, 2])
    mx.random.seed(7)
    dropped = model.drop_words(tokens)
    assert 0 < int((dropped == 1).sum()) < 12  # some words, not all, became <unk>
    model.args.word_dropout = 0.0  # the expected value: both passes over the words dropped above
    e = model.embed(dropped, lengths)
    r = adversarial_step(mx.grad(lambda x: classification_loss(model.classify(x, lengths), labels)[0])(e), 0.3)
    expected = (classification_loss(model.classify(e, lengths), labels)[0]
                + classification_loss(model.classify(e + r, lengths), labels)[0])
    model.args.word_dropout = 0.5
    mx.random.seed(7)
    (total, _), _ = make_loss(0.0, adversarial=0.3).value_and_grad(model, (tokens, lengths, labels))
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)


SPELLINGS = batch_spellings([[[4, 5], [6], [7, 8, 9], [5]], [[9, 9], [4], [6, 7]]], steps=4, max_chars=3, multiple=4)


@pytest.mark.parametrize("spelling", [False, True], ids=["words", "words-and-characters"])
def test_a_compiled_training_step_takes_the_adversarial_gradients(spelling):
    from mlxseq.training.step import TrainStep

    tokens, lengths, labels = mx.array([[3, 4, 5, 6], [7, 8, 9, 0]]), mx.array([4, 3]), mx.array([1, 2])
    batch = (tokens, lengths, *SPELLINGS, labels) if spelling else (tokens, lengths, labels)
    changes = {"char_vocab_size": 10, "char_embed_size": 4, "char_hidden_size": 3} if spelling else {}
    updated = {}
    for mode in ("eager", "auto"):
        model = adversarial_model(0.3, **changes)
        optimizer = optim.SGD(learning_rate=0.1)
        step = TrainStep(model, optimizer, make_loss(0.0, adversarial=0.3), 0.0, mode=mode)
        loss, count, _ = step(batch)
        mx.eval(loss, model.parameters())
        assert step.mode == mode  # auto stays auto only when the whole step compiled (else it falls back to update)
        updated[mode] = (loss.item(), tree_flatten(model.parameters()))
    (loss, eager), (compiled_loss, compiled) = updated["eager"], updated["auto"]
    assert compiled_loss == pytest.approx(loss, rel=1e-5)
    for (name, a), (_, b) in zip(eager, compiled):
        assert np.allclose(np.array(a), np.array(b), atol=1e-6), name
    if spelling:  # the character encoder learns too: its inputs were perturbed along with the word embeddings
        before = dict(tree_flatten(adversarial_model(0.3, **changes).parameters()))
        assert not np.allclose(np.array(before["char_rnn.weight_ih_l0"]),
                               np.array(dict(compiled)["char_rnn.weight_ih_l0"]))


def test_a_tiny_classifier_learns_with_adversarial_training(tmp_path):
    result = train_from_config(write_config(tmp_path, model={"dropout": 0.1}, training={"adversarial": 1.0}), quiet=True)
    assert result.metrics["accuracy"] >= 97.0


def test_config_errors_name_the_key(tmp_path):
    path = write_config(tmp_path)
    with pytest.raises(ConfigError, match="training.metric: must be one of loss, accuracy, macro_f1 here, got 'bleu'"):
        load_config(path, ["training.metric=bleu"])
    with pytest.raises(ConfigError, match="model.num_classes: set by the task"):
        load_config(path, ["model.num_classes=3"])
    with pytest.raises(ConfigError, match="model: pooling must be one of"):
        load_config(path, ["model.pooling=sum"])
    with pytest.raises(ConfigError, match="training: adversarial must be >= 0, got -1.0"):
        load_config(path, ["training.adversarial=-1.0"])


def test_training_techniques_at_their_old_places_load_with_a_note(tmp_path):
    path = write_config(tmp_path, model={"adversarial": 0.5, "adversarial_per_token": True},
                        data={"teacher_weight": 0.25})
    config = load_config(path)
    assert (config.training.adversarial, config.training.adversarial_per_token) == (0.5, True)
    assert config.training.teacher_weight == 0.25 and "adversarial" not in config.model.args
    assert config.notes == [f"{path}: model.adversarial is now training.adversarial; it was read from there "
                            "(move it in the file)",
                            f"{path}: model.adversarial_per_token is now training.adversarial_per_token; it was read "
                            "from there (move it in the file)",
                            f"{path}: data.teacher_weight is now training.teacher_weight; it was read from there "
                            "(move it in the file)"]


def test_a_classifier_folder_that_stored_its_training_technique_still_loads(tmp_path):
    import json

    train_from_config(write_config(tmp_path, training={"max_steps": 1}), quiet=True)
    config_file = tmp_path / "run" / "best" / "config.json"
    saved = json.loads(config_file.read_text())
    assert "adversarial" not in saved  # training settings stay out of model folders
    config_file.write_text(json.dumps({**saved, "adversarial": 1.0, "adversarial_per_token": False}))  # as folders were
    assert TextClassifier.load(tmp_path / "run" / "best").predict(["a b"])


def write_suffix_corpus(folder: Path, seed=0) -> dict:
    """Label: the suffix of the one long word ('-ful' or '-less'); validation stems never occur in training."""
    rng = random.Random(seed)
    letters = "bcdfgkmnprstvz"
    stems = sorted({"".join(rng.choice(letters) + rng.choice("aeiou") for _ in range(2)) for _ in range(200)})
    train_stems, valid_stems = stems[:60], stems[60:100]
    splits = {}
    for split, count, pool in (("train", 1500, train_stems), ("valid", 120, valid_stems)):
        lines = []
        for _ in range(count):
            label = rng.choice(["ful", "less"])
            words = [rng.choice(WORDS) for _ in range(rng.randint(1, 4))]
            words.insert(rng.randrange(len(words) + 1), rng.choice(pool) + label)
            lines.append(f"{' '.join(words)}\t{label}")
        splits[split] = lines
    return write_splits(folder, splits)


def test_a_spelling_classifier_reads_words_it_never_saw(tmp_path):
    (tmp_path / "suffix").mkdir()
    data = {**write_suffix_corpus(tmp_path / "suffix"), "char_encoder": True, "max_word_chars": 8}
    path = write_config(tmp_path, model={"char_embed_size": 8, "char_hidden_size": 16}, data=data,
                        training={"max_steps": 200, "eval_every": 100})
    result = train_from_config(path, quiet=True)
    assert result.metrics["accuracy"] >= 95.0  # every validation keyword is <unk> to the word embedding
    best = tmp_path / "run" / "best"
    assert (best / "chars.json").is_file() and json.loads((best / "labels.json").read_text())["max_word_chars"] == 8
    classifier = TextClassifier.load(best)
    assert classifier.model.args.char_vocab_size == classifier.chars.vocab_size
    found = classifier.predict(["a zuzuful b", "zuzuless c"])  # 'zuzu' is no stem of the corpus
    assert [p.labels for p in found] == [["ful"], ["less"]]


def test_a_spelling_classifier_needs_word_tokens(tmp_path):
    path = write_config(tmp_path, data={"char_encoder": True})
    with pytest.raises(ConfigError, match="data.char_encoder: spells words: it needs data.tokenizer: word, got 'char'"):
        load_config(path, ["data.tokenizer=char"])


# --- nested spans -------------------------------------------------------------------------------


def write_nested_corpus(folder: Path, multi=False, seed=0) -> dict:
    """Sentences of 4-12 letters labelled by whether 'x' occurs (multi-label: which of 'x' and
    'y' occur), and three phrases of each (contiguous word spans, labelled by the same rule) on
    lines of their own, as in SST."""
    rng = random.Random(seed)
    splits = {}
    for split, count in (("train", 300), ("valid", 100)):
        lines = []
        for _ in range(count):
            words = [rng.choice(WORDS) for _ in range(rng.randint(4, 12))]
            for keyword in ("x", "y") if multi else ("x",):
                if rng.random() < 0.5:
                    words.insert(rng.randrange(len(words) + 1), keyword)
            texts = [words]
            if split == "train":
                for _ in range(3):
                    i = rng.randrange(len(words))
                    texts.append(words[i:rng.randint(i + 1, len(words))])
            for t in texts:
                label = ",".join(w for w in ("x", "y") if w in t) or "none" if multi else "x" if "x" in t else "no"
                lines.append(f"{' '.join(t)}\t{label}")
        splits[split] = lines
    return write_splits(folder, splits)


def nested_config(folder: Path, multi=False, **sections) -> Path:
    (folder / "nested").mkdir(exist_ok=True)
    data = {**write_nested_corpus(folder / "nested", multi), "nested_spans": True, "whole_text_weight": 2.0,
            **sections.pop("data", {})}
    return write_config(folder, multi, data=data, **sections)


def test_the_span_loss_on_hand_made_logits():
    # Two roots with two span slots each; root 1's second slot is padding (weight 0).
    logits = mx.array([[[0.0, math.log(3.0)], [math.log(4.0), 0.0]], [[0.0, 0.0], [50.0, -50.0]]])
    labels, weights = mx.array([[1, 1], [0, 1]]), mx.array([[2.0, 1.0], [1.0, 0.0]])
    total, count = span_loss(logits, labels, weights)
    expected = 2.0 * -math.log(3 / 4) + 1.0 * -math.log(1 / 5) + 1.0 * math.log(2.0)
    assert count.item() == 4.0 and total.item() == pytest.approx(expected, rel=1e-5)
    smoothed, _ = span_loss(logits[:1, :1], labels[:1, :1], mx.array([[1.0]]), smoothing=0.2)
    assert smoothed.item() == pytest.approx(classification_loss(logits[0, :1], labels[0, :1], 0.2)[0].item(), rel=1e-6)
    # Multi-label: binary cross-entropy summed over the labels of each span.
    total, count = span_loss(mx.array([[[0.0, 100.0, -2.0]]]), mx.array([[[1.0, 1.0, 0.0]]]), mx.array([[0.5]]))
    assert count.item() == 0.5 and total.item() == pytest.approx(0.5 * (math.log(2.0) + math.log(1 + math.exp(-2.0))),
                                                                 rel=1e-5)


@pytest.mark.parametrize("pooling", ["final", "mean", "max", "attention"])
def test_the_whole_text_span_gives_the_classifiers_logits(pooling):
    model = adversarial_model(0.0, pooling=pooling)
    model.eval()
    tokens, lengths = mx.array([[3, 4, 5, 6], [7, 8, 0, 0]]), mx.array([4, 2])
    e = model.embed(tokens, lengths)
    spans = model.classify_spans(e, lengths, mx.array([[0, 1], [0, 0]]), mx.array([[4, 3], [2, 1]]))
    assert np.allclose(np.array(spans[:, 0]), np.array(model.classify(e, lengths)), atol=1e-5)
    alone = model.classify_spans(e[:1], lengths[:1], mx.array([[1]]), mx.array([[3]]))  # the padded batch's second span
    assert np.allclose(np.array(alone[0, 0]), np.array(spans[0, 1]), atol=1e-5)


def test_span_batches_hold_every_example_at_its_place_in_a_root(tmp_path):
    config = load_config(nested_config(tmp_path, data={"max_length": 16}, training={"batch_tokens": 64}))
    parts = prepare(config, tmp_path / "run", resuming=False, command="test")
    assert "nested spans: " in parts.description and "of roots per epoch" in parts.description
    corpus = [line.split("\t") for line in Path(config.data.train).read_text().splitlines()]
    vocabulary = parts.batches.classifier  # encodes texts as the model reads them
    seen, roots = [], 0
    for tokens, lengths, starts, ends, labels, weights in parts.batches:
        assert starts.shape == ends.shape == labels.shape == weights.shape and starts.shape[1] % 8 == 0
        for b in range(tokens.shape[0]):
            roots += 1
            n = int(lengths[b])
            for s in range(starts.shape[1]):
                i, j, w = int(starts[b, s]), int(ends[b, s]), float(weights[b, s])
                if w == 0:  # padding: one step, never empty
                    assert (i, j) == (0, 1)
                    continue
                assert w == (2.0 if (i, j) == (0, n) else 1.0)
                text = tokens[b, i:j].tolist()
                seen.append((text, ["no", "x"][int(labels[b, s])]))
    assert roots == len(parts.batches.table) < len(corpus) / 2  # an epoch of roots: the phrases are inside them
    expected = [(vocabulary.encode(text), label) for text, label in corpus]
    assert sorted(set(map(str, seen))) == sorted(set(map(str, expected)))  # each example, at its words, with its label
    seen_count, expected_count = Counter(map(str, seen)), Counter(map(str, expected))
    assert all(seen_count[key] >= n for key, n in expected_count.items())  # a text given n times is n spans (or more)
    assert len(seen) == parts.batches.table.num_spans


def test_adversarial_span_gradients_are_those_of_the_clean_plus_the_perturbed_span_loss():
    model = adversarial_model(0.3)
    batch = (mx.array([[3, 4, 5, 6], [7, 8, 9, 0]]), mx.array([4, 3]), mx.array([[0, 1, 0], [0, 2, 0]]),
             mx.array([[4, 3, 1], [3, 3, 1]]), mx.array([[1, 2, 0], [2, 0, 0]]), mx.array([[3.0, 1.0, 1.0], [3.0, 1.0, 0.0]]))
    tokens, lengths, starts, ends, labels, weights = batch
    loss_fn = make_loss(0.0, adversarial=0.3, spans=True)
    (total, count), grads = loss_fn.value_and_grad(model, batch)

    def loss_at(model, e):
        return span_loss(model.classify_spans(e, lengths, starts, ends), labels, weights)[0]

    e = model.embed(tokens, lengths)
    r = adversarial_step(mx.grad(lambda x: loss_at(model, x))(e), 0.3)
    expected_total, expected = nn.value_and_grad(model, lambda m: loss_at(m, m.embed(tokens, lengths))
                                                 + loss_at(m, m.embed(tokens, lengths) + r))(model)
    assert count.item() == 9.0 and total.item() == pytest.approx(expected_total.item(), rel=1e-5)
    for (name, got), (_, want) in zip(tree_flatten(grads), tree_flatten(expected)):
        assert np.allclose(np.array(got), np.array(want), atol=1e-6), name
    assert loss_fn(model, batch)[0].item() == pytest.approx(loss_at(model, e).item(), rel=1e-6)


def test_a_tiny_classifier_learns_from_nested_spans(tmp_path):
    path = nested_config(tmp_path, training={"adversarial": 0.5, "max_steps": 150, "eval_every": 75})
    result = train_from_config(path, quiet=True)
    assert result.metrics["accuracy"] >= 97.0  # whole validation sentences
    card = (tmp_path / "run" / "best" / "README.md").read_text()
    assert "- nested spans: " in card and "a root's whole text weighs 2.0" in card
    assert TextClassifier.load(tmp_path / "run" / "best").predict(["a b c x d e"])[0].labels == ["x"]


def test_a_tiny_multi_label_classifier_learns_from_nested_spans(tmp_path):
    # Slower to learn than the phrases alone (100% after 150 steps): in context, a phrase's states
    # also remember the keywords before and after it, which its labels must learn to ignore.
    path = nested_config(tmp_path, multi=True, training={"max_steps": 400, "eval_every": 200})
    parts = prepare(load_config(path), tmp_path / "probe", resuming=False, command="test")
    *_, labels, weights = next(iter(parts.batches))
    assert labels.dtype == mx.float32 and labels.shape == (*weights.shape, 3)  # none, x, y
    result = train_from_config(path, quiet=True)
    assert result.metrics["accuracy"] >= 90.0  # exact label sets of whole validation sentences
    assert sorted(TextClassifier.load(tmp_path / "run" / "best").predict(["a y b x c d"])[0].labels) == ["x", "y"]


def test_a_nested_span_run_stopped_and_resumed_ends_bit_identical_to_a_straight_run(tmp_path):
    sections = dict(model={"dropout": 0.2},
                    training={"adversarial": 0.5, "max_steps": 24, "eval_every": 12, "save_every": 4, "batch_tokens": 256})
    for name in ("straight", "stopped"):
        (tmp_path / name).mkdir()
    train_from_config(nested_config(tmp_path / "straight", **sections), quiet=True)
    stopped = nested_config(tmp_path / "stopped", **sections)

    train_stopped_and_resumed(stopped, stop_step=19)
    a, b = (dict(tree_flatten(TextClassifier.load(tmp_path / name / "run" / "last").model.parameters()))
            for name in ("straight", "stopped"))
    assert a.keys() == b.keys() and all(mx.array_equal(a[k], b[k]).item() for k in a)
    records = [json.loads(x) for x in (tmp_path / "stopped" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 24 and records[-1]["epoch"] >= 1  # the run crossed an epoch of roots


def test_nested_spans_need_word_tokens_and_no_teachers(tmp_path):
    path = nested_config(tmp_path)
    with pytest.raises(ConfigError, match="data.nested_spans: matches texts word by word: it needs data.tokenizer: word"):
        load_config(path, ["data.tokenizer=char"])
    with pytest.raises(ConfigError, match="data.nested_spans: cannot be combined with training.teachers"):
        load_config(path, ["training.teachers=[some/folder]"])
    with pytest.raises(ConfigError, match="data.whole_text_weight: must be > 0, got 0.0"):
        load_config(path, ["data.whole_text_weight=0.0"])
