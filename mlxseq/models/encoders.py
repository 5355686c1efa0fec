"""Recurrent encoders shared by the task models (classifier, tagger, forecaster).

:func:`recurrent_layer` is a word- or step-level mlxseq RNN/GRU/LSTM. The character encoder
spells each word::

    c = char_rnn(char_embedding(chars), char_lengths)     (U, C, 2 Hc)  bidirectional, once per
                                                                          distinct spelling of the batch
    spelled = [c_{n-1}^fwd ; c_0^bwd][spelling_ids]         (B, T, 2 Hc)  final states, gathered to each word

Shapes: B batch, T words, U distinct spellings, C characters per word, Hc units per direction. A model owns
``char_embedding`` and ``char_rnn`` (those parameter names are part of its folders);
:func:`char_encoder` builds them and :func:`spelled_words` runs them.
"""

import mlx.core as mx
import mlx.nn as nn

from mlxseq import layers
from mlxseq.layers.pooling import final_pool

RNN_TYPES = layers.RNN_TYPES


def recurrent_layer(rnn_type: str, input_size: int, hidden_size: int, num_layers: int, dropout: float,
                    bidirectional: bool):
    """An mlxseq RNN/GRU/LSTM; dropout between layers only where there are several."""
    return layers.RECURRENT_LAYERS[rnn_type](input_size, hidden_size, num_layers=num_layers,
                                dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional)


def char_encoder(rnn_type: str, char_vocab_size: int, char_embed_size: int, char_hidden_size: int):
    """``(char_embedding, char_rnn)``: one bidirectional layer of ``rnn_type`` over character embeddings."""
    return nn.Embedding(char_vocab_size, char_embed_size), recurrent_layer(rnn_type, char_embed_size, char_hidden_size,
                                                                            1, 0.0, True)


def spelled_words(char_embedding: nn.Module, char_rnn: nn.Module, chars, char_lengths, spelling_ids,
                  words_shape) -> mx.array:
    """Final states ``(B, T, 2 Hc)`` of each word's spelling.

    ``chars`` (U, C) and ``char_lengths`` (U,) are a batch's distinct spellings and
    ``spelling_ids`` (B, T) the row of each word (:func:`mlxseq.data.batch_spellings`);
    ``words_shape`` is (B, T) of the word ids they belong to. Other shapes are refused.
    """
    B, T = words_shape
    if chars is None or char_lengths is None or spelling_ids is None or chars.ndim != 2 \
            or tuple(char_lengths.shape) != chars.shape[:1] or tuple(spelling_ids.shape) != (B, T):
        got = [None if a is None else tuple(a.shape) for a in (chars, char_lengths, spelling_ids)]
        raise ValueError(f"this model spells words: expected chars (U, C), char_lengths (U,) and spelling_ids (B, T) "
                         f"with B, T = {B}, {T}, got shapes {got[0]}, {got[1]} and {got[2]}")
    outputs, _ = char_rnn(char_embedding(chars), lengths=char_lengths)  # (U, C, 2 Hc)
    return mx.take(final_pool(outputs, char_lengths, 2), spelling_ids, axis=0)  # (U, 2 Hc) -> (B, T, 2 Hc)
