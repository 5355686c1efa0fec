"""A stand-in for FSDD in tests: each digit a two-tone sound of its own, in WAV files named as FSDD's."""

import tarfile
import wave
from pathlib import Path

import numpy as np

RATE = 8000
SPEAKERS = ("anna", "bert")


# Each digit is two tones at once, as a telephone keypad's DTMF digits are: a low and a high one.
LOW_HZ = (697.0, 770.0, 852.0, 941.0)
HIGH_HZ = (1209.0, 1336.0, 1477.0)


def tone(digit: int, speaker: int, index: int) -> np.ndarray:
    """A short two-tone sound saying ``digit``; speaker and index vary its pitch, length and balance a
    little, as voices and takes do (the same spread in every split)."""
    variation = np.random.default_rng([digit, speaker, index])
    seconds = variation.uniform(0.12, 0.18)
    shift = variation.uniform(0.97, 1.03)
    low, high = LOW_HZ[digit % 4] * shift, HIGH_HZ[digit // 4] * shift
    t = np.arange(int(RATE * seconds)) / RATE
    envelope = np.sin(np.pi * t / seconds)
    balance = variation.uniform(0.4, 0.6)
    return (0.5 * envelope * (balance * np.sin(2 * np.pi * low * t) + (1 - balance) * np.sin(2 * np.pi * high * t))
            ).astype(np.float32)


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
