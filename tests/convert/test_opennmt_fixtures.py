"""Checkpoints written by OpenNMT-py 3.5.1 itself, converted and translated as its own translator did.

tests/convert/fixtures/opennmt/ holds tiny RNN models that OpenNMT-py built and saved (its
train options, vocabularies, ``build_model`` and ``ModelSaver``) and, beside each, the
translations and scores of its ``onmt_translate`` (``InferenceEnginePY``) for several searches.
tools/make_opennmt_fixtures.py wrote them; OpenNMT-py is not needed here.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mlxseq.cli import app
from mlxseq.pipelines.translator import TranslationOptions, Translator

FIXTURES = Path(__file__).parent / "fixtures" / "opennmt"
MODELS = sorted(path.stem for path in FIXTURES.glob("*.json"))
LENGTH_PENALTY = {"none": "gnmt", "wu": "gnmt", "avg": "average"}  # OpenNMT-py's -length_penalty as mlxseq's
runner = CliRunner()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """name -> (its fixture record, the folder ``mlxseq convert`` made of its checkpoint)."""
    out = {}
    for name in MODELS:
        record = json.loads((FIXTURES / f"{name}.json").read_text())
        folder = tmp_path_factory.mktemp(name) / "model"
        result = runner.invoke(app, ["convert", str(FIXTURES / record["checkpoint"]), str(folder)])
        assert result.exit_code == 0, result.output
        assert "found opennmt: OpenNMT-py 3.x" in result.output
        out[name] = record, folder
    return out


def options_of(run: dict) -> TranslationOptions:
    """mlxseq's options for one ``onmt_translate`` run of the fixtures."""
    if run["max_length_ratio"] > 0:  # OpenNMT-py: int(min(max_length, ratio * source tokens + 5))
        lengths = dict(max_length=0, max_length_ratio=run["max_length_ratio"], max_length_offset=5)
    else:
        lengths = dict(max_length=run["max_length"])
    alpha = 0.0 if run["length_penalty"] == "none" else run["alpha"]
    return TranslationOptions(search="opennmt", beam_size=run["beam_size"], n_best=run["n_best"],
                              batch_size=run["batch_size"],
                              length_penalty=alpha, length_penalty_kind=LENGTH_PENALTY[run["length_penalty"]],
                              **lengths)


def run_ids(name):
    record = json.loads((FIXTURES / f"{name}.json").read_text())
    return [(name, i) for i in range(len(record["runs"]))]


@pytest.mark.parametrize("name,run", [case for name in MODELS for case in run_ids(name)])
def test_translations_and_scores_are_opennmt_py_s(converted, name, run):
    record, folder = converted[name]
    run = record["runs"][run]
    translator = Translator.load(folder)
    tokens = translator.tokenizers.target.tokens
    found = translator.translate(record["sentences"], options_of(run["options"]))
    for sentence, hyps, expected in zip(record["sentences"], found, run["translations"]):
        where = f"{sentence!r} with {run['options']}"
        assert [" ".join(tokens[t] for t in h.tokens) for h in hyps] == [e["text"] for e in expected], where
        np.testing.assert_allclose([h.score for h in hyps], [e["score"] for e in expected], atol=1e-4, err_msg=where)


@pytest.mark.parametrize("name", MODELS)
def test_cli_translates_as_onmt_translate_with_its_defaults(converted, name):
    """``onmt_translate -beam_size 3 -n_best 3`` (3.5.1: -length_penalty avg -alpha 1.0 -max_length_ratio 1.25)."""
    record, folder = converted[name]
    run, = [r for r in record["runs"] if r["options"]["max_length_ratio"] and r["options"]["beam_size"] == 3]
    result = runner.invoke(app, ["translate", *record["sentences"], "--model", str(folder), "--search", "opennmt",
                                 "--beam-size", "3", "--n-best", "3", "--length-penalty", "1.0",
                                 "--length-penalty-kind", "average", "--max-length-ratio", "1.25",
                                 "--max-length-offset", "5", "--batch-size", "30"])
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.output.splitlines()]
    expected = [e for translations in run["translations"] for e in translations]
    assert [text for text, _ in lines] == [e["text"] for e in expected]
    np.testing.assert_allclose([float(score) for _, score in lines], [e["score"] for e in expected], atol=1e-4)


def test_fixtures_are_small_and_from_opennmt_py_3_5_1():
    assert len(MODELS) >= 3
    assert sum(path.stat().st_size for path in FIXTURES.iterdir()) < 500_000
    for name in MODELS:
        record = json.loads((FIXTURES / f"{name}.json").read_text())
        assert record["opennmt_py"] == "3.5.1"
        assert any(word not in " ".join(record["sentences"][:1]) for word in record["sentences"][3].split())


def test_convert_q_writes_a_quantized_folder_that_translates(tmp_path):
    import mlx.nn as nn

    from mlxseq.checkpoint import read_config

    record = json.loads((FIXTURES / f"{MODELS[0]}.json").read_text())
    result = runner.invoke(app, ["convert", str(FIXTURES / record["checkpoint"]), str(tmp_path / "q"), "-q",
                                 "--q-bits", "8", "--q-group-size", "32"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(f"wrote {tmp_path / 'q'} (8-bit, groups of 32)")
    assert read_config(tmp_path / "q")["quantization"] == {"bits": 8, "group_size": 32}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q"]  # the full-precision folder was temporary
    translator = Translator.load(tmp_path / "q")
    assert any(isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding)) for _, m in translator.model.named_modules())
    full = runner.invoke(app, ["convert", str(FIXTURES / record["checkpoint"]), str(tmp_path / "full")])
    assert full.exit_code == 0
    sentences = record["sentences"][:4]
    quantized = [h[0].text for h in translator.translate(sentences)]
    assert quantized == [h[0].text for h in Translator.load(tmp_path / "full").translate(sentences)]
