"""A stand-in for FSDD in tests: each digit a tone of its own pitch, in WAV files named as FSDD's."""

import tarfile
import wave
from pathlib import Path

import numpy as np

RATE = 8000
SPEAKERS = ("anna", "bert")


def tone(digit: int, speaker: int, index: int, seconds: float = 0.12) -> np.ndarray:
    """A short tone: its pitch says the digit, speaker and index shift it a little."""
    t = np.arange(int(RATE * seconds)) / RATE
    pitch = 300.0 + 250.0 * digit + 15.0 * speaker + 3.0 * index
    envelope = np.sin(np.pi * t / seconds)
    return (0.5 * envelope * np.sin(2 * np.pi * pitch * t)).astype(np.float32)


def write_wav(path, samples: np.ndarray, rate: int = RATE) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.round(np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes())


def make_recordings(folder, indices=range(0, 50, 4)) -> Path:
    """``folder/recordings/{digit}_{speaker}_{index}.wav`` for every digit, both speakers and ``indices``."""
    recordings = Path(folder) / "recordings"
    recordings.mkdir(parents=True, exist_ok=True)
    for digit in range(10):
        for s, speaker in enumerate(SPEAKERS):
            for index in indices:
                write_wav(recordings / f"{digit}_{speaker}_{index}.wav", tone(digit, s, index))
    return recordings


def make_archive(folder) -> Path:
    """The recordings packed as FSDD's recordings.tar.gz (members under recordings/)."""
    recordings = make_recordings(folder)
    archive = Path(folder) / "recordings.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(recordings, arcname="recordings")
    return archive
