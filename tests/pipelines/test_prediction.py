"""Tests of mlxseq/pipelines/prediction.py through ``mlxseq predict`` and ``mlxseq evaluate``, on small folders."""

from datetime import datetime, timedelta

import mlx.core as mx
import numpy as np
import pytest
from typer.testing import CliRunner

from mlxseq.checkpoint import save_model
from mlxseq.pipelines.classifier import ClassifierEnsemble, TextClassifier, TextSettings
from mlxseq.cli import app
from mlxseq.data import CharTokenizer, Normaliser, WordTokenizer, batch_spellings, read_conllu
from mlxseq.pipelines.forecaster import SeriesSettings, TimeSeriesForecaster
from mlxseq.models import classifier, forecaster, tagger
from mlxseq.pipelines.tagger import CHARS_NAME, SequenceTagger

runner = CliRunner()


@pytest.fixture
def classifier_folder(tmp_path):
    mx.random.seed(0)
    args = classifier.ModelArgs(vocab_size=9, num_classes=2, embed_size=4, hidden_size=4)
    save_model(tmp_path / "cls", classifier.build_model(args), "classifier", args)
    WordTokenizer.build("good bad film plot ok").save(tmp_path / "cls")  # 4 specials + 5 words
    TextSettings(["neg", "pos"], lowercase=True, max_length=10).save(tmp_path / "cls")
    return tmp_path / "cls"


@pytest.fixture
def tagger_folder(tmp_path):
    mx.random.seed(0)
    args = tagger.ModelArgs(vocab_size=7, num_tags=3, char_vocab_size=14, embed_size=4, char_embed_size=4,
                            char_hidden_size=4, hidden_size=4, num_layers=1)
    folder = tmp_path / "tag"
    save_model(folder, tagger.build_model(args), "tagger", args)
    WordTokenizer.build("the dog runs").save(folder)
    CharTokenizer.build("thedogruns").save(folder, CHARS_NAME)
    TextSettings(["DET", "NOUN", "VERB"], lowercase=True, max_word_chars=6, tag_column="upos").save(folder)
    return folder


@pytest.fixture
def forecaster_folder(tmp_path):
    mx.random.seed(0)
    args = forecaster.ModelArgs(num_features=2, input_length=8, horizon=3, segment_length=4, hidden_size=8)
    folder = tmp_path / "fc"
    save_model(folder, forecaster.build_model(args), "forecaster", args)
    Normaliser.fit(np.array([[0.0, 10.0], [2.0, 30.0]]), ["A", "B"]).save(folder)
    SeriesSettings("date", ["A", "B"], 20, 10, 10).save(folder)
    start = datetime(2020, 1, 1)
    rows = ["date,A,B"] + [f"{start + timedelta(hours=h)},{h % 3},{10 + h}" for h in range(40)]
    (tmp_path / "series.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_predict_classifies_arguments_files_and_stdin(classifier_folder, tmp_path):
    expected = TextClassifier.load(classifier_folder).predict(["Good film", "bad plot"])
    result = runner.invoke(app, ["predict", "--model", str(classifier_folder), "Good film", "bad plot"])
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.output.splitlines()]
    assert [(label, text) for label, _, text in lines] == [(expected[0].labels[0], "Good film"), (expected[1].labels[0], "bad plot")]
    assert float(lines[0][1]) == pytest.approx(expected[0].probability, abs=1e-4)
    (tmp_path / "in.txt").write_text("Good film\nbad plot\n")
    from_file = runner.invoke(app, ["predict", "--model", str(classifier_folder), "-i", str(tmp_path / "in.txt")])
    from_stdin = runner.invoke(app, ["predict", "--model", str(classifier_folder)], input="Good film\nbad plot\n")
    assert from_file.output == from_stdin.output == result.output


def test_evaluate_a_classifier_names_its_settings(classifier_folder, tmp_path):
    predicted = TextClassifier.load(classifier_folder).predict(["good film", "bad plot", "ok"])
    gold = [p.labels[0] for p in predicted[:2]] + ["neg" if predicted[2].labels[0] == "pos" else "pos"]
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\n" + "".join(
        f"{t}\t{g}\n" for t, g in zip(["good film", "bad plot", "ok"], gold)))
    result = runner.invoke(app, ["evaluate", "--model", str(classifier_folder), "--data", str(tmp_path / "dev.tsv")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("accuracy 66.67  macro-F1 ")
    assert "3 examples, argmax" in result.output and "mlxseq " in result.output and "parameters" in result.output
    (tmp_path / "bad.tsv").write_text("good film\tmaybe\n")
    result = runner.invoke(app, ["evaluate", "--model", str(classifier_folder), "--data", str(tmp_path / "bad.tsv")])
    assert result.exit_code == 1 and "label 'maybe' is not one of the model's labels" in result.output


def test_predict_tags_text_as_pairs_or_conllu(tagger_folder, tmp_path):
    tags = SequenceTagger.load(tagger_folder).tag([["The", "dog", "runs"]])[0]
    result = runner.invoke(app, ["predict", "--model", str(tagger_folder), "The dog runs"])
    assert result.exit_code == 0, result.output
    assert result.output == " ".join(f"{w}/{t}" for w, t in zip(["The", "dog", "runs"], tags)) + "\n"
    out = tmp_path / "out.conllu"
    result = runner.invoke(app, ["predict", "--model", str(tagger_folder), "--format", "conllu", "-o", str(out), "The dog runs"])
    assert result.exit_code == 0, result.output
    (sentence,) = read_conllu(out)
    assert sentence.words == ["The", "dog", "runs"] and sentence.tags == tags and sentence.comments == ["text = The dog runs"]
    # CoNLL-U in, CoNLL-U out, then scored: the model's own tags are 100% accurate.
    result = runner.invoke(app, ["predict", "--model", str(tagger_folder), "-i", str(out)])
    assert result.output == out.read_text()
    result = runner.invoke(app, ["evaluate", "--model", str(tagger_folder), "--data", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("UPOS accuracy 100.00  loss ") and "3 words in 1 sentences, gold tokenisation, argmax" in result.output


def test_predict_and_evaluate_a_forecaster(forecaster_folder, tmp_path):
    loaded = TimeSeriesForecaster.load(forecaster_folder)
    from mlxseq.data import read_timeseries

    series = read_timeseries(tmp_path / "series.csv")
    dates, values = loaded.forecast(series)
    result = runner.invoke(app, ["predict", "--model", str(forecaster_folder), "-i", str(tmp_path / "series.csv")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "date,A,B" and lines[1].startswith("2020-01-02 16:00:00,") and len(lines) == 4
    assert np.allclose([[float(v) for v in line.split(",")[1:]] for line in lines[1:]], values, rtol=1e-5)
    result = runner.invoke(app, ["evaluate", "--model", str(forecaster_folder), "--data", str(tmp_path / "series.csv")])
    assert result.exit_code == 0, result.output
    scores = loaded.evaluate(series, "test")
    assert result.output.startswith(f"MSE {scores['mse']:.4f}  MAE {scores['mae']:.4f}")
    assert "test rows 30-39 of series.csv, 8 windows, input 8, horizon 3, 2 features" in result.output


def second_classifier(tmp_path, labels=("neg", "pos")):
    """Another classifier of the same labels, with its own vocabulary and weights."""
    mx.random.seed(1)
    args = classifier.ModelArgs(vocab_size=7, num_classes=2, embed_size=6, hidden_size=3, rnn_type="gru")
    folder = tmp_path / "cls2"
    save_model(folder, classifier.build_model(args), "classifier", args)
    WordTokenizer.build("good bad film").save(folder)
    TextSettings(list(labels), lowercase=True, max_length=10).save(folder)
    return folder


def test_an_ensemble_averages_its_members_probabilities(classifier_folder, tmp_path):
    other = second_classifier(tmp_path)
    texts = ["Good film", "bad plot", "ok ok good", "film"]
    members = [TextClassifier.load(f).probabilities(texts) for f in (classifier_folder, other)]
    ensemble = ClassifierEnsemble.load([classifier_folder, other])
    assert np.allclose(ensemble.probabilities(texts), (members[0] + members[1]) / 2)
    assert not np.allclose(members[0], members[1])  # the mean differs from each member
    result = runner.invoke(app, ["predict", "--model", str(classifier_folder), "--model", str(other), *texts])
    assert result.exit_code == 0, result.output
    mean = (members[0] + members[1]) / 2
    assert [float(line.split("\t")[1]) for line in result.output.splitlines()] == pytest.approx(mean.max(axis=1), abs=1e-4)
    (tmp_path / "dev.tsv").write_text("".join(f"{t}\tpos\n" for t in texts))
    result = runner.invoke(app, ["evaluate", "--model", str(classifier_folder), "--model", str(other),
                                 "--data", str(tmp_path / "dev.tsv")])
    assert result.exit_code == 0, result.output
    assert f"accuracy {100 * np.mean(mean.argmax(axis=1) == 1):.2f}" in result.output
    assert "mean probabilities of 2 models" in result.output and "ensemble of 2: " in result.output


def test_an_ensemble_needs_classifiers_with_the_same_labels(classifier_folder, tagger_folder, tmp_path):
    other = second_classifier(tmp_path, labels=("pos", "neg"))
    result = runner.invoke(app, ["predict", "--model", str(classifier_folder), "--model", str(other), "x"])
    assert result.exit_code == 1 and "cannot join an ensemble with" in result.output and "['pos', 'neg']" in result.output
    result = runner.invoke(app, ["predict", "--model", str(classifier_folder), "--model", str(tagger_folder), "x"])
    assert result.exit_code == 1 and "only classifiers can" in result.output and "holds a tagger" in result.output
    (tmp_path / "src").write_text("x\n")
    (tmp_path / "ref").write_text("y\n")
    result = runner.invoke(app, ["evaluate", "--model", str(classifier_folder), "--model", str(other),
                                 "--src", str(tmp_path / "src"), "--ref", str(tmp_path / "ref")])
    assert result.exit_code == 1 and str(classifier_folder) in result.output and "classifier" in result.output, result.output


def test_a_folder_whose_vocabulary_does_not_fit_the_model_is_refused(tagger_folder):
    CharTokenizer.build("abc").save(tagger_folder, CHARS_NAME)
    result = runner.invoke(app, ["predict", "--model", str(tagger_folder), "the dog"])
    assert result.exit_code == 1 and "7 chars.json characters, but the model's config.json expects 14" in result.output


def test_a_spelling_classifier_folder_needs_its_characters(tmp_path):
    mx.random.seed(0)
    args = classifier.ModelArgs(vocab_size=9, num_classes=2, embed_size=4, hidden_size=4, char_vocab_size=10,
                                char_embed_size=3, char_hidden_size=2)
    folder = tmp_path / "spelling"
    save_model(folder, classifier.build_model(args), "classifier", args)
    WordTokenizer.build("good bad film plot ok").save(folder)
    TextSettings(["neg", "pos"], max_length=10, max_word_chars=6).save(folder)
    result = runner.invoke(app, ["predict", "--model", str(folder), "good film"])
    assert result.exit_code == 1 and "0 chars.json characters, but the model's config.json expects 10" in result.output
    CharTokenizer.build("goodbat").save(folder, CHARS_NAME)  # 4 specials + the letters a b d g o t (ids 4-9)
    loaded = TextClassifier.load(folder)
    assert loaded.spell("good words") == [[7, 8, 8, 6], [1, 8, 1, 6, 1]]  # unknown letters are <unk>
    found = loaded.probabilities(["good film", "unseen words"])
    # By hand: the word ids and the batch's distinct spellings ("unseen" has its 6 letters, all unknown).
    tokens, lengths = mx.array([[6, 5], [1, 1]]), mx.array([2, 2])
    spellings = batch_spellings([[[7, 8, 8, 6], [1, 1, 1, 1]], [[1] * 6, [1, 8, 1, 6, 1]]], steps=2, max_chars=6)
    assert np.allclose(found, np.array(loaded.model.probabilities(tokens, lengths, *spellings)), atol=1e-6)
    CharTokenizer.build("abcde").save(folder, "tokenizer")  # 9 ids, but characters cannot be spelled word by word
    result = runner.invoke(app, ["predict", "--model", str(folder), "good film"])
    assert result.exit_code == 1 and "needs a word tokenizer and max_word_chars" in result.output


def test_errors_are_one_line(classifier_folder, tmp_path):
    result = runner.invoke(app, ["evaluate", "--model", str(classifier_folder)])
    assert result.exit_code == 1 and "pass --src and --ref (translation) or --data" in result.output
    result = runner.invoke(app, ["predict", "--model", str(tmp_path / "nowhere"), "x"])
    assert result.exit_code == 1 and "no model folder at" in result.output
    result = runner.invoke(app, ["evaluate", "--model", str(classifier_folder), "--data", str(tmp_path / "no.tsv")])
    assert result.exit_code == 1 and "no.tsv" in result.output and "no such file" in result.output
