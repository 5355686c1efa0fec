"""Transcribe audio with a ``speech_ctc`` model folder, and score it: word and character error rates.

    transcriber = Transcriber.load("path/or/owner-repo")     # None: the bundled digit recogniser
    transcriber.transcribe(["one.wav", samples])             # -> ["4 0 7", ...]
    transcriber.evaluate(read_speech_list("test.tsv"))       # -> {"wer", "cer", "loss", "settings", ...}

A folder holds the model and ``speech.json`` (:class:`SpeechSettings`: the labels, whether
they are characters or words, and the audio front end). Audio is resampled to the model's
rate, turned into per-utterance normalised log-mel frames, batched by length, and the
frames' label scores decoded greedily (best path) or by CTC prefix beam search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import mlx.core as mx
import numpy as np

from mlxseq.checkpoint import check_sizes, load_with_tokenizer, read_folder_settings, write_folder_settings
from mlxseq.data import pad_batch, pad_frames
from mlxseq.losses import ctc_loss
from mlxseq.pipelines.classifier import length_batches
from mlxseq.scores import error_rates
from mlxseq.speech import ctc_greedy_decode, ctc_prefix_beam_search
from mlxseq.speech.features import LEGACY_FEATURE_FIELDS, FeatureArgs, log_mel_spectrogram, normalize, read_wav, resample
from mlxseq.speech.manifest import SpeechItem

SETTINGS_FILE = "speech.json"
BUNDLED_MODEL = Path(__file__).parents[1] / "bundled" / "fsdd-digits"
BLANK = "<blank>"
MAX_BEAM = 256  # prefix beam search keeps beam_size x labels candidates per frame, in Python


@dataclass
class SpeechSettings:
    """What a recogniser hears and writes (``speech.json``)."""

    labels: list[str]  # label i of the model's output; labels[0] is the blank
    unit: Literal["characters", "words"] = "characters"  # what a label is: transcripts split into these
    features: dict = field(default_factory=lambda: asdict(FeatureArgs()))  # FeatureArgs' fields

    def __post_init__(self):
        if not self.labels or self.labels[0] != BLANK:
            raise ValueError(f"labels must start with the blank {BLANK!r}")
        if self.unit not in ("characters", "words"):
            raise ValueError(f"unit must be characters or words, got {self.unit!r}")
        self.features = {**LEGACY_FEATURE_FIELDS, **self.features}
        FeatureArgs(**self.features)

    @property
    def feature_args(self) -> FeatureArgs:
        return FeatureArgs(**self.features)

    def units(self, transcript: str) -> list[str]:
        """A transcript as the units labels stand for (whitespace normalised)."""
        text = " ".join(transcript.split())
        return text.split() if self.unit == "words" else list(text)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    def encode(self, transcript: str) -> list[int] | None:
        """Label ids of ``transcript``; None if it holds a unit without a label."""
        ids = [self._index.get(unit) for unit in self.units(transcript)]
        return None if None in ids or 0 in ids else ids

    def decode(self, ids: Sequence[int]) -> str:
        return (" " if self.unit == "words" else "").join(self.labels[i] for i in ids if i)

    def save(self, folder) -> None:
        write_folder_settings(folder, SETTINGS_FILE, self)

    @classmethod
    def load(cls, folder) -> SpeechSettings:
        return read_folder_settings(folder, SETTINGS_FILE, cls, "a speech settings file")


def audio_features(samples: np.ndarray, args: FeatureArgs) -> np.ndarray:
    """Normalised log-mel frames ``(frames, n_mels)`` of samples at ``args.sample_rate``."""
    return np.array(normalize(log_mel_spectrogram(samples, args)))


def wav_features(path, args: FeatureArgs) -> np.ndarray:
    """:func:`audio_features` of a WAV file, resampled to ``args.sample_rate`` first."""
    samples, rate = read_wav(path)
    return audio_features(resample(samples, rate, args.sample_rate), args)


class Transcriber:
    """A ``speech_ctc`` model with its labels and audio front end."""

    def __init__(self, model, settings: SpeechSettings, folder: Path | None = None):
        self.model, self.settings, self.folder = model, settings, folder
        self.model.eval()

    @classmethod
    def load(cls, path_or_repo=None, revision: str | None = None) -> Transcriber:
        model, settings, folder = load_with_tokenizer(
            path_or_repo, "speech_ctc", SpeechSettings.load, bundled=BUNDLED_MODEL,
            job="speech recognition", revision=revision,
        )
        check_sizes(folder, {"speech.json labels": (len(settings.labels), model.args.num_classes),
                             "speech.json n_mels": (settings.feature_args.n_mels, model.args.num_features)})
        return cls(model, settings, folder)

    def features(self, audio) -> np.ndarray:
        """Frames of one input: a WAV path, or samples ``(N,)`` at the model's rate."""
        args = self.settings.feature_args
        if isinstance(audio, (str, Path)):
            return wav_features(audio, args)
        return audio_features(np.asarray(audio, np.float32), args)

    def frame_scores(self, features: list[np.ndarray], batch_size: int = 16, transcripts: list[str] | None = None):
        """Log-probabilities ``(T', C)`` per input, in input order, as numpy arrays; with ``transcripts``
        also ``(summed CTC loss, labels)`` over those whose every unit has a label."""
        scores: list[np.ndarray | None] = [None] * len(features)
        total, labels = 0.0, 0
        for indices in length_batches([len(f) for f in features], batch_size):
            frames, lengths = pad_frames([features[i] for i in indices])
            log_probs, out_lengths = self.model(frames, lengths)
            if transcripts is not None:
                targets = [self.settings.encode(transcripts[i]) for i in indices]
                known = [row for row, ids in enumerate(targets) if ids]
                if known:
                    padded, target_lengths = pad_batch([targets[r] for r in known], multiple=1)
                    rows = mx.array(known)
                    loss = ctc_loss(log_probs[rows].transpose(1, 0, 2), padded, out_lengths[rows], target_lengths,
                                    blank=self.model.args.blank_id, reduction="sum", zero_infinity=True)
                    total, labels = total + float(loss), labels + int(target_lengths.sum())
            log_probs, out_lengths = np.array(log_probs), np.array(out_lengths)
            for row, i in enumerate(indices):
                scores[i] = log_probs[row, : out_lengths[row]]
        return scores if transcripts is None else (scores, total, labels)

    @staticmethod
    def check_beam(beam_size: int) -> None:
        if not 1 <= beam_size <= MAX_BEAM:
            raise ValueError(f"beam_size must be in [1, {MAX_BEAM}], got {beam_size}")

    def decode(self, scores: np.ndarray, beam_size: int = 1) -> str:
        """Greedy (``beam_size`` 1) or prefix beam search decoding of one input's frame scores ``(T', C)``."""
        self.check_beam(beam_size)
        blank = self.model.args.blank_id
        if beam_size <= 1:
            return self.settings.decode(ctc_greedy_decode(scores, blank=blank)[0])
        return self.settings.decode(ctc_prefix_beam_search(scores, beam_size=beam_size, blank=blank)[0][0][0])

    def transcribe(self, audio: Sequence, batch_size: int = 16, beam_size: int = 1) -> list[str]:
        """The transcript of each input (WAV paths or sample arrays at the model's rate)."""
        self.check_beam(beam_size)
        scores = self.frame_scores([self.features(a) for a in audio], batch_size)
        return [self.decode(s, beam_size) for s in scores]

    def predict(self, audio: Sequence, batch_size: int = 16, beam_size: int = 1) -> list[str]:
        """The pipelines' common name for :meth:`transcribe`."""
        return self.transcribe(audio, batch_size, beam_size)

    def evaluate_features(self, features: list[np.ndarray], transcripts: list[str], batch_size: int = 16,
                          beam_size: int = 1) -> dict:
        """Error rates (percent), utterances transcribed exactly (percent) and the CTC loss per reference
        label, of inputs already turned into frames."""
        self.check_beam(beam_size)
        scores, total, labels = self.frame_scores(features, batch_size, transcripts)
        hypotheses = [self.decode(s, beam_size) for s in scores]
        rates = error_rates(transcripts, hypotheses)
        exact = sum(" ".join(h.split()) == " ".join(t.split()) for h, t in zip(hypotheses, transcripts))
        return {"loss": total / max(labels, 1), "wer": 100 * rates["wer"], "cer": 100 * rates["cer"],
                "exact": 100 * exact / max(len(transcripts), 1),
                "substitutions": rates["substitutions"], "deletions": rates["deletions"],
                "insertions": rates["insertions"], "hypotheses": hypotheses}

    def evaluate(self, items: list[SpeechItem], batch_size: int = 16, beam_size: int = 1, name: str = "") -> dict:
        """WER and CER (percent) and the CTC loss per label over a speech list's utterances."""
        args = self.settings.feature_args
        features = [audio_features(item.samples(args.sample_rate), args) for item in items]
        scores = self.evaluate_features(features, [item.transcript for item in items], batch_size, beam_size)
        decoding = "greedy" if beam_size <= 1 else f"prefix beam {beam_size}"
        scores["settings"] = (f"{len(items)} utterances{' of ' + name if name else ''}, {decoding} decoding, "
                              f"{self.settings.unit} as labels, WER over whitespace-separated words, CER over "
                              "characters with spaces")
        return scores
