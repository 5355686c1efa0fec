"""model_type speech_ctc: shapes, lengths through the front end, and learning a toy transcription with CTC."""

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest

import mlxseq
from mlxseq.checkpoint import save_model
from mlxseq.losses import ctc_loss
from mlxseq.models.speech_ctc import ModelArgs, build_model
from mlxseq.speech import ctc_greedy_decode

F, LABELS = 8, 4  # features per frame; labels 1..4, blank 0


def toy_utterances(rng, count):
    """Each label is a noisy prototype frame held 2-4 frames, with 0-2 silent frames between labels."""
    prototypes = np.eye(F, dtype=np.float32)[1 : LABELS + 1] * 3
    batch, targets = [], []
    for _ in range(count):
        labels = rng.integers(1, LABELS + 1, rng.integers(2, 5)).tolist()
        frames = []
        for label in labels:
            frames += [np.zeros(F, np.float32)] * int(rng.integers(1, 3))
            frames += [prototypes[label - 1] + rng.normal(0, 0.3, F).astype(np.float32)] * int(rng.integers(2, 5))
        frames += [np.zeros(F, np.float32)]
        batch.append(np.stack(frames))
        targets.append(labels)
    T, S = max(len(x) for x in batch), max(len(t) for t in targets)
    features = np.zeros((count, T, F), np.float32)
    padded = np.zeros((count, S), np.int32)
    for i, (x, t) in enumerate(zip(batch, targets)):
        features[i, : len(x)], padded[i, : len(t)] = x, t
    return features, np.array([len(x) for x in batch]), padded, np.array([len(t) for t in targets]), targets


@pytest.mark.parametrize("conv", [0, 16])
def test_output_lengths_follow_the_front_end(conv):
    model = build_model(ModelArgs(F, LABELS + 1, conv_channels=conv, hidden_size=8, num_layers=2))
    log_probs, lengths = model(mx.zeros((2, 9, F)), mx.array([9, 4]))
    expected = [5, 2] if conv else [9, 4]
    assert log_probs.shape == (2, max(expected), LABELS + 1) and lengths.tolist() == expected
    np.testing.assert_allclose(np.array(mx.exp(log_probs).sum(axis=-1)), 1.0, atol=1e-5)


@pytest.mark.parametrize("kernel, stride", [(3, 3), (5, 4), (7, 4), (1, 1)])
def test_the_convolution_sees_every_frame_and_its_lengths_match_its_output(kernel, stride):
    model = build_model(ModelArgs(F, LABELS + 1, conv_channels=4, conv_stride=stride, conv_kernel=kernel,
                                  hidden_size=4, num_layers=1))
    for length in range(1, 30):
        x = mx.zeros((1, length, F))
        assert model.conv(x).shape[1] == model.output_lengths(mx.array([length])).item() == -(-length // stride)
    frames = mx.zeros((1, 24, F))
    seen = mx.abs(mx.grad(lambda x: model.conv(x).sum())(frames)).sum(axis=-1)[0] > 0  # frames reaching an output
    last = (model.conv(frames).shape[1] - 1) * stride + kernel // 2  # the last output window's end
    assert seen[: last + 1].all().item() and not seen[last + 1 :].any().item()
    assert 24 - 1 - last < stride  # at most the final stride - 1 frames fall after the last window
    with pytest.raises(ValueError, match="conv_kernel must be odd"):
        ModelArgs(F, LABELS + 1, conv_channels=4, conv_kernel=4)


def test_a_tiny_recogniser_learns_to_transcribe_with_ctc(tmp_path):
    rng = np.random.default_rng(0)
    mx.random.seed(0)
    args = ModelArgs(F, LABELS + 1, hidden_size=24, num_layers=2, dropout=0.0)
    model = build_model(args)
    optimizer = optim.Adam(learning_rate=1e-2)

    def loss_fn(model, features, lengths, targets, target_lengths):
        log_probs, out_lengths = model(features, lengths)
        return ctc_loss(log_probs.transpose(1, 0, 2), targets, out_lengths, target_lengths)

    step = nn.value_and_grad(model, loss_fn)
    for _ in range(200):
        features, lengths, targets, target_lengths, _ = toy_utterances(rng, 16)
        loss, grads = step(model, mx.array(features), mx.array(lengths), mx.array(targets), mx.array(target_lengths))
        optimizer.update(model, grads)
        mx.eval(model.parameters(), optimizer.state)
    save_model(tmp_path / "asr", model, "speech_ctc", args)
    loaded = mlxseq.load(tmp_path / "asr")
    features, lengths, _, _, truth = toy_utterances(np.random.default_rng(99), 50)
    log_probs, out_lengths = loaded(mx.array(features), mx.array(lengths))
    decoded = ctc_greedy_decode(np.array(log_probs).transpose(1, 0, 2), np.array(out_lengths))
    exact = sum(d == t for d, t in zip(decoded, truth))
    assert exact >= 45, (exact, decoded[:5], truth[:5])
