"""The recurrent language model: carried state equals one long pass; arguments are checked."""

import mlx.core as mx
import numpy as np
import pytest

from mlxseq.models.language_model import LanguageModel, ModelArgs


@pytest.mark.parametrize("rnn_type", ["lstm", "gru", "rnn"])
def test_carrying_state_across_chunks_equals_the_whole_sequence(rnn_type):
    mx.random.seed(0)
    model = LanguageModel(ModelArgs(vocab_size=20, embed_size=8, hidden_size=16, num_layers=2, rnn_type=rnn_type))
    model.eval()
    tokens = mx.random.randint(0, 20, (3, 12))
    whole, final = model(tokens)
    state = None
    pieces = []
    for chunk in (tokens[:, :5], tokens[:, 5:9], tokens[:, 9:]):
        logits, state = model(chunk, state)
        pieces.append(logits)
    np.testing.assert_allclose(np.array(mx.concatenate(pieces, axis=1)), np.array(whole), atol=1e-5)
    for key in final:
        np.testing.assert_allclose(np.array(state[key]), np.array(final[key]), atol=1e-6)
    # stepping token by token (the decoding interface) gives the same logits
    state = model.init_state(3)
    for t in range(12):
        logits, state = model.step(tokens[:, t], state)
        np.testing.assert_allclose(np.array(logits), np.array(whole[:, t]), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(rnn_type="transformer"), "rnn_type"),
        (dict(tie_embeddings=True, embed_size=8, hidden_size=16), "tie_embeddings"),
        (dict(dropout=1.0), "dropout"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelArgs(vocab_size=10, **kwargs)
