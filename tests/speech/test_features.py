"""The audio front end against librosa (a test dependency only) and the standard library's wave."""

import wave

import mlx.core as mx
import numpy as np
import pytest

from mlxseq.speech.features import (
    AudioError,
    FeatureArgs,
    change_speed,
    log_mel_spectrogram,
    mel_filters,
    normalize,
    read_wav,
    resample,
    spec_augment,
)

librosa = pytest.importorskip("librosa", reason="librosa is the reference for the mel front end")


@pytest.mark.parametrize("rate, n_fft, n_mels", [(8000, 256, 40), (16000, 400, 80)])
def test_mel_filters_equal_librosas(rate, n_fft, n_mels):
    np.testing.assert_allclose(mel_filters(rate, n_fft, n_mels), librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels),
                               atol=1e-6)


def test_the_log_mel_spectrogram_equals_librosas():
    rng = np.random.default_rng(0)
    t = np.arange(8000 * 1.3) / 8000
    samples = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.1 * rng.standard_normal(t.shape)).astype(np.float32)
    args = FeatureArgs()
    ours = np.array(log_mel_spectrogram(samples, args))
    theirs = librosa.feature.melspectrogram(y=samples, sr=8000, n_fft=256, hop_length=80, n_mels=40, center=True,
                                            pad_mode="constant", power=2.0)
    assert ours.shape == theirs.T.shape == (1 + len(samples) // 80, 40)
    np.testing.assert_allclose(ours, np.log(np.maximum(theirs.T, 1e-10)), atol=2e-4)


def test_the_floor_below_the_peak_equals_librosas_top_db():
    rng = np.random.default_rng(1)
    samples = np.concatenate([np.zeros(4000), 0.3 * rng.standard_normal(8000), np.zeros(3000)]).astype(np.float32)
    mel = librosa.feature.melspectrogram(y=samples, sr=8000, n_fft=256, hop_length=80, n_mels=40, pad_mode="constant")
    for top_db in (80.0, 40.0):
        ours = np.array(log_mel_spectrogram(samples, FeatureArgs(top_db=top_db)))
        theirs = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=top_db).T * (np.log(10) / 10)  # dB -> ln
        np.testing.assert_allclose(ours, theirs, atol=2e-4)
        assert ours.min() == pytest.approx(ours.max() - top_db * np.log(10) / 10, abs=1e-4)
    unbounded = np.array(log_mel_spectrogram(samples, FeatureArgs(top_db=None)))  # silence stays at log(1e-10)
    np.testing.assert_allclose(unbounded, np.log(np.maximum(mel.T, 1e-10)), atol=2e-4)
    assert unbounded.min() < np.log(1e-9)


def test_settings_written_before_top_db_keep_their_features():
    from mlxseq.pipelines.frame_classifier import FrameSettings
    from mlxseq.pipelines.transcriber import SpeechSettings

    old = {"sample_rate": 8000, "n_fft": 256, "hop_length": 80, "n_mels": 40, "log_floor": 1e-10}
    assert SpeechSettings(["<blank>", "a"], "characters", dict(old)).feature_args.top_db is None
    assert FrameSettings("audio", dict(old)).audio["top_db"] is None
    assert SpeechSettings(["<blank>", "a"]).feature_args.top_db == FeatureArgs().top_db == 80.0


def _write_wav(path, samples, rate, width=2, channels=1):
    scale = {1: 127, 2: 32767, 4: 2**31 - 1}[width]
    values = np.round(np.repeat(samples[:, None], channels, axis=1) * scale).astype({1: np.int16, 2: np.int16, 4: np.int32}[width])
    if width == 1:
        data = (values + 128).astype(np.uint8).tobytes()
    else:
        data = values.tobytes()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(data)


@pytest.mark.parametrize("width, channels", [(1, 1), (2, 1), (2, 2), (4, 1)])
def test_wav_files_of_every_common_pcm_width_read_back(tmp_path, width, channels):
    samples = np.sin(np.linspace(0, 20, 1000)).astype(np.float32) * 0.8
    _write_wav(tmp_path / "a.wav", samples, 8000, width, channels)
    read, rate = read_wav(tmp_path / "a.wav")
    assert rate == 8000 and read.shape == (1000,)
    np.testing.assert_allclose(read, samples, atol=2.0 / {1: 127, 2: 32767, 4: 2**31 - 1}[width] + 1e-6)


def test_a_file_that_is_not_wav_is_one_clear_error(tmp_path):
    (tmp_path / "x.wav").write_bytes(b"ID3 this is an mp3")
    with pytest.raises(AudioError, match=r"x.wav: not a PCM WAV file"):
        read_wav(tmp_path / "x.wav")
    with pytest.raises(AudioError, match=r"missing.wav: no such file"):
        read_wav(tmp_path / "missing.wav")
    with pytest.raises(AudioError, match=r"a folder, not a WAV file"):
        read_wav(tmp_path)


def test_resampling_keeps_a_tone_below_the_new_nyquist():
    t = np.arange(16000) / 16000
    tone = np.sin(2 * np.pi * 300 * t).astype(np.float32)
    down = resample(tone, 16000, 8000)
    np.testing.assert_allclose(down, np.sin(2 * np.pi * 300 * np.arange(8000) / 8000), atol=1e-3)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_changing_speed_scales_duration_and_pitch(factor):
    rate = 8000
    tone = np.sin(2 * np.pi * 400 * np.arange(rate) / rate).astype(np.float32)  # 1 s at 400 Hz
    fast = change_speed(tone, factor)
    assert len(fast) == round(rate / factor)
    spectrum = np.abs(np.fft.rfft(fast))
    peak_hz = np.argmax(spectrum) * rate / len(fast)
    assert abs(peak_hz - 400 * factor) < 2.0, peak_hz
    np.testing.assert_array_equal(change_speed(tone, 1.0), tone)


def test_normalisation_and_masking():
    features = mx.array(np.random.default_rng(1).standard_normal((100, 40)).astype(np.float32) * 3 + 5)
    normal = normalize(features)
    np.testing.assert_allclose(np.array(normal.mean(axis=0)), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.array(normal.std(axis=0)), 1.0, atol=1e-4)
    masked = np.array(spec_augment(normal, mx.random.key(3), freq_masks=2, freq_width=5, time_masks=2, time_width=10))
    zero_bins = (masked == 0).all(axis=0).sum()
    zero_frames = (masked == 0).all(axis=1).sum()
    assert 0 < zero_bins <= 10 and 0 < zero_frames <= 20
    unmasked = (masked != 0)
    np.testing.assert_array_equal(masked[unmasked], np.array(normal)[unmasked])


def test_masking_a_batch_gives_each_example_its_own_masks_from_the_global_random_state():
    features = mx.array(np.random.default_rng(2).standard_normal((8, 60, 40)).astype(np.float32))
    mx.random.seed(5)
    masked = np.array(spec_augment(features, time_masks=1, time_width=30, freq_masks=1, freq_width=10))
    mx.random.seed(5)
    again = np.array(spec_augment(features, time_masks=1, time_width=30, freq_masks=1, freq_width=10))
    np.testing.assert_array_equal(masked, again)
    patterns = {tuple((masked[b] == 0).all(axis=1)) + tuple((masked[b] == 0).all(axis=0)) for b in range(8)}
    assert len(patterns) > 4
    kept = masked != 0
    np.testing.assert_array_equal(masked[kept], np.array(features)[kept])


def test_a_wav_header_claiming_gigabytes_is_refused_before_reading(tmp_path):
    import struct

    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, 8000, 16000, 2, 16)
    header = b"RIFF" + struct.pack("<I", 0xFFFFFFF0) + b"WAVE" + fmt + b"data" + struct.pack("<I", 0xFFFFFFF0)
    (tmp_path / "huge.wav").write_bytes(header + b"\x00" * 64)
    with pytest.raises(AudioError, match=r"huge.wav: .* over the 1024 MiB a file may hold"):
        read_wav(tmp_path / "huge.wav")


def test_time_masks_stay_within_each_example_and_its_share_of_frames():
    features = mx.array(np.random.default_rng(4).standard_normal((64, 120, 10)).astype(np.float32) + 10)
    lengths = np.random.default_rng(5).integers(10, 121, 64)
    mx.random.seed(6)
    masked = np.array(spec_augment(features, lengths=mx.array(lengths), freq_masks=0, time_masks=1, time_width=50,
                                   time_fraction=0.2))
    widths = []
    for example, length in zip(masked, lengths):
        zero_frames = np.flatnonzero((example == 0).all(axis=1))
        assert (zero_frames < length).all()  # never in the padding
        assert len(zero_frames) <= int(0.2 * length)  # at most a fifth of the example
        if len(zero_frames):
            assert zero_frames[-1] - zero_frames[0] + 1 == len(zero_frames)  # one span
        widths.append(len(zero_frames) / length)
    assert max(widths) > 0.12  # the limit is reached, not only approached from far below
    # Without lengths every frame is the example's: spans of up to time_width anywhere.
    mx.random.seed(6)
    whole = np.array(spec_augment(features, freq_masks=0, time_masks=1, time_width=50))
    spans = (whole == 0).all(axis=2).sum(axis=1)
    assert spans.max() > 30 and spans.max() <= 50


def test_a_time_fraction_outside_0_to_1_or_lengths_of_another_batch_are_refused():
    features = mx.zeros((2, 50, 8))
    with pytest.raises(ValueError, match="time_fraction must be between 0 and 1, got 1.5"):
        spec_augment(features, lengths=mx.array([50, 20]), time_fraction=1.5)
    with pytest.raises(ValueError, match=r"lengths must have shape \(2,\) \(one per example\), got \(3,\)"):
        spec_augment(features, lengths=mx.array([50, 20, 3]), time_fraction=0.5)
