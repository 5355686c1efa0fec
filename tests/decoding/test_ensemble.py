"""Translation ensembles: the mean of the members' log-probabilities at each step, through the
searches, the Translator and ``mlxseq translate --model A --model B``."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from typer.testing import CliRunner

from mlxseq.checkpoint import ModelFolderError, save_model
from mlxseq.cli import app
from mlxseq.data import TokenizerPair, WordTokenizer
from mlxseq.decoding import greedy_decode
from mlxseq.decoding.ensemble import Ensemble
from mlxseq.models.seq2seq import ModelArgs, build_model
from mlxseq.pipelines.translator import TranslationOptions, Translator

SOURCE = "eins zwei drei vier fünf sechs sieben acht".split()
TARGET = "one two three four five six seven eight".split()


def _folder(path, seed, target_words=TARGET, **options):
    mx.random.seed(seed)
    args = ModelArgs(12, 12, embed_size=8, hidden_size=16, rnn_type="gru", dropout=0.0, **options)
    model = build_model(args)
    save_model(path, model, "seq2seq", args)
    TokenizerPair(WordTokenizer.build(SOURCE), WordTokenizer.build(target_words)).save(path)
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble")
    return [_folder(root / "a", 1), _folder(root / "b", 2, attention="additive"), _folder(root / "c", 3, bridge="zeros")]


def _log_softmax(logits):
    x = np.array(logits, dtype=np.float64)
    return x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)) - x.max(-1, keepdims=True)


def test_a_step_is_the_mean_of_the_members_log_probabilities(folders):
    members = [Translator.load(f).model for f in folders]
    ensemble = Ensemble(members)
    src, lengths = mx.array([[4, 5, 6], [7, 8, 0]]), mx.array([3, 2])
    state = ensemble.init_state(ensemble.encode(src, lengths))
    states = [m.init_state(m.encode(src, lengths)) for m in members]
    tokens = mx.array([2, 2])
    for _ in range(3):  # a few steps, each member's state carried on its own
        got, state = ensemble.step(tokens, state)
        steps = [m.step(tokens, s) for m, s in zip(members, states)]
        states = [s for _, s in steps]
        expected = np.mean([_log_softmax(logits) for logits, _ in steps], axis=0)
        np.testing.assert_allclose(np.array(got), expected, atol=1e-5)
        tokens = mx.argmax(got, axis=-1).astype(mx.int32)
    mean_attention = np.mean([np.array(s["attention"]) for s in states], axis=0)
    np.testing.assert_allclose(np.array(state["attention"]), mean_attention, atol=1e-6)


def test_greedy_search_over_an_ensemble_follows_the_averaged_argmax(folders):
    translators = [Translator.load(f) for f in folders]
    ensemble = Translator.load([str(f) for f in folders])
    src, lengths = mx.array([[4, 5, 6, 7]]), mx.array([4])
    states = [t.model.init_state(t.model.encode(src, lengths)) for t in translators]
    tokens, chosen = mx.array([2]), []
    for _ in range(12):
        steps = [t.model.step(tokens, s) for t, s in zip(translators, states)]
        states = [s for _, s in steps]
        averaged = np.mean([_log_softmax(logits) for logits, _ in steps], axis=0)[0]
        averaged[[0, 1, 2]] = -np.inf  # pad, unk and bos are never produced
        token = int(averaged.argmax())
        if token == 3:
            break
        chosen.append(token)
        tokens = mx.array([token])
    state = ensemble.model.init_state(ensemble.model.encode(src, lengths))
    (found,) = greedy_decode(ensemble.model, state, bos_id=2, eos_id=3, max_tokens=12, banned_ids=[0, 1, 2])
    assert list(found.tokens) == chosen


def test_an_ensemble_of_one_model_with_itself_is_that_model(folders):
    alone = Translator.load(folders[0])
    twice = Translator.load([str(folders[0]), str(folders[0])])
    sentences = ["eins zwei drei", "acht sieben"]
    for beam in (1, 3):
        options = TranslationOptions(beam_size=beam, n_best=beam)
        for a, b in zip(alone.translate(sentences, options), twice.translate(sentences, options)):
            assert [h.text for h in a] == [h.text for h in b]
            np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-5)


def test_folders_with_different_vocabularies_are_refused_by_name(folders, tmp_path):
    other = _folder(tmp_path / "other", 4, target_words=TARGET[:-1] + ["nine"])
    with pytest.raises(ModelFolderError, match=f"{other} and {folders[0]} have different target vocabularies"):
        Translator.load([str(folders[0]), str(other)])


def test_the_command_translates_with_an_ensemble_and_says_so(folders, tmp_path):
    runner = CliRunner()
    ensemble = Translator.load([str(f) for f in folders[1:]])
    expected = ensemble.translate(["eins zwei drei"])[0][0].text
    assert expected  # these two members write something
    result = runner.invoke(app, ["translate", "--model", str(folders[1]), "--model", str(folders[2]), "eins zwei drei"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == expected
    (tmp_path / "src").write_text("eins zwei drei\n")
    (tmp_path / "ref").write_text("three two one\n")
    result = runner.invoke(app, ["evaluate", "--model", str(folders[1]), "--model", str(folders[2]),
                                 "--src", str(tmp_path / "src"), "--ref", str(tmp_path / "ref")])
    assert result.exit_code == 0, result.output
    assert f"model ensemble of 2: {folders[1]}, {folders[2]}" in result.output


def test_beams_over_an_ensemble_read_each_member_s_memory_once_per_source(folders):
    from mlxseq.decoding import beam_search

    ensemble = Translator.load([str(f) for f in folders]).model
    src, lengths = mx.array([[4, 5, 6], [7, 8, 0]]), mx.array([3, 2])
    state = ensemble.init_state(ensemble.encode(src, lengths))
    expanded = ensemble.expand_beams(state, 3)
    assert [m["memory"].shape[0] for m in expanded["members"]] == [2, 2, 2]
    assert expanded["attention"].shape[0] == 6 and all(m["h"][0].shape[0] == 6 for m in expanded["members"])

    class Repeating:  # the ensemble without expand_beams: every leaf repeated K times
        step = staticmethod(ensemble.step)

    common = dict(bos_id=2, eos_id=3, beam_size=3, max_tokens=6, n_best=3)
    found, repeated = beam_search(ensemble, state, **common), beam_search(Repeating(), state, **common)
    assert [[h.tokens for h in hyps] for hyps in found] == [[h.tokens for h in hyps] for hyps in repeated]
    for a, b in zip(found, repeated):
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], rtol=1e-5)
