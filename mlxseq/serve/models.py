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
    """Load each folder (None: the bundled translator) as its pipeline. A model's id is its folder's
    name (``parent/name`` where two names collide, as ``runs/a/best`` and ``runs/b/best``) or its Hub id."""
    found = []
    for given in paths_or_repos or [None]:
        if given is None:
            from mlxseq.pipelines.translator import BUNDLED_MODEL

            folder = BUNDLED_MODEL
        else:
            folder = resolve_folder(given)
        local = given is None or Path(str(given)).exists()
        names = (folder.name, f"{folder.parent.name}/{folder.name}") if local else (str(given), str(given))
        model_type = read_config(folder)["model_type"]
        if model_type not in PIPELINES:
            raise ModelFolderError(f"{given}: a {model_type!r} folder cannot be served (served: {', '.join(PIPELINES)})")
        found.append((folder, names, model_type))
    short = [names[0] for _, names, _ in found]
    ids = [names[0] if short.count(names[0]) == 1 else names[1] for _, names, _ in found]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise ModelFolderError(f"two models are named {duplicated[0]!r}; serve each folder once")
    served = []
    for (folder, _, model_type), name in zip(found, ids):
        task, endpoint, load = PIPELINES[model_type]
        pipeline = load(folder)
        # Loading is lazy and MLX's streams are per thread: read the weights here, not on the worker.
        mx.eval(pipeline.model.parameters())
        served.append(ServedModel(name, task, model_type, endpoint, pipeline))
    return served
