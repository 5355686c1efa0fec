"""Recurrent encoders shared by the task models (classifier, tagger, forecaster).

:func:`recurrent_layer` is a word- or step-level mlxseq RNN/GRU/LSTM. The character encoder
spells each word::

    c = char_rnn(char_embedding(chars), char_lengths)     (B * T, C, 2 Hc)  bidirectional
    spelled = [c_{n-1}^fwd ; c_0^bwd]                       (B, T, 2 Hc)      final states of each word

Shapes: B batch, T words, C characters per word, Hc units per direction. A model owns
``char_embedding`` and ``char_rnn`` (those parameter names are part of its folders);
:func:`char_encoder` builds them and :func:`spelled_words` runs them.
"""

import mlx.core as mx
import mlx.nn as nn

from mlxseq import layers
from mlxseq.layers.pooling import final_pool

RNN_TYPES = ("rnn", "gru", "lstm")
RNN_LAYERS = {"rnn": layers.RNN, "gru": layers.GRU, "lstm": layers.LSTM}


def recurrent_layer(rnn_type: str, input_size: int, hidden_size: int, num_layers: int, dropout: float,
                    bidirectional: bool):
    """An mlxseq RNN/GRU/LSTM; dropout between layers only where there are several."""
    return RNN_LAYERS[rnn_type](input_size, hidden_size, num_layers=num_layers,
                                dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional)


def char_encoder(rnn_type: str, char_vocab_size: int, char_embed_size: int, char_hidden_size: int):
    """``(char_embedding, char_rnn)``: one bidirectional layer of ``rnn_type`` over character embeddings."""
    return nn.Embedding(char_vocab_size, char_embed_size), recurrent_layer(rnn_type, char_embed_size, char_hidden_size,
                                                                            1, 0.0, True)


def spelled_words(char_embedding: nn.Module, char_rnn: nn.Module, chars, char_lengths, words_shape) -> mx.array:
    """Final states ``(B, T, 2 Hc)`` of spelling ``chars`` (B, T, C) with ``char_lengths`` (B, T) >= 1.

    ``words_shape`` is (B, T) of the word ids the spellings belong to; other shapes are refused.
    """
    B, T = words_shape
    if chars is None or chars.ndim != 3 or tuple(chars.shape[:2]) != (B, T) or char_lengths is None \
            or tuple(char_lengths.shape) != (B, T):
        got = None if chars is None else tuple(chars.shape)
        got_lengths = None if char_lengths is None else tuple(char_lengths.shape)
        raise ValueError(f"this model spells words: expected chars (B, T, C) and char_lengths (B, T) with B, T = {B}, {T}, "
                         f"got chars {got} and char_lengths {got_lengths}")
    C = chars.shape[2]
    flat_lengths = char_lengths.reshape(B * T)
    outputs, _ = char_rnn(char_embedding(chars.reshape(B * T, C)), lengths=flat_lengths)  # (B * T, C, 2 Hc)
    return final_pool(outputs, flat_lengths, 2).reshape(B, T, -1)
