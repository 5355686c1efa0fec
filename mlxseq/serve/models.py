"""The model folders a server holds, each loaded as the pipeline of its ``model_type``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import mlx.core as mx

from mlxseq.checkpoint import ModelFolderError, read_config, resolve_folder


def _translator(folder):
    from mlxseq.pipelines.translator import Translator

    return Translator.load(folder)


def _generator(folder):
    from mlxseq.pipelines.generator import Generator

    return Generator.load(folder)


def _classifier(folder):
    from mlxseq.pipelines.classifier import TextClassifier

    return TextClassifier.load(folder)


def _tagger(folder):
    from mlxseq.pipelines.tagger import SequenceTagger

    return SequenceTagger.load(folder)


def _forecaster(folder):
    from mlxseq.pipelines.forecaster import TimeSeriesForecaster

    return TimeSeriesForecaster.load(folder)


# model_type -> (task, endpoint, loader). A new kind of folder is served once it is listed here
# and its task has a handler in mlxseq.serve.handlers.
PIPELINES: dict[str, tuple[str, str, Callable[[Any], Any]]] = {
    "seq2seq": ("translation", "/v1/translate", _translator),
    "lm": ("generation", "/v1/completions", _generator),
    "classifier": ("classification", "/v1/predict", _classifier),
    "tagger": ("tagging", "/v1/predict", _tagger),
    "forecaster": ("forecasting", "/v1/predict", _forecaster),
}


@dataclass
class ServedModel:
    id: str  # what requests name it by: the folder's name or the Hub repo id
    task: str
    model_type: str
    endpoint: str
    pipeline: Any  # Translator, Generator, TextClassifier, SequenceTagger or TimeSeriesForecaster

    def describe(self) -> dict:
        return {"id": self.id, "object": "model", "task": self.task, "model_type": self.model_type,
                "endpoint": self.endpoint, "owned_by": "mlxseq"}


def load_models(paths_or_repos: list[str | None]) -> list[ServedModel]:
    """Load each folder (None: the bundled translator) as its pipeline; ids must be distinct."""
    served, seen = [], set()
    for given in paths_or_repos or [None]:
        folder = resolve_folder(given) if given is not None else None
        if folder is None:
            from mlxseq.pipelines.translator import BUNDLED_MODEL

            folder, name = BUNDLED_MODEL, BUNDLED_MODEL.name
        else:
            name = Path(str(given)).name if Path(str(given)).exists() else str(given)
        model_type = read_config(folder)["model_type"]
        if model_type not in PIPELINES:
            raise ModelFolderError(f"{given}: a {model_type!r} folder cannot be served (served: {', '.join(PIPELINES)})")
        if name in seen:
            raise ModelFolderError(f"two models are named {name!r}; rename one folder")
        seen.add(name)
        task, endpoint, load = PIPELINES[model_type]
        pipeline = load(folder)
        # Loading is lazy and MLX's streams are per thread: read the weights here, not on the worker.
        mx.eval(pipeline.model.parameters())
        served.append(ServedModel(name, task, model_type, endpoint, pipeline))
    return served
