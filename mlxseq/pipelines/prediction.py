"""``mlxseq predict`` and ``mlxseq evaluate`` for classifier, tagger, forecaster and speech folders.

    predict(model, texts=None, input=None, output_format="auto") -> str     # what the command prints
    evaluate(model, data, split="test") -> list[str]                        # scores with their settings

``model`` is a folder (or Hub repo id), or a list of classifier folders used as an ensemble
(the mean of their probabilities, :class:`mlxseq.pipelines.classifier.ClassifierEnsemble`).

The model folder's ``model_type`` decides what happens:

    classifier   texts (arguments, one per line of a file or stdin) -> label<TAB>probability<TAB>text
                 evaluate: a TSV of text<TAB>label -> accuracy, macro-F1, loss
    tagger       whitespace-separated words per line, or a CoNLL-U file -> word/TAG pairs or CoNLL-U;
                 over feature vectors: files -> file<TAB>one tag per frame
                 evaluate: a CoNLL-U file -> token accuracy (entity F1 for BIO tags), loss
    forecaster   a CSV series -> CSV of the next H steps after its last row (date and features)
                 evaluate: the CSV -> MSE and MAE of the split's windows on the normalised scale
    speech_ctc   WAV files -> file<TAB>transcript (also ``mlxseq transcribe``)
                 evaluate: a speech list (audio<TAB>transcript, or a digit list with its recordings)
                 -> WER, CER, their substitutions, deletions and insertions, utterances exactly right, loss
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import mlx.core as mx

from mlxseq.layers import count_parameters
from mlxseq._version import __version__
from mlxseq.checkpoint import ModelFolderError, read_config, resolve_folder
from mlxseq.data import HEADER_OPTIONS, format_conllu, read_conllu, read_labelled, read_lines, read_timeseries

FORMATS = ("auto", "text", "conllu", "csv")


def model_type(path_or_repo) -> str:
    """The ``model_type`` of a model folder (or Hub repo id)."""
    return read_config(resolve_folder(path_or_repo))["model_type"]


def _kind(path_or_repo) -> str:
    found = model_type(path_or_repo)
    if found not in COMMANDS:
        raise ModelFolderError(f"{path_or_repo} holds a {found!r} model; predict and evaluate here take {', '.join(COMMANDS)} "
                               "(translate, generate and evaluate --src/--ref serve the others)")
    return found


def _models(model) -> tuple[list, str]:
    """``model`` as a list of folders and their one kind; several folders must all be classifiers."""
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    if not models:
        raise ValueError("no model folder given")
    kinds = [_kind(m) for m in models]
    for m, kind in zip(models, kinds):
        if len(models) > 1 and kind != "classifier":
            raise ValueError(f"several models form an ensemble, which only classifiers can: {m} holds a {kind}")
    return models, kinds[0]


def _classifier(models: list):
    """A classifier folder's pipeline (text, or feature vectors when its model reads them), or an ensemble."""
    from mlxseq.pipelines.classifier import ClassifierEnsemble, TextClassifier
    from mlxseq.pipelines.frame_classifier import FrameClassifier, is_frame_classifier

    members = [(FrameClassifier if is_frame_classifier(read_config(resolve_folder(m))) else TextClassifier).load(m)
               for m in models]
    return members[0] if len(members) == 1 else ClassifierEnsemble(members)


def _signature(folder, parameters: int) -> str:
    return f"model {folder} ({parameters:,} parameters); mlxseq {__version__}, MLX {mx.__version__}"


def _parameters(model) -> int:
    return count_parameters(model)


@dataclass(frozen=True)
class Inputs:
    """What ``mlxseq predict`` was given: texts as arguments, a file, or lines from stdin."""

    texts: list[str] | None
    input: str | None
    lines: list[str] | None
    output_format: str

    def items(self) -> list[str]:
        if self.texts:
            return list(self.texts)
        return read_lines([self.input]) if self.input else list(self.lines or [])


@dataclass(frozen=True)
class Scored:
    head: str  # the scores in one line
    settings: str  # how the data were read and scored
    folder: str
    parameters: int


def _predict_classifier(models: list, inputs: Inputs, batch_size: int, threshold: float) -> str:
    items = inputs.items()
    found = _classifier(models).predict(items, batch_size, threshold)
    return "".join(f"{','.join(p.labels)}\t{p.probability:.4f}\t{t}\n" for p, t in zip(found, items))


def _evaluate_classifier(models: list, data: str, options: "EvaluationOptions") -> Scored:
    classifier = _classifier(models)
    separator = "," if classifier.multi_label else None
    corpus = read_labelled(data, header=HEADER_OPTIONS[options.header], label_separator=separator)
    texts = corpus.texts
    if any(hasattr(m, "frames") for m in getattr(classifier, "members", [classifier])):
        # feature vectors: the first column names files beside the TSV
        texts = [str(Path(data).parent / Path(t.strip()).expanduser()) for t in texts]
    scores = classifier.evaluate(texts, corpus.labels, options.batch_size, options.threshold)
    head = f"accuracy {scores['accuracy']:.2f}  macro-F1 {scores['macro_f1']:.2f}"
    if "micro_f1" in scores:
        head += f"  micro-F1 {scores['micro_f1']:.2f}"
    folders = getattr(classifier, "folders", None)
    folder = f"ensemble of {len(folders)}: {', '.join(str(f) for f in folders)}" if folders else classifier.folder
    return Scored(f"{head}  loss {scores['loss']:.4f}", scores["settings"], folder, classifier.parameters)


def _predict_tagger(models: list, inputs: Inputs, batch_size: int, threshold: float) -> str:
    from mlxseq.pipelines.frame_tagger import FrameTagger, is_frame_tagger
    from mlxseq.pipelines.tagger import SequenceTagger

    if is_frame_tagger(read_config(resolve_folder(models[0]))):  # feature vectors: each input names a file
        paths = inputs.items()
        tags = FrameTagger.load(models[0]).tag_files(paths, batch_size)
        return "".join(f"{path}\t{' '.join(row)}\n" for path, row in zip(paths, tags))
    conllu_in = inputs.input is not None and not inputs.texts and _is_conllu(inputs.input)
    items = read_conllu(inputs.input, None) if conllu_in else inputs.items()
    tagger = SequenceTagger.load(models[0])
    sentences = [s.words for s in items] if conllu_in else [t.split() for t in items]
    tags = tagger.tag(sentences, batch_size)
    if inputs.output_format == "conllu" or (inputs.output_format == "auto" and conllu_in):
        column = tagger.encoder.settings.tag_column or "upos"
        comments = [s.comments for s in items] if conllu_in else [[f"text = {t}"] for t in items]
        return "".join(format_conllu(w, t, column, c) for w, t, c in zip(sentences, tags, comments) if w)
    return "".join(" ".join(f"{w}/{t}" for w, t in zip(words, row)) + "\n" for words, row in zip(sentences, tags))


def _evaluate_tagger(models: list, data: str, options: "EvaluationOptions") -> Scored:
    from mlxseq.pipelines.frame_tagger import FrameTagger, is_frame_tagger
    from mlxseq.pipelines.tagger import SequenceTagger

    if is_frame_tagger(read_config(resolve_folder(models[0]))):  # file<TAB>tags, one tag per frame
        tagger = FrameTagger.load(models[0])
        scores = tagger.evaluate_file(data, options.batch_size)
        head = f"frame accuracy {scores['accuracy']:.2f}" + (
            f"  entity F1 {scores['entity_f1']:.2f} (BIO, exact spans)" if "entity_f1" in scores else "")
        return Scored(f"{head}  loss {scores['loss']:.4f}", scores["settings"], tagger.folder, _parameters(tagger.model))
    tagger = SequenceTagger.load(models[0])
    column = tagger.encoder.settings.tag_column or "upos"
    sentences = read_conllu(data, column)
    scores = tagger.evaluate([s.words for s in sentences], [s.tags for s in sentences], options.batch_size)
    head = f"{column.upper()} accuracy {scores['accuracy']:.2f}"
    if "entity_f1" in scores:
        head += f"  entity F1 {scores['entity_f1']:.2f} (BIO, exact spans)"
    return Scored(f"{head}  loss {scores['loss']:.4f}", scores["settings"], tagger.folder, _parameters(tagger.model))


def _predict_forecaster(models: list, inputs: Inputs, batch_size: int, threshold: float) -> str:
    from mlxseq.pipelines.forecaster import TimeSeriesForecaster

    forecaster = TimeSeriesForecaster.load(models[0])
    path = inputs.input or (inputs.texts[0] if inputs.texts and len(inputs.texts) == 1 else None)
    if path is None:
        raise ValueError("a forecaster reads a CSV file: pass it with --input (or as the one argument)")
    series = read_timeseries(path, forecaster.settings.date_column, forecaster.settings.columns)
    dates, values = forecaster.forecast(series)
    rows = [",".join([forecaster.settings.date_column, *forecaster.settings.columns])]
    rows += [",".join([d, *(f"{v:.6g}" for v in row)]) for d, row in zip(dates, values)]
    return "\n".join(rows) + "\n"


def _evaluate_forecaster(models: list, data: str, options: "EvaluationOptions") -> Scored:
    from mlxseq.pipelines.forecaster import TimeSeriesForecaster

    forecaster = TimeSeriesForecaster.load(models[0])
    series = read_timeseries(data, forecaster.settings.date_column, forecaster.settings.columns)
    scores = forecaster.evaluate(series, options.split, options.batch_size)
    head = f"MSE {scores['mse']:.4f}  MAE {scores['mae']:.4f}"
    return Scored(head, scores["settings"], forecaster.folder, _parameters(forecaster.model))


def _predict_transcriber(models: list, inputs: Inputs, batch_size: int, threshold: float) -> str:
    from mlxseq.pipelines.transcriber import Transcriber

    files = inputs.items()
    if not files:
        raise ValueError("a speech recogniser reads WAV files: pass them as arguments (or one per line with --input)")
    texts = Transcriber.load(models[0]).transcribe(files, batch_size)
    return "".join(f"{f}\t{t}\n" for f, t in zip(files, texts))


def _evaluate_transcriber(models: list, data: str, options: "EvaluationOptions") -> Scored:
    from mlxseq.pipelines.transcriber import Transcriber
    from mlxseq.speech.manifest import read_speech_list

    transcriber = Transcriber.load(models[0])
    items = read_speech_list(data, options.recordings)
    scores = transcriber.evaluate(items, options.batch_size, options.beam_size)
    head = (f"WER {scores['wer']:.2f}%  CER {scores['cer']:.2f}%  (S {scores['substitutions']}, "
            f"D {scores['deletions']}, I {scores['insertions']})  exact {scores['exact']:.2f}%  "
            f"loss {scores['loss']:.4f}")
    return Scored(head, scores["settings"], transcriber.folder, _parameters(transcriber.model))


@dataclass(frozen=True)
class EvaluationOptions:
    """How ``evaluate`` reads and scores: each kind of folder uses the fields that concern it."""

    split: str = "test"  # forecaster: the rows scored
    batch_size: int = 64
    threshold: float = 0.5  # multi-label classifier: a label is predicted above this probability
    header: str = "auto"  # classifier TSV: whether the first line is a header
    recordings: str | None = None  # speech: FSDD recordings that render a digit list
    beam_size: int = 1  # speech: CTC prefix beam search; 1 is greedy

    def __post_init__(self):
        from mlxseq.pipelines.transcriber import Transcriber

        Transcriber.check_beam(self.beam_size)


@dataclass(frozen=True)
class Commands:
    """What ``predict`` and ``evaluate`` do with one ``model_type``."""

    predict: Callable[[list, Inputs, int, float], str]
    evaluate: Callable[[list, str, EvaluationOptions], Scored]


# model_type -> its commands. A new kind of folder registers here.
COMMANDS = {
    "classifier": Commands(_predict_classifier, _evaluate_classifier),
    "tagger": Commands(_predict_tagger, _evaluate_tagger),
    "forecaster": Commands(_predict_forecaster, _evaluate_forecaster),
    "speech_ctc": Commands(_predict_transcriber, _evaluate_transcriber),
}


def predict(model, texts: list[str] | None = None, input: str | None = None, *, output_format: str = "auto",
            batch_size: int = 64, threshold: float = 0.5, lines: list[str] | None = None) -> str:
    """Run a classifier, tagger or forecaster folder over ``texts``, the file ``input`` or ``lines``.

    Args:
        model: a model folder or Hub repo id.
        texts: inputs given directly (texts; a tagger splits them on whitespace).
        input: a file: texts one per line, CoNLL-U (tagger) or a CSV series (forecaster).
        output_format: ``auto`` (CoNLL-U for CoNLL-U input, else pairs), ``text`` or ``conllu`` for a
            tagger; a forecaster writes CSV.
        lines: inputs read elsewhere (standard input), one per line.
    """
    if output_format not in FORMATS:
        raise ValueError(f"output format must be one of {FORMATS}, got {output_format!r}")
    models, kind = _models(model)
    return COMMANDS[kind].predict(models, Inputs(texts, input, lines, output_format), batch_size, threshold)


def _is_conllu(path: str) -> bool:
    name = str(path).lower()
    return name.endswith(".conllu") or name.endswith(".conllu.gz") or name.endswith(".conll")


def evaluate(model, data: str, *, split: str = "test", batch_size: int = 64, threshold: float = 0.5,
             header: str = "auto", recordings: str | None = None, beam_size: int = 1) -> list[str]:
    """Score a classifier, tagger, forecaster or speech folder (or a classifier ensemble) on ``data``;
    lines naming every setting used. The fields of :class:`EvaluationOptions` say which applies to which."""
    options = EvaluationOptions(split, batch_size, threshold, header, recordings, beam_size)  # checked first
    models, kind = _models(model)
    scored = COMMANDS[kind].evaluate(models, data, options)
    return [scored.head, f"data: {data}: {scored.settings}", _signature(scored.folder, scored.parameters)]
