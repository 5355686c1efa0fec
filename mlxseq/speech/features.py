"""Audio in, features out: WAV reading, resampling, log-mel spectrograms in MLX, SpecAugment.

The spectrogram follows librosa's defaults (``librosa.feature.melspectrogram``): frames
centred on ``t * hop_length`` with zero padding of ``n_fft // 2`` on both sides, a periodic
Hann window, the power spectrum ``|rfft|^2``, and Slaney's mel filter bank (the Slaney mel
scale, each filter normalised to unit area). Then ``log(max(mel, floor))``, raised to at least
``max - top_db * ln(10) / 10`` (``librosa.power_to_db``'s ``top_db`` in natural-log units; Whisper's
``max(log_mel, max - 8)`` in log10): digital silence and a -200 dB floor become the same value,
a fixed distance below the utterance's loudest frame.

Shapes: ``samples`` ``(N,)``; features ``(frames, n_mels)`` with
``frames = 1 + N // hop_length``.
"""

from __future__ import annotations

import wave
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import mlx.core as mx
import numpy as np


class AudioError(ValueError):
    """An audio file cannot be read; the message names the file and what is wrong."""


MAX_WAV_BYTES = 1 << 30  # 1 GiB of samples (about 9 hours of 16 kHz 16-bit mono)


def read_wav(path) -> tuple[np.ndarray, int]:
    """``(samples in [-1, 1] as float32 (N,), sample rate)`` of a PCM WAV file (channels averaged)."""
    path = Path(path)
    try:
        with open(path, "rb") as file:
            return read_wav_file(file, str(path))
    except FileNotFoundError:
        raise AudioError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise AudioError(f"{path}: a folder, not a WAV file") from None
    except PermissionError:
        raise AudioError(f"{path}: not readable (permission denied)") from None


def read_wav_file(file, name: str) -> tuple[np.ndarray, int]:
    """:func:`read_wav` of an open binary file (a tar member, bytes in memory); ``name`` names it in errors."""
    try:
        with wave.open(file, "rb") as audio:
            channels, width, rate, count = (audio.getnchannels(), audio.getsampwidth(), audio.getframerate(),
                                            audio.getnframes())
            if count * channels * width > MAX_WAV_BYTES:
                raise AudioError(f"{name}: {count:,} frames of {channels} x {width} bytes is over the "
                                 f"{MAX_WAV_BYTES >> 20} MiB a file may hold here")
            raw = audio.readframes(count)
    except (wave.Error, EOFError) as error:
        raise AudioError(f"{name}: not a PCM WAV file ({error})") from None
    if width not in (1, 2, 3, 4):
        raise AudioError(f"{name}: {8 * width}-bit samples are not supported (8, 16, 24 or 32-bit PCM)")
    if width == 3:  # 24-bit little-endian: widen to 32 bits
        bytes3 = np.frombuffer(raw[: len(raw) // 3 * 3], np.uint8).reshape(-1, 3)
        values = (bytes3[:, 0].astype(np.int32) | bytes3[:, 1].astype(np.int32) << 8
                  | bytes3[:, 2].astype(np.int32) << 16)
        values = np.where(values >= 1 << 23, values - (1 << 24), values) / float(1 << 23)
    elif width == 1:  # 8-bit WAV is unsigned
        values = (np.frombuffer(raw, np.uint8).astype(np.float64) - 128.0) / 128.0
    else:
        dtype = {2: np.int16, 4: np.int32}[width]
        values = np.frombuffer(raw, dtype).astype(np.float64) / float(np.iinfo(dtype).max + 1)
    values = values[: len(values) // channels * channels].reshape(-1, channels).mean(axis=1)
    return values.astype(np.float32), rate


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited resampling by the Fourier method (as ``scipy.signal.resample``)."""
    if from_rate == to_rate or len(samples) == 0:
        return np.asarray(samples, np.float32)
    return _resize(samples, int(round(len(samples) * to_rate / from_rate)))


def change_speed(samples: np.ndarray, factor: float) -> np.ndarray:
    """The recording played ``factor`` times as fast: ``len / factor`` samples, pitch times ``factor``.

    Kaldi's speed perturbation (``sox speed``, Ko et al., 2015): the samples resampled to
    ``rate / factor`` and read at ``rate``.
    """
    if factor == 1.0 or len(samples) == 0:
        return np.asarray(samples, np.float32)
    return _resize(samples, max(1, int(round(len(samples) / factor))))


def _resize(samples: np.ndarray, count: int) -> np.ndarray:
    """``samples`` band-limited to ``count`` samples over the same span (the Fourier method)."""
    spectrum = np.fft.rfft(samples)
    keep = min(len(spectrum), count // 2 + 1)
    resized = np.zeros(count // 2 + 1, dtype=complex)
    resized[:keep] = spectrum[:keep]
    return (np.fft.irfft(resized, n=count) * (count / len(samples))).astype(np.float32)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log_region = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_region, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3))


def mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Slaney-normalised triangular mel filters ``(n_mels, n_fft // 2 + 1)`` (librosa.filters.mel's defaults)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - bins[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    filters = np.maximum(0.0, np.minimum(lower, upper))
    filters *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return filters.astype(np.float32)


@dataclass(frozen=True)
class FeatureArgs:
    """How audio becomes features; stored in a speech model's folder."""

    sample_rate: int = 8000  # audio is resampled to this rate first
    n_fft: int = 256  # frame length in samples (32 ms at 8 kHz)
    hop_length: int = 80  # frame step in samples (10 ms at 8 kHz)
    n_mels: int = 40
    log_floor: float = 1e-10
    top_db: float | None = 80.0  # values more than this many dB below the utterance's peak are raised to it


# Folders written before ``top_db`` existed used no floor relative to the peak.
LEGACY_FEATURE_FIELDS = {"top_db": None}


def log_mel_spectrogram(samples, args: FeatureArgs = FeatureArgs()) -> mx.array:
    """``log(max(mel power spectrogram, floor))`` of ``samples`` ``(N,)`` at ``args.sample_rate``: ``(frames, n_mels)``."""
    x = mx.array(np.asarray(samples, np.float32))
    if x.ndim != 1:
        raise ValueError(f"samples must be one channel (N,), got shape {tuple(x.shape)}")
    pad = args.n_fft // 2
    x = mx.pad(x, (pad, pad))  # centred frames, zero padding as librosa's default
    frames = 1 + (x.shape[0] - args.n_fft) // args.hop_length
    starts = mx.arange(frames)[:, None] * args.hop_length + mx.arange(args.n_fft)[None, :]
    window = mx.array(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(args.n_fft) / args.n_fft), dtype=mx.float32)
    spectrum = mx.fft.rfft(x[starts] * window, axis=-1)  # (frames, n_fft // 2 + 1)
    power = mx.real(spectrum) ** 2 + mx.imag(spectrum) ** 2
    mel = power @ mx.array(mel_filters(args.sample_rate, args.n_fft, args.n_mels)).T  # (frames, n_mels)
    log_mel = mx.log(mx.maximum(mel, args.log_floor))
    if args.top_db is None or log_mel.size == 0:
        return log_mel
    return mx.maximum(log_mel, log_mel.max() - args.top_db * (np.log(10.0) / 10.0))


def normalize(features: mx.array) -> mx.array:
    """Per-utterance normalisation: each mel bin to mean 0 and standard deviation 1 over time."""
    mean = features.mean(axis=0, keepdims=True)
    std = mx.sqrt(((features - mean) ** 2).mean(axis=0, keepdims=True))
    return (features - mean) / mx.maximum(std, 1e-5)


@dataclass(frozen=True)
class Masking:
    """SpecAugment's settings (:func:`spec_augment`), the defaults of every config that masks frames."""

    time_masks: int = 2
    time_width: int = 20  # frames per time mask, at most
    freq_masks: int = 2
    freq_width: int = 8  # features (mel bins) per frequency mask, at most
    time_fraction: float = 1.0  # and at most this share of the example's frames per time mask (the paper's p)

    @classmethod
    def of(cls, data) -> Masking:
        """The settings of a config's ``data`` section, which names them as this class does."""
        return cls(**{f.name: getattr(data, f.name) for f in fields(cls)})

    def apply(self, frames: mx.array, lengths: mx.array) -> mx.array:
        """Mask a padded training batch ``(B, T, F)`` of examples ``lengths`` long: with ``time_fraction``
        below 1 the time masks lie within each example's frames, at 1 they are drawn over all T frames."""
        within = lengths if self.time_fraction < 1 else None
        return spec_augment(frames, lengths=within, **asdict(self))


def spec_augment(features: mx.array, key: mx.array | None = None, *, lengths: mx.array | None = None,
                 freq_masks: int = Masking.freq_masks, freq_width: int = Masking.freq_width,
                 time_masks: int = Masking.time_masks, time_width: int = Masking.time_width,
                 time_fraction: float = Masking.time_fraction) -> mx.array:
    """SpecAugment's masking (Park et al. 2019): ``freq_masks`` bands of up to ``freq_width`` mel bins and
    ``time_masks`` spans of up to ``min(time_width, time_fraction * length)`` frames set to 0 (the mean
    after :func:`normalize`).

    ``features`` is ``(T, F)`` or a batch ``(B, T, F)`` (each example its own masks). With ``lengths``
    ``(B,)`` each example's time masks lie within its own frames and ``length`` is its length; without,
    they are drawn over all ``T`` frames (a padded batch's padding too, as ESPnet and torchaudio draw
    them) and ``length`` is ``T``. ``key`` ``None`` draws from MLX's global random state (as dropout
    does, so training resumes exactly).
    """
    if not 0 <= time_fraction <= 1:
        raise ValueError(f"time_fraction must be between 0 and 1, got {time_fraction}")
    *batch, frames, bins = features.shape
    draws = 2 * (freq_masks + time_masks)
    keys = [None] * draws if key is None else mx.random.split(key, draws)
    keep = mx.ones(features.shape, dtype=mx.bool_)
    if lengths is None:
        span = frames
        time_limit = min(time_width, int(time_fraction * frames))
    else:
        if tuple(lengths.shape) != tuple(batch):
            raise ValueError(f"lengths must have shape {tuple(batch)} (one per example), got {tuple(lengths.shape)}")
        span = lengths.reshape(*batch, 1)  # (..., 1)
        time_limit = mx.minimum(time_width, mx.floor(time_fraction * span)).astype(mx.int32)
    n = 0
    for count, limit, size, extent, axis in ((freq_masks, min(freq_width, bins), bins, bins, -1),
                                             (time_masks, time_limit, frames, span, -2)):
        for _ in range(count):
            k_width, k_start = keys[n], keys[n + 1]
            n += 2
            # w ~ U{0..limit}, start ~ U{0..extent - w}
            if lengths is None:
                w = mx.random.randint(0, limit + 1, (*batch, 1), key=k_width)  # (..., 1)
            else:  # limits per example, drawn as U * (limit + 1): the draws the bundled recogniser trained with
                w = mx.floor(mx.random.uniform(shape=(*batch, 1), key=k_width) * (limit + 1)).astype(mx.int32)
            start = (mx.random.uniform(shape=(*batch, 1), key=k_start) * (extent - w + 1)).astype(mx.int32)
            index = mx.arange(size)
            inside = (index >= start) & (index < start + w)  # (..., size)
            keep = keep & ~(mx.expand_dims(inside, -2) if axis == -1 else mx.expand_dims(inside, -1))
    return mx.where(keep, features, 0.0)
