"""Connected spoken digits made from the Free Spoken Digit Dataset (FSDD).

FSDD holds 3,000 recordings ``{digit}_{speaker}_{index}.wav`` (6 speakers, 50 of each digit
each, 8 kHz mono). Their index decides the split: 0-4 is the dataset's official test split,
5-9 is used here for validation and 10-49 for training, so no recording is in two splits.

An utterance joins 1-7 recordings of one split with pauses between and around them; each
recording is scaled by its own gain, and white noise is added at a signal-to-noise ratio::

    samples = pause_0 + g_1 * rec_1 + pause_1 + ... + g_n * rec_n + pause_n   (silences of pause_k ms)
    samples += noise * rms(samples) * 10 ** (-snr_db / 20)                  (noise ~ N(0, 1), seeded; inf: none)

A fraction of drawn utterances (``clean_fraction``) gets no noise: their pauses are digital
silence, as at the ends of FSDD's own recordings; another (``isolated_fraction``) is one
recording exactly as stored (no pause, gain or noise), as users record a single digit.

Its transcript is the digits, space-separated (``"4 0 7"``). An utterance is a row of a
**digit list** (a TSV with the header ``recordings pauses_ms gains_db snr_db seed transcript``),
so a test set is shipped as names and numbers and rendered from the recordings where they are.
"""

from __future__ import annotations

import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlxseq.speech.features import AudioError, read_wav_file, resample
from mlxseq.system.files import write_text

SAMPLE_RATE = 8000
SPLIT_INDICES = {"test": range(5), "valid": range(5, 10), "train": range(10, 50)}
LIST_HEADER = ("recordings", "pauses_ms", "gains_db", "snr_db", "seed", "transcript")
RECORDING_NAME = re.compile(r"^([0-9])_([A-Za-z]+)_([0-9]+)\.wav$")
MAX_RECORDINGS = 100_000  # a folder or archive with more .wav files than this is not FSDD
MAX_JOINED = 100  # recordings one utterance of a digit list may join


@dataclass(frozen=True)
class SynthesisArgs:
    """How utterances are drawn: digits per utterance, pauses, gains and noise."""

    min_digits: int = 1
    max_digits: int = 7
    pause_ms: tuple[int, int] = (50, 400)  # each pause between recordings, uniform in this range
    edge_pause_ms: tuple[int, int] | None = None  # the pauses before the first and after the last; None: pause_ms
    gain_db: tuple[float, float] = (-6.0, 6.0)  # each recording's gain, uniform
    snr_db: tuple[float, float] = (20.0, 40.0)  # the utterance's signal-to-noise ratio, uniform
    clean_fraction: float = 0.0  # the share of utterances without noise (snr_db inf)
    isolated_fraction: float = 0.0  # the share of utterances that are one recording as stored


@dataclass(frozen=True)
class Utterance:
    """One connected-digit utterance: recordings, the pauses around them, gains, noise."""

    recordings: tuple[str, ...]  # n recording file names
    pauses_ms: tuple[int, ...]  # n + 1 pauses: before, between and after the recordings
    gains_db: tuple[float, ...]  # n gains
    snr_db: float
    seed: int  # of the noise

    @property
    def transcript(self) -> str:
        return " ".join(name[0] for name in self.recordings)

    def render(self, recordings: dict[str, np.ndarray]) -> np.ndarray:
        """The utterance's samples ``(N,)`` at 8 kHz from ``recordings`` (name -> samples)."""
        parts = []
        for k, name in enumerate(self.recordings):
            if name not in recordings:
                raise AudioError(f"{name}: not among the {len(recordings)} recordings given")
            parts += [np.zeros(self.pauses_ms[k] * SAMPLE_RATE // 1000, np.float32),
                      recordings[name] * np.float32(10 ** (self.gains_db[k] / 20))]
        parts.append(np.zeros(self.pauses_ms[-1] * SAMPLE_RATE // 1000, np.float32))
        samples = np.concatenate(parts)
        rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0
        noise = np.random.default_rng(self.seed).standard_normal(len(samples))
        return (samples + noise * rms * 10 ** (-self.snr_db / 20)).astype(np.float32)

    @classmethod
    def isolated(cls, name: str) -> Utterance:
        """One recording as it is: no pause, no gain, no noise."""
        return cls((name,), (0, 0), (0.0,), float("inf"), 0)

    def row(self) -> str:
        return "\t".join([",".join(self.recordings), ",".join(map(str, self.pauses_ms)),
                          ",".join(f"{g:.2f}" for g in self.gains_db), f"{self.snr_db:.2f}", str(self.seed),
                          self.transcript])


def split_of(name: str) -> str:
    """``train``, ``valid`` or ``test``: the split of a recording by its index."""
    found = RECORDING_NAME.match(name)
    if not found:
        raise AudioError(f"{name}: not an FSDD recording name (expected DIGIT_SPEAKER_INDEX.wav)")
    index = int(found.group(3))
    return next((split for split, indices in SPLIT_INDICES.items() if index in indices), "train")


def load_recordings(path) -> dict[str, np.ndarray]:
    """Every FSDD recording under ``path`` (a folder, or a .tar/.tar.gz such as FSDD's), resampled to 8 kHz."""
    path = Path(path)
    found: dict[str, np.ndarray] = {}

    def add(name: str, samples: np.ndarray, rate: int) -> None:
        if RECORDING_NAME.match(name):
            found[name] = resample(samples, rate, SAMPLE_RATE)
            if len(found) > MAX_RECORDINGS:
                raise AudioError(f"{path}: more than {MAX_RECORDINGS:,} recordings; is this FSDD?")

    if path.is_dir():
        for file in sorted(path.glob("*.wav")):
            with open(file, "rb") as audio:
                add(file.name, *read_wav_file(audio, str(file)))
    elif path.is_file():
        try:
            with tarfile.open(path) as archive:
                for member in archive:
                    name = Path(member.name).name
                    if member.isfile() and RECORDING_NAME.match(name):
                        data = archive.extractfile(member).read(member.size)
                        add(name, *read_wav_file(io.BytesIO(data), f"{path}:{member.name}"))
        except (tarfile.TarError, EOFError, OSError) as error:
            raise AudioError(f"{path}: not a folder of recordings or a readable tar archive ({error})") from None
    else:
        raise AudioError(f"{path}: no such folder or archive of FSDD recordings")
    if not found:
        raise AudioError(f"{path}: holds no FSDD recordings (DIGIT_SPEAKER_INDEX.wav)")
    return found


def sample_utterances(names, count: int, seed: int, args: SynthesisArgs = SynthesisArgs()) -> list[Utterance]:
    """``count`` utterances drawn (seeded) from the recordings ``names``."""
    names = sorted(names)
    if not names:
        raise ValueError("no recordings to draw utterances from")
    if not 1 <= args.min_digits <= args.max_digits:
        raise ValueError(f"need 1 <= min_digits <= max_digits, got {args.min_digits} and {args.max_digits}")
    rng = np.random.default_rng(seed)
    utterances = []
    for _ in range(count):
        n = int(rng.integers(args.min_digits, args.max_digits + 1))
        chosen = tuple(names[i] for i in rng.integers(0, len(names), n))
        pauses = [int(p) for p in rng.integers(args.pause_ms[0], args.pause_ms[1] + 1, n + 1)]
        gains = tuple(round(float(g), 2) for g in rng.uniform(*args.gain_db, n))
        snr = round(float(rng.uniform(*args.snr_db)), 2)
        seed = int(rng.integers(0, 2**31))
        # Draws only for what is asked: default arguments give the lists they always gave.
        if args.edge_pause_ms is not None:
            pauses[0], pauses[-1] = (int(p) for p in rng.integers(args.edge_pause_ms[0], args.edge_pause_ms[1] + 1, 2))
        if args.clean_fraction > 0 and rng.uniform() < args.clean_fraction:
            snr = float("inf")
        if args.isolated_fraction > 0 and rng.uniform() < args.isolated_fraction:
            utterances.append(Utterance.isolated(chosen[0]))
            continue
        utterances.append(Utterance(chosen, tuple(pauses), gains, snr, seed))
    return utterances


def write_digit_list(path, utterances: list[Utterance]) -> None:
    """Write ``utterances`` as a digit list (atomically)."""
    write_text(path, "\t".join(LIST_HEADER) + "\n" + "".join(u.row() + "\n" for u in utterances))


def parse_digit_row(fields: list[str], where: str) -> Utterance:
    """An :class:`Utterance` from the fields of a digit list's row; AudioError naming ``where`` if malformed."""
    if len(fields) != len(LIST_HEADER):
        raise AudioError(f"{where}: expected {len(LIST_HEADER)} tab-separated fields ({' '.join(LIST_HEADER)}), "
                         f"got {len(fields)}")
    try:
        names = tuple(fields[0].split(","))
        utterance = Utterance(names, tuple(int(p) for p in fields[1].split(",")),
                              tuple(float(g) for g in fields[2].split(",")), float(fields[3]), int(fields[4]))
    except ValueError as error:
        raise AudioError(f"{where}: {error}") from None
    if len(names) > MAX_JOINED:
        raise AudioError(f"{where}: {len(names)} recordings in one utterance; at most {MAX_JOINED}")
    for name in names:
        split_of(name)
    if len(utterance.pauses_ms) != len(names) + 1 or len(utterance.gains_db) != len(names):
        raise AudioError(f"{where}: {len(names)} recordings need {len(names) + 1} pauses and {len(names)} gains")
    if not all(0 <= p <= 10_000 for p in utterance.pauses_ms) or not all(abs(g) <= 60 for g in utterance.gains_db):
        raise AudioError(f"{where}: pauses must be 0-10000 ms and gains within +-60 dB")
    if not (utterance.snr_db >= 0):  # also refuses nan; inf means no noise
        raise AudioError(f"{where}: snr_db must be >= 0 (inf: no noise), got {fields[3]}")
    if utterance.transcript != fields[5]:
        raise AudioError(f"{where}: transcript {fields[5]!r} does not match the recordings ({utterance.transcript!r})")
    return utterance
