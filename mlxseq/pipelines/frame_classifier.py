"""Classify sequences of feature vectors: a ``classifier`` folder whose model reads frames, not tokens.

    classifier = FrameClassifier.load("runs/digits/best")        # model, frames.json, normaliser, labels
    classifier.predict(["one.wav", "two.wav"])                    # -> [Prediction(labels=["7"], ...), ...]
    classifier.evaluate(paths, gold_labels)                       # -> {"accuracy", "macro_f1", "loss", ...}

Each input is a file: a WAV (``frames.json`` kind ``audio``: normalised log-mel frames of the
folder's audio settings, :mod:`mlxseq.speech.features`) or an array file (kind ``arrays``:
``.npy``/``.npz``/``.csv`` of ``(frames, features)``, :func:`mlxseq.data.read_frames`). Frames
are standardised per feature with the training frames' mean and deviation (``normaliser.json``),
padded into length-sorted batches, and classified as :class:`TextClassifier` classifies texts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from mlxseq.checkpoint import check_sizes, load_with_tokenizer, read_folder_settings, write_folder_settings
from mlxseq.data import Normaliser, pad_frames, read_frames
from mlxseq.pipelines.classifier import TextClassifier, TextSettings, length_batches
from mlxseq.pipelines.transcriber import wav_features
from mlxseq.speech.features import LEGACY_FEATURE_FIELDS, FeatureArgs

FRAMES_FILE = "frames.json"
FRAME_KINDS = ("audio", "arrays")


@dataclass
class FrameSettings:
    """What the inputs are (``frames.json``): audio through the front end, or arrays of features."""

    kind: Literal["audio", "arrays"] = "arrays"
    audio: dict = field(default_factory=lambda: asdict(FeatureArgs()))  # FeatureArgs' fields, for kind audio

    def __post_init__(self):
        if self.kind not in FRAME_KINDS:
            raise ValueError(f"kind must be one of {FRAME_KINDS}, got {self.kind!r}")
        self.audio = {**LEGACY_FEATURE_FIELDS, **self.audio}
        FeatureArgs(**self.audio)

    def frames(self, path) -> np.ndarray:
        """The ``(frames, features)`` of one input file, before standardisation."""
        return read_frames(path) if self.kind == "arrays" else wav_features(path, FeatureArgs(**self.audio))

    def describe(self, width: int) -> str:
        """What the inputs are, for logs and model cards."""
        if self.kind == "audio":
            return "log-mel frames of WAV files: " + ", ".join(f"{k} {v}" for k, v in self.audio.items())
        return f"arrays of {width} features per frame"

    def save(self, folder) -> None:
        write_folder_settings(folder, FRAMES_FILE, self)

    def save_parts(self, folder, normaliser: Normaliser, settings: TextSettings) -> None:
        """This file, the normaliser and the labels: what a folder of a model over frames holds beside its weights."""
        self.save(folder)
        normaliser.save(folder)
        settings.save(folder)

    @classmethod
    def load(cls, folder) -> FrameSettings:
        return read_folder_settings(folder, FRAMES_FILE, cls, "a frames settings file")


def read_frame_parts(folder):
    """``(FrameSettings, Normaliser, TextSettings)`` of a folder written with :meth:`FrameSettings.save_parts`."""
    return FrameSettings.load(folder), Normaliser.load(folder), TextSettings.load(folder)


class FrameClassifier(TextClassifier):
    """A ``classifier`` model over feature vectors, with its input settings, normaliser and labels."""

    def __init__(self, model, frames: FrameSettings, normaliser: Normaliser, settings: TextSettings,
                 folder: Path | None = None):
        super().__init__(model, None, settings, folder)
        self.frames, self.normaliser = frames, normaliser

    @classmethod
    def load(cls, path_or_repo, revision: str | None = None) -> FrameClassifier:
        model, (frames, normaliser, settings), folder = load_with_tokenizer(
            path_or_repo, "classifier", read_frame_parts, bundled=Path(__file__).parents[1] / "bundled" / "frame-classifier",
            job="classification of feature sequences", revision=revision,
        )
        check_sizes(folder, {"normaliser.json features": (len(normaliser.columns), model.args.num_features),
                             "labels in labels.json": (len(settings.labels), model.args.num_classes)})
        return cls(model, frames, normaliser, settings, folder)

    def standardised(self, path) -> np.ndarray:
        """One input's frames, standardised and cut to the settings' max_length (0: all)."""
        frames = self.normaliser.transform(self.frames.frames(path)).astype(np.float32)
        return frames[: self.settings.max_length] if self.settings.max_length else frames

    def probabilities(self, paths: list[str], batch_size: int = 64) -> np.ndarray:
        """Class probabilities ``(N, C)`` of the input files, in input order."""
        inputs = [self.standardised(p) for p in paths]
        return self.probabilities_of_frames(inputs, batch_size)

    def probabilities_of_frames(self, inputs: list[np.ndarray], batch_size: int = 64) -> np.ndarray:
        result = np.zeros((len(inputs), len(self.settings.labels)), dtype=np.float64)
        for indices in length_batches([len(x) for x in inputs], batch_size):
            frames, lengths = pad_frames([inputs[i] for i in indices])
            result[indices] = np.array(self.model.probabilities(frames, lengths))
        return result


def is_frame_classifier(config: dict) -> bool:
    """Whether a classifier folder's ``config.json`` describes a model over feature vectors."""
    return bool(config.get("num_features"))
