"""Fine-tuning from a model folder (``training.init_from``): the bundled translator adapted to a
small in-domain set the test makes scores better on it, keeps its vocabulary and stays loadable;
frozen parts stay as they were; contradictions between config and folder are named."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

import mlxseq
from mlxseq.config import ConfigError
from mlxseq.metrics import score_translations
from mlxseq.runs.from_config import train_from_config
from tests.support.configs import write_training_config

# A domain the captions never saw: a robot's workshop, with one English rendering of each sentence.
SUBJECTS = [("Der Roboter", "The robot"), ("Die Maschine", "The machine"), ("Der Greifarm", "The gripper arm")]
ACTIONS = [("schweißt ein Rohr", "welds a pipe"), ("sortiert die Schrauben", "sorts the screws"),
           ("lackiert das Gehäuse", "paints the housing"), ("prüft die Platine", "tests the circuit board"),
           ("montiert den Motor", "mounts the motor")]


def _write(folder, name, lines):
    path = folder / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def domain(tmp_path_factory):
    folder = tmp_path_factory.mktemp("domain")
    pairs = [(f"{s} {a}.", f"{t} {b}.") for s, t in SUBJECTS for a, b in ACTIONS]
    return folder, [p[0] for p in pairs], [p[1] for p in pairs]


def _config(folder, domain, **training):
    data_folder, sources, targets = domain
    files = {name: _write(data_folder, f"{name}.txt", lines) for name, lines in
             (("src", sources), ("tgt", targets))}
    raw = {
        "version": 1, "task": "translation", "output_dir": str(folder / "run"), "model": {"model_type": "seq2seq"},
        "data": {"train_src": files["src"], "train_tgt": files["tgt"], "valid_src": files["src"], "valid_tgt": files["tgt"]},
        "training": {"init_from": "multi30k-de-en", "max_steps": 40, "lr": 1e-3, "batch_tokens": 1024,
                     "label_smoothing": 0.0, "eval_every": 0, "log_every": 10, "seed": 0, **training},
        "validation": {"bleu": False},
    }
    return write_training_config(folder, raw)


def test_fine_tuning_the_bundled_translator_improves_its_score_on_the_new_domain(tmp_path, domain):
    _, sources, targets = domain
    before = score_translations([t[0].text for t in mlxseq.Translator.load().translate(sources)], targets).bleu
    train_from_config(_config(tmp_path, domain), quiet=True)
    tuned = mlxseq.Translator.load(tmp_path / "run" / "last")
    after = score_translations([t[0].text for t in tuned.translate(sources)], targets).bleu
    assert after > before + 20, (before, after)
    bundled = mlxseq.Translator.load()
    assert tuned.tokenizers.source.vocabulary() == bundled.tokenizers.source.vocabulary()  # its vocabulary kept
    assert tuned.model.args == bundled.model.args


def test_frozen_modules_keep_the_folders_weights(tmp_path, domain):
    train_from_config(_config(tmp_path, domain, max_steps=3, freeze=["encoder", "embedding"]), quiet=True)
    tuned = dict(tree_flatten(mlxseq.Translator.load(tmp_path / "run" / "last").model.parameters()))
    start = dict(tree_flatten(mlxseq.Translator.load().model.parameters()))
    for name, value in start.items():
        same = np.array_equal(np.array(tuned[name]), np.array(value.astype(mx.float32)))
        assert same == name.startswith(("encoder.", "embedding.")), name


def test_a_config_that_contradicts_the_folder_is_named(tmp_path, domain):
    path = _config(tmp_path, domain)
    with pytest.raises(ConfigError, match="model.hidden_size: 256 differs from the init_from folder's 512"):
        train_from_config(path, ["model.hidden_size=256"], quiet=True)
    with pytest.raises(ConfigError, match="no module 'decoder' in the model"):
        train_from_config(path, ["training.freeze=[decoder]", "training.max_steps=1"], quiet=True)
    with pytest.raises(ConfigError, match="freeze needs init_from"):
        train_from_config(path, ["training.init_from=''", "training.freeze=[encoder]"], quiet=True)
