"""Every pipeline has ``load``, ``predict`` and ``evaluate``; the new ones agree with the methods
they stand beside."""

import math

import mlx.core as mx
import pytest

import mlxseq
from mlxseq.metrics import score_translations
from mlxseq.pipelines.classifier import TextClassifier
from mlxseq.pipelines.forecaster import TimeSeriesForecaster
from mlxseq.pipelines.generator import Generator
from mlxseq.pipelines.tagger import SequenceTagger
from mlxseq.pipelines.translator import Translator


@pytest.mark.parametrize("pipeline", [Translator, Generator, TextClassifier, SequenceTagger, TimeSeriesForecaster])
def test_every_pipeline_loads_predicts_and_evaluates(pipeline):
    assert all(callable(getattr(pipeline, name, None)) for name in ("load", "predict", "evaluate"))


def test_the_translators_predict_and_evaluate_are_its_translations_and_their_scores():
    translator = Translator.load()
    sources = ["Ein Mann fährt mit dem Fahrrad.", "Zwei Hunde spielen im Schnee."]
    references = ["A man rides a bike.", "Two dogs play in the snow."]
    best = translator.predict(sources)
    assert best == [hyps[0].text for hyps in translator.translate(sources)]
    scores = translator.evaluate(sources, references)
    assert scores["bleu"] == pytest.approx(score_translations(best, references).bleu)
    assert scores["settings"] == translator.options().signature() and scores["sentences"] == 2


def test_the_generators_evaluation_carries_the_state_across_chunks():
    generator = Generator.load()
    text = "ROMEO:\nWhat light through yonder window breaks? It is the east, and Juliet is the sun."
    whole = generator.evaluate(text, chunk=1000)
    chunked = generator.evaluate(text, chunk=7)
    assert chunked["loss"] == pytest.approx(whole["loss"], abs=1e-4)
    assert whole["tokens"] == len(generator.tokenizer.encode(text)) - 1
    assert whole["ppl"] == pytest.approx(math.exp(whole["loss"]))
    ids = mx.array([generator.tokenizer.encode(text)])
    logits, _ = generator.model(ids[:, :-1])
    log_probs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    direct = -mx.take_along_axis(log_probs, ids[:, 1:, None], axis=-1).mean().item()
    assert whole["loss"] == pytest.approx(direct, abs=1e-4)
    assert generator.predict("ROMEO:", mlxseq.pipelines.generator.GenerationOptions(max_tokens=30)) == \
        mlxseq.generate("ROMEO:", max_tokens=30)
