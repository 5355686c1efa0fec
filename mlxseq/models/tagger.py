"""``model_type: tagger``: one tag per input word (aligned many-to-many), softmax or CRF.

    1. w = embedding(words)                                (B, T, E)   <unk> for rare words
       or, for sequences of feature vectors x (B, T, F) (num_features = F > 0: audio frames,
       sensor readings; one tag per frame), w = W_x x + b_x
    2. c = char_rnn(char_embedding(chars), char_lengths)   (B, T, 2 Hc) final states of a
                                                                       bidirectional pass over
                                                                       each word's characters
                                                                       (models/encoders.py)
    3. x = dropout([w; c])                                 (B, T, E + 2 Hc)
    4. h = rnn(x, lengths)                                 (B, T, dirs * H)
    5. emissions = W dropout(h) + b                        (B, T, K)
    6. tags = argmax_k emissions (softmax), or Viterbi over emissions + transitions (CRF)

Step 2 runs only with a character vocabulary (``char_vocab_size > 0``): it spells
out words the word embedding knows little about. ``word_dropout`` replaces word ids
by ``<unk>`` in training so that the model learns to use step 2 for rare words.
Shapes: B batch, T words, K tags.
"""

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlxseq.layers.crf import CRF
from mlxseq.models.encoders import RNN_TYPES, char_encoder, recurrent_layer, spelled_words


@dataclass
class ModelArgs:
    vocab_size: int
    num_tags: int
    char_vocab_size: int = 0  # characters of the character encoder; 0: no character encoder
    embed_size: int = 100
    char_embed_size: int = 32
    char_hidden_size: int = 64  # per direction of the character encoder
    hidden_size: int = 200  # units per direction of the word-level encoder
    num_layers: int = 2
    rnn_type: str = "lstm"  # rnn (tanh), gru or lstm, for both encoders
    bidirectional: bool = True
    dropout: float = 0.33  # on the word inputs, between layers and before the head, in training only
    word_dropout: float = 0.0  # training: a word id becomes <unk> with this probability
    crf: bool = False  # a linear-chain CRF over the emissions (Viterbi decoding) instead of softmax
    pad_id: int = 0
    unk_id: int = 1
    num_features: int = 0  # > 0: inputs are (B, T, num_features) feature vectors, not word ids (vocab_size unused)

    def __post_init__(self):
        checks = [
            (self.rnn_type in RNN_TYPES, f"rnn_type must be one of {RNN_TYPES}, got {self.rnn_type!r}"),
            (min(self.vocab_size, self.num_tags, self.embed_size, self.hidden_size, self.num_layers) >= 1,
             "vocab_size, num_tags, embed_size, hidden_size and num_layers must be >= 1"),
            (self.char_vocab_size >= 0, f"char_vocab_size must be >= 0, got {self.char_vocab_size}"),
            (0 <= self.dropout < 1 and 0 <= self.word_dropout < 1, "dropout and word_dropout must be in [0, 1)"),
            (self.num_features >= 0 and not (self.num_features and self.char_vocab_size),
             "num_features must be >= 0, and feature vectors are not spelled (char_vocab_size 0)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


class Tagger(nn.Module):
    """Word (and character) encoders, a tag head and optionally a CRF; see the module docstring."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        dirs = 2 if args.bidirectional else 1
        if args.num_features:
            self.projection = nn.Linear(args.num_features, args.embed_size)
        else:
            self.embedding = nn.Embedding(args.vocab_size, args.embed_size)
        features = args.embed_size
        if args.char_vocab_size:
            self.char_embedding, self.char_rnn = char_encoder(args.rnn_type, args.char_vocab_size, args.char_embed_size,
                                                              args.char_hidden_size)
            features += 2 * args.char_hidden_size
        self.dropout = nn.Dropout(args.dropout)
        self.rnn = recurrent_layer(args.rnn_type, features, args.hidden_size, args.num_layers, args.dropout,
                                   args.bidirectional)
        self.head = nn.Linear(dirs * args.hidden_size, args.num_tags)
        if args.crf:
            self.crf = CRF(args.num_tags)

    def emissions(self, words: mx.array, lengths: mx.array, chars: mx.array | None = None,
                  char_lengths: mx.array | None = None, spelling_ids: mx.array | None = None) -> mx.array:
        """Tag scores (B, T, K) of ``words`` (B, T) (feature vectors (B, T, F) with num_features); a model
        with a character encoder also reads the batch's distinct spellings ``chars`` (U, C), ``char_lengths``
        (U,) and each word's row of them, ``spelling_ids`` (B, T) (see :func:`mlxseq.data.batch_spellings`)."""
        rank, what = (3, "feature vectors (B, T, F)") if self.args.num_features else (2, "words (B, T)")
        if words.ndim != rank or (self.args.num_features and words.shape[-1] != self.args.num_features):
            raise ValueError(f"expected {what}{f' with F={self.args.num_features}' if self.args.num_features else ''}, "
                             f"got shape {tuple(words.shape)}")
        B, T = words.shape[:2]
        if tuple(lengths.shape) != (B,):
            raise ValueError(f"expected lengths of shape (B,) = ({B},), got shape {tuple(lengths.shape)}")
        if self.args.num_features:
            x = self.projection(words)  # (B, T, E)
        else:
            if self.training and self.args.word_dropout > 0:
                drop = mx.random.bernoulli(self.args.word_dropout, words.shape)
                words = mx.where(drop, self.args.unk_id, words)
            x = self.embedding(words)  # (B, T, E)
        if self.args.char_vocab_size:
            x = mx.concatenate([x, spelled_words(self.char_embedding, self.char_rnn, chars, char_lengths, spelling_ids, (B, T))], axis=-1)
        outputs, _ = self.rnn(self.dropout(x), lengths=lengths)  # (B, T, dirs * H)
        return self.head(self.dropout(outputs))

    def __call__(self, words, lengths, chars=None, char_lengths=None, spelling_ids=None) -> mx.array:
        return self.emissions(words, lengths, chars, char_lengths, spelling_ids)

    def decode(self, words, lengths, chars=None, char_lengths=None, spelling_ids=None) -> list[list[int]]:
        """The best tag ids of each sentence (``lengths[b]`` of them): argmax, or Viterbi with a CRF."""
        emissions = self.emissions(words, lengths, chars, char_lengths, spelling_ids)
        if self.args.crf:
            return self.crf.decode(emissions, lengths)[0]
        best = np.array(mx.argmax(emissions, axis=-1))
        return [best[b, :n].tolist() for b, n in enumerate(np.array(lengths).tolist())]


def build_model(args: ModelArgs) -> Tagger:
    return Tagger(args)
