"""The seq2seq model: padding never matters, training and decoding paths agree, it learns."""


import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest

import mlxseq
from mlxseq.losses import label_smoothed_cross_entropy
from mlxseq.models.seq2seq import ModelArgs, build_model

V = 11
VARIANTS = [
    dict(rnn_type="lstm", attention="general", decoder_style="luong", bridge="dense"),
    dict(rnn_type="gru", attention="additive", decoder_style="bahdanau", bridge="concat"),
    dict(rnn_type="gru", attention="dot", decoder_style="luong", bridge="zeros", input_feed=False),
    dict(rnn_type="rnn", attention="none", decoder_style="luong", bridge="dense", bidirectional=False),
    dict(rnn_type="lstm", attention="bahdanau", decoder_style="luong", encoder_layers=2, decoder_layers=2),
    dict(rnn_type="gru", attention="location", decoder_style="location", max_source_length=7, source_eos=True),
    dict(rnn_type="lstm", attention="general", decoder_style="luong", source_eos=True),
]


def _model(seed=0, **kwargs):
    mx.random.seed(seed)
    model = build_model(ModelArgs(V, V + 2, embed_size=8, hidden_size=12, dropout=0.0, **kwargs))
    model.eval()
    return model


@pytest.mark.parametrize("variant", VARIANTS)
def test_padding_never_changes_a_result(variant):
    model = _model(**variant)
    src = mx.array([[4, 5, 6, 7, 8], [9, 10, 4, 0, 0]])
    lengths = mx.array([5, 3])
    tgt_in = mx.array([[2, 5, 6, 7], [2, 8, 9, 10]])
    batched = model(src, lengths, tgt_in)
    alone = model(src[1:2, :3], lengths[1:2], tgt_in[1:2])
    np.testing.assert_allclose(np.array(batched[1]), np.array(alone[0]), atol=1e-5)
    # padding tokens carry no information either: other pad ids give the same logits
    noisy = model(mx.array([[4, 5, 6, 7, 8], [9, 10, 4, 7, 3]]), lengths, tgt_in)
    np.testing.assert_allclose(np.array(noisy), np.array(batched), atol=1e-6)


# Location attention spans its fixed positions, padding included, as the model it imitates does.
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v["attention"] not in ("none", "location")])
def test_attention_weights_are_zero_on_padding_and_sum_to_one(variant):
    model = _model(**variant)
    state = model.init_state(model.encode(mx.array([[4, 5, 6, 0], [7, 8, 9, 10]]), mx.array([3, 4])))
    _, state = model.step(mx.array([2, 2]), state)
    weights = np.array(state["attention"])
    assert weights[0, 3 + variant.get("source_eos", False)] == 0.0  # the first padded position
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_teacher_forcing_equals_stepping(variant):
    model = _model(**variant)
    src, lengths, tgt_in = mx.array([[4, 5, 6], [7, 8, 0]]), mx.array([3, 2]), mx.array([[2, 4, 9], [2, 6, 6]])
    forced = model(src, lengths, tgt_in)
    state = model.init_state(model.encode(src, lengths))
    for t in range(3):
        logits, state = model.step(tgt_in[:, t], state)
        np.testing.assert_allclose(np.array(logits), np.array(forced[:, t]), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(rnn_type="transformer"), "rnn_type must be one of"),
        (dict(attention="cosine"), "attention must be one of"),
        (dict(bridge="dense", encoder_layers=2, decoder_layers=1), "needs encoder_layers == decoder_layers"),
        (dict(tie_embeddings=True, embed_size=8, hidden_size=12), "tie_embeddings needs embed_size == hidden_size"),
        (dict(hidden_size=13), "even hidden_size"),
        (dict(decoder_style="bahdanau", attention="none"), "needs an attention"),
        (dict(dropout=1.0), "dropout"),
        (dict(attention="location"), "attention must be one of"),
        (dict(decoder_style="location", attention="location"), "max_source_length > 0"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelArgs(V, V, **kwargs)


def test_tied_embeddings_share_the_output_matrix():
    mx.random.seed(0)
    model = build_model(ModelArgs(V, V, embed_size=12, hidden_size=12, tie_embeddings=True))
    assert "output" not in model
    model.eval()
    state = model.init_state(model.encode(mx.array([[4, 5]]), mx.array([2])))
    before, _ = model.step(mx.array([2]), state)
    model.embedding.weight = model.embedding.weight * 2
    after, _ = model.step(mx.array([2]), state)
    assert not mx.allclose(before, after)


def test_a_tiny_model_learns_to_reverse():
    mx.random.seed(1)
    model = build_model(ModelArgs(V, V, embed_size=16, hidden_size=32, rnn_type="gru", attention="additive",
                              decoder_style="bahdanau", dropout=0.0))
    optimizer = optim.Adam(learning_rate=1e-2)

    def loss_fn(model, src, lengths, tgt_in, tgt_out):
        total, count = label_smoothed_cross_entropy(model(src, lengths, tgt_in), tgt_out, pad_id=0)
        return total / count

    step = nn.value_and_grad(model, loss_fn)
    rng = np.random.default_rng(0)
    for _ in range(200):
        src = rng.integers(4, V, (32, 5))
        tgt = src[:, ::-1]
        tgt_in = np.concatenate([np.full((32, 1), 2), tgt], axis=1)
        tgt_out = np.concatenate([tgt, np.full((32, 1), 3)], axis=1)
        loss, grads = step(model, mx.array(src), mx.full((32,), 5), mx.array(tgt_in), mx.array(tgt_out))
        optimizer.update(model, grads)
        mx.eval(model.parameters(), optimizer.state)
    model.eval()
    src = rng.integers(4, V, (16, 5))
    state = model.init_state(model.encode(mx.array(src), mx.full((16,), 5)))
    found = mlxseq.greedy_decode(model, state, bos_id=2, eos_id=3, max_tokens=8)
    correct = sum(h.tokens == list(src[i, ::-1]) for i, h in enumerate(found))
    assert loss.item() < 0.1
    assert correct >= 15


class _RepeatingEveryLeaf:
    """The model as a plain StepModel: beam search repeats every leaf of its state K times."""

    def __init__(self, model):
        self.model = model

    def step(self, tokens, state):
        return self.model.step(tokens, state)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("search", ["beam", "opennmt"])
def test_beams_reading_their_source_s_memory_once_find_what_repeated_memory_finds(variant, search):
    from mlxseq.decoding import beam_search, opennmt_beam_search

    model = _model(seed=3, **variant)
    src = mx.array([[4, 5, 6, 7, 8], [9, 10, 4, 0, 0], [5, 5, 0, 0, 0]])
    lengths = mx.array([5, 3, 2])
    state = model.init_state(model.encode(src, lengths))
    expanded = model.expand_beams(state, 3)
    assert expanded["memory"].shape[0] == 3 and expanded["h"][0].shape[0] == 9  # memory once per source
    decode = beam_search if search == "beam" else opennmt_beam_search
    common = dict(bos_id=2, eos_id=3, beam_size=3, max_tokens=8, n_best=2, attention=lambda s: s["attention"])
    found = decode(model, state, **common)
    expected = decode(_RepeatingEveryLeaf(model), state, **common)
    for ours, theirs in zip(found, expected):
        assert [h.tokens for h in ours] == [h.tokens for h in theirs]
        np.testing.assert_allclose([h.score for h in ours], [h.score for h in theirs], rtol=1e-5)
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a.attention, b.attention, atol=1e-6)
