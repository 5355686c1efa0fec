"""Tag every frame of sequences of feature vectors: a ``tagger`` folder whose model reads frames.

    tagger = FrameTagger.load("runs/activity/best")         # model, frames.json, normaliser, tags
    tagger.tag(["walk.npy", "talk.wav"])                    # -> [["still", "still", "walk", ...], ...]
    tagger.evaluate_file("valid.tsv")                       # -> {"accuracy", "loss", ("entity_f1")}

Each input is a file, as for :class:`mlxseq.pipelines.frame_classifier.FrameClassifier`: a WAV
(``frames.json`` kind ``audio``, normalised log-mel frames) or an array of ``(frames, features)``
(kind ``arrays``). Frames are standardised per feature with the training frames' statistics
(``normaliser.json``) and tagged one tag per frame (argmax, or Viterbi with a CRF), as
:class:`mlxseq.pipelines.tagger.SequenceTagger` tags words. Labelled data are TSVs of
``file<TAB>tags``: the tags of every frame, space-separated, the file relative to the TSV.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlxseq.checkpoint import check_sizes, load_with_tokenizer
from mlxseq.data import DataError, Normaliser, pad_frames, read_labelled
from mlxseq.pipelines.classifier import TextSettings, length_batches
from mlxseq.pipelines.frame_classifier import FrameSettings, read_frame_parts
from mlxseq.pipelines.tagger import SequenceTagger
from mlxseq.speech.features import AudioError


def read_frame_tags(path, frames_of, limit: int = 0) -> tuple[list[np.ndarray], list[list[str]]]:
    """``(frames, tags)`` of the examples of a ``file<TAB>tags`` TSV (the first ``limit``; 0: all), each
    file (relative to the TSV) read by ``frames_of``; DataError naming the TSV's line for a file that
    cannot be read or whose frames and tags differ in number."""
    corpus = read_labelled(path, label_separator=" ")
    folder, frames = Path(path).parent, []
    rows = list(zip(corpus.texts, corpus.labels, corpus.line_numbers))[: limit or None]
    for name, tags, line in rows:
        file = Path(name).expanduser()
        try:
            found = frames_of(file if file.is_absolute() else folder / file)
        except AudioError as error:  # DataErrors name the file already
            raise DataError(str(error), path, line) from None
        if len(found) != len(tags):
            raise DataError(f"{name} has {len(found)} frames but {len(tags)} tags (one tag per frame)", path, line)
        frames.append(found)
    return frames, [tags for _, tags, _ in rows]


class FrameTagger(SequenceTagger):
    """A ``tagger`` model over feature vectors, with its input settings, normaliser and tag names."""

    def __init__(self, model, frames: FrameSettings, normaliser: Normaliser, settings: TextSettings,
                 folder: Path | None = None):
        self.model, self.frames, self.normaliser, self.settings, self.folder = model, frames, normaliser, settings, folder
        self.tags = settings.labels
        self.model.eval()

    @classmethod
    def load(cls, path_or_repo, revision: str | None = None) -> FrameTagger:
        model, (frames, normaliser, settings), folder = load_with_tokenizer(
            path_or_repo, "tagger", read_frame_parts, bundled=Path(__file__).parents[1] / "bundled" / "frame-tagger",
            job="tagging of feature sequences", revision=revision,
        )
        check_sizes(folder, {"normaliser.json features": (len(normaliser.columns), model.args.num_features),
                             "labels.json tags": (len(settings.labels), model.args.num_tags)})
        return cls(model, frames, normaliser, settings, folder)

    def standardised(self, path) -> np.ndarray:
        """One input file's frames, standardised per feature."""
        return self.normaliser.transform(self.frames.frames(path)).astype(np.float32)

    def _emissions(self, inputs, batch_size):
        """``(indices, (frames, lengths), emissions (B, T, K))`` per length-sorted batch of standardised frames."""
        for indices in length_batches([len(x) for x in inputs], batch_size):
            frames, lengths = pad_frames([inputs[i] for i in indices])
            yield indices, (frames, lengths), self.model.emissions(frames, lengths)

    def tag_files(self, paths: list[str], batch_size: int = 64) -> list[list[str]]:
        """The tag of every frame of each input file."""
        return self.tag([self.standardised(p) for p in paths], batch_size)

    def predict(self, paths: list[str], batch_size: int = 64) -> list[list[str]]:
        """The pipelines' common name for :meth:`tag_files`."""
        return self.tag_files(paths, batch_size)

    def evaluate_file(self, path, batch_size: int = 64) -> dict:
        """:meth:`evaluate_frames` on the examples of a ``file<TAB>tags`` TSV (see :func:`read_frame_tags`)."""
        inputs, gold = read_frame_tags(path, self.standardised)
        return self.evaluate_frames(inputs, gold, batch_size)

    def evaluate_frames(self, inputs: list[np.ndarray], gold: list[list[str]], batch_size: int = 64) -> dict:
        """Frame accuracy (percent), entity F1 where the tags are BIO, and the loss per frame, of
        standardised frames against their tags."""
        scores = self.evaluate(inputs, gold, batch_size)
        decoding = "Viterbi (CRF)" if self.model.args.crf else "argmax"
        scores["settings"] = f"{sum(len(g) for g in gold)} frames in {len(inputs)} sequences, {decoding}"
        return scores


def is_frame_tagger(config: dict) -> bool:
    """Whether a tagger folder's ``config.json`` describes a model over feature vectors."""
    return bool(config.get("num_features"))
