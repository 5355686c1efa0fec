"""Speech data files: which audio, and what was said.

A speech list is a UTF-8 TSV whose header line says its kind:

- ``audio<TAB>transcript``: one WAV file per line (a path, relative to the list's folder
  unless absolute) and its transcript;
- ``recordings<TAB>pauses_ms<TAB>...``: a digit list (:mod:`mlxseq.speech.digits`), rendered
  from FSDD recordings given separately.

Audio is read when asked for (:meth:`SpeechItem.samples`), so a list of many hours is cheap
to open.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlxseq.speech.digits import (
    LIST_HEADER,
    SAMPLE_RATE,
    Utterance,
    load_recordings,
    parse_digit_row,
)
from mlxseq.speech.features import AudioError, read_wav, resample

MANIFEST_HEADER = ("audio", "transcript")
MAX_LIST_LINES = 10_000_000


@dataclass(frozen=True)
class SpeechItem:
    """One utterance of a speech list."""

    name: str  # the audio file, or the digit list's line
    transcript: str
    _read: Callable[[], tuple[np.ndarray, int]]

    def samples(self, rate: int) -> np.ndarray:
        """The audio ``(N,)`` as float32 at ``rate`` Hz."""
        samples, found = self._read()
        return resample(samples, found, rate)


def read_speech_list(path, recordings=None) -> list[SpeechItem]:
    """The utterances of a speech list; ``recordings`` (a folder or archive of FSDD recordings, or the
    dict :func:`mlxseq.speech.digits.load_recordings` gives) renders a digit list."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise AudioError(f"{path}: no such speech list") from None
    except (UnicodeDecodeError, IsADirectoryError) as error:
        raise AudioError(f"{path}: not a UTF-8 text file ({type(error).__name__})") from None
    if not lines:
        raise AudioError(f"{path}: empty; expected a header line ({'<TAB>'.join(MANIFEST_HEADER)})")
    if len(lines) > MAX_LIST_LINES:
        raise AudioError(f"{path}: {len(lines):,} lines is over the {MAX_LIST_LINES:,} a list may hold")
    header = tuple(lines[0].split("\t"))
    rows = [(number, line.split("\t")) for number, line in enumerate(lines[1:], start=2) if line.strip()]
    if header == MANIFEST_HEADER:
        return [_audio_item(path, number, fields) for number, fields in rows]
    if header == LIST_HEADER:
        if recordings is None:
            raise AudioError(f"{path}: a digit list is rendered from FSDD recordings; give their folder or archive")
        sources = recordings if isinstance(recordings, dict) else load_recordings(recordings)
        utterances = [parse_digit_row(fields, f"{path}:{number}") for number, fields in rows]
        return digit_items(utterances, sources, [f"{path.name}:{number}" for number, _ in rows])
    raise AudioError(f"{path}:1: expected the header {'<TAB>'.join(MANIFEST_HEADER)} (or a digit list's "
                     f"{'<TAB>'.join(LIST_HEADER)}), got {lines[0][:80]!r}")


def digit_items(utterances: list[Utterance], sources: dict, names: list[str]) -> list[SpeechItem]:
    """Digit utterances as speech items, each rendered from ``sources`` (name -> samples) when read."""
    return [SpeechItem(name, u.transcript, lambda u=u: (u.render(sources), SAMPLE_RATE))
            for u, name in zip(utterances, names)]


def _audio_item(list_path: Path, number: int, fields: list[str]) -> SpeechItem:
    if len(fields) != 2 or not fields[0]:
        raise AudioError(f"{list_path}:{number}: expected audio<TAB>transcript, got {len(fields)} field(s)")
    audio = Path(fields[0]).expanduser()
    audio = audio if audio.is_absolute() else list_path.parent / audio
    return SpeechItem(str(audio), fields[1].strip(), lambda: read_wav(audio))
