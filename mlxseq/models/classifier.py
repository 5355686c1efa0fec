"""``model_type: classifier``: many-to-one text classification (multi-class or multi-label).

    1. e = dropout(embedding(tokens))                  (B, T, E)  words, subwords or characters
                                                                  (training: each token becomes
                                                                  <unk> with prob. word_dropout)
       or, for sequences of feature vectors x (B, T, F) (num_features = F > 0: audio frames,
       sensor readings, video features):
       e = dropout(W_in x + b_in)                      (B, T, E)
       with a character encoder (char_vocab_size > 0), each word is also spelled:
       e = dropout([embedding(tokens); char_rnn(chars)])  (B, T, E + 2 Hc)  see models/encoders.py
    2. h = rnn(e, lengths)                             (B, T, dirs * H)  zeros past each length
    3. p = pooling(h, lengths)                         (B, dirs * H)  final states, mean, max or
                                                                      attention over valid steps only
    4. logits = W dropout(p) + b                       (B, C)

Multi-class training uses softmax cross-entropy; multi-label (``multi_label``) one
sigmoid per class. Shapes: B batch, T tokens, E embedding, H hidden, C classes, Hc the
character encoder's units per direction. Spelling gives a word the training data never
had (an ``<unk>`` to the embedding) the features of its characters: "warmly" can read
like "warm" and "-ly".

Adversarial training (``training.adversarial = eps > 0``, :mod:`mlxseq.training.adversarial`;
Miyato et al. 2017, "Adversarial Training Methods for Semi-Supervised Text Classification"):
each example's loss is also taken at the embeddings moved by eps along the gradient of that
loss, normalised per example::

    g = d loss(e) / d e                               (B, T, E)  with the weights held fixed
                                                                (E + 2 Hc with a character encoder)
    r = eps * g / ||g||_2                             norm over each example's (T, E)
                                                      (eps * sqrt(length) with training.adversarial_per_token)
    loss_train = loss(e) + loss(e + r)                r is a constant: no gradient through it

:meth:`Classifier.embed` and :meth:`Classifier.classify` split ``__call__`` at ``e`` for it
(see :func:`mlxseq.tasks.classification.make_loss`).

Span supervision (``data.nested_spans``): :meth:`Classifier.classify_spans` pools spans of a
text (phrases inside a sentence) from the text's states and classifies each with the same head::

    p_s = pooling(h[start_s:end_s])                   (B, S, dirs * H)  the states saw the whole text
    logits_s = W dropout(p_s) + b                     (B, S, C)
"""

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from mlxseq.layers.pooling import POOLINGS, Pooling
from mlxseq.models.encoders import RNN_TYPES, char_encoder, recurrent_layer, spelled_words


# Training settings that folders written by earlier versions stored with the model; read and dropped.
RETIRED_FIELDS = ("adversarial", "adversarial_per_token")


@dataclass
class ModelArgs:
    vocab_size: int
    num_classes: int
    multi_label: bool = False  # one sigmoid per class instead of one softmax over classes
    embed_size: int = 128
    hidden_size: int = 256  # units per direction
    num_layers: int = 1
    rnn_type: str = "lstm"  # rnn (tanh), gru or lstm
    bidirectional: bool = True
    dropout: float = 0.3  # on embeddings, between layers and before the head, in training only
    pooling: str = "max"  # final (final states), mean, max or attention, over valid steps only
    attention_size: int = 0  # attention pooling's inner size; 0 means the pooled size
    word_dropout: float = 0.0  # training: a token id becomes <unk> with this probability
    char_vocab_size: int = 0  # characters of the character encoder (word tokens only); 0: no character encoder
    num_features: int = 0  # > 0: inputs are (B, T, num_features) feature vectors, not token ids (vocab_size unused)
    char_embed_size: int = 32
    char_hidden_size: int = 64  # per direction of the character encoder
    pad_id: int = 0
    unk_id: int = 1

    def __post_init__(self):
        checks = [
            (self.rnn_type in RNN_TYPES, f"rnn_type must be one of {RNN_TYPES}, got {self.rnn_type!r}"),
            (self.pooling in POOLINGS, f"pooling must be one of {POOLINGS}, got {self.pooling!r}"),
            (min(self.vocab_size, self.embed_size, self.hidden_size, self.num_layers) >= 1,
             "vocab_size, embed_size, hidden_size and num_layers must be >= 1"),
            (self.num_features >= 0 and not (self.num_features and self.char_vocab_size),
             "num_features must be >= 0, and feature vectors are not spelled (char_vocab_size 0)"),
            (self.num_classes >= (1 if self.multi_label else 2),
             f"num_classes must be >= 2 (>= 1 for multi_label), got {self.num_classes}"),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}"),
            (0 <= self.word_dropout < 1, f"word_dropout must be in [0, 1), got {self.word_dropout}"),
            (self.char_vocab_size >= 0 and min(self.char_embed_size, self.char_hidden_size) >= 1,
             "char_vocab_size must be >= 0, char_embed_size and char_hidden_size >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


class Classifier(nn.Module):
    """Embedding, recurrent encoder, masked pooling and a linear head; see the module docstring."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        dirs = 2 if args.bidirectional else 1
        if args.num_features:
            self.projection = nn.Linear(args.num_features, args.embed_size)
        else:
            self.embedding = nn.Embedding(args.vocab_size, args.embed_size)
        self.input_size = args.embed_size  # E, or E + 2 Hc with a character encoder
        if args.char_vocab_size:
            self.char_embedding, self.char_rnn = char_encoder(args.rnn_type, args.char_vocab_size, args.char_embed_size,
                                                              args.char_hidden_size)
            self.input_size += 2 * args.char_hidden_size
        self.dropout = nn.Dropout(args.dropout)
        self.rnn = recurrent_layer(args.rnn_type, self.input_size, args.hidden_size, args.num_layers, args.dropout,
                                   args.bidirectional)
        self.pooling = Pooling(args.pooling, dirs * args.hidden_size, dirs, args.attention_size or None)
        self.head = nn.Linear(dirs * args.hidden_size, args.num_classes)

    def __call__(self, tokens: mx.array, lengths: mx.array, chars: mx.array | None = None,
                 char_lengths: mx.array | None = None, spelling_ids: mx.array | None = None) -> mx.array:
        """``tokens`` (B, T) int (or feature vectors (B, T, F) with num_features), ``lengths`` (B,) -> logits (B, C).

        A model with a character encoder also reads each token's spelling: ``chars`` (U, C) and
        ``char_lengths`` (U,), the batch's distinct spellings, and ``spelling_ids`` (B, T), the row
        of each token (see :func:`mlxseq.data.batch_spellings`).
        """
        return self.classify(self.embed(tokens, lengths, chars, char_lengths, spelling_ids), lengths)

    def embed(self, tokens: mx.array, lengths: mx.array, chars: mx.array | None = None,
              char_lengths: mx.array | None = None, spelling_ids: mx.array | None = None) -> mx.array:
        """Step 1 without its dropout: embeddings (B, T, E) (or E + 2 Hc); in training, word dropout first."""
        rank, what = (3, "feature vectors (B, T, F)") if self.args.num_features else (2, "tokens (B, T)")
        if tokens.ndim != rank or tuple(lengths.shape) != (tokens.shape[0],):
            raise ValueError(
                f"expected {what} and lengths (B,), got shapes {tuple(tokens.shape)} and {tuple(lengths.shape)}"
            )
        return self.inputs(self.drop_words(tokens), chars, char_lengths, spelling_ids)

    def inputs(self, tokens: mx.array, chars: mx.array | None = None, char_lengths: mx.array | None = None,
               spelling_ids: mx.array | None = None) -> mx.array:
        """The encoder's inputs before dropout: ``embedding(tokens)``, with each token's spelling when the
        model has a character encoder: (B, T, input_size)."""
        if self.args.num_features:
            return self.projection(tokens)  # (B, T, F) -> (B, T, E)
        e = self.embedding(tokens)  # (B, T, E)
        if not self.args.char_vocab_size:
            return e
        spelled = spelled_words(self.char_embedding, self.char_rnn, chars, char_lengths, spelling_ids, tokens.shape)
        return mx.concatenate([e, spelled.astype(e.dtype)], axis=-1)

    def drop_words(self, tokens: mx.array) -> mx.array:
        """In training, each non-pad id of ``tokens`` (B, T) becomes <unk> with probability word_dropout."""
        if not self.training or self.args.word_dropout <= 0 or self.args.num_features:
            return tokens
        drop = mx.random.bernoulli(self.args.word_dropout, tokens.shape) & (tokens != self.args.pad_id)
        return mx.where(drop, self.args.unk_id, tokens)

    def classify(self, embeddings: mx.array, lengths: mx.array) -> mx.array:
        """Steps 1 (dropout) to 4: ``embeddings`` (B, T, input_size) -> logits (B, C)."""
        outputs, _ = self.rnn(self.dropout(embeddings), lengths=lengths)  # (B, T, dirs * H)
        return self.head(self.dropout(self.pooling(outputs, lengths)))

    def classify_spans(self, embeddings: mx.array, lengths: mx.array, starts: mx.array, ends: mx.array) -> mx.array:
        """Logits (B, S, C) of spans ``[start, end)`` of each text (``starts``, ``ends`` (B, S)), each
        pooled from the text's states (step 3 over the span only, see :meth:`Pooling.spans`) and
        read by the same head: the span ``[0, length)`` gives :meth:`classify`'s logits."""
        outputs, _ = self.rnn(self.dropout(embeddings), lengths=lengths)  # (B, T, dirs * H)
        return self.head(self.dropout(self.pooling.spans(outputs, starts, ends)))

    def probabilities(self, tokens: mx.array, lengths: mx.array, chars: mx.array | None = None,
                      char_lengths: mx.array | None = None, spelling_ids: mx.array | None = None) -> mx.array:
        """Class probabilities (B, C): softmax, or one sigmoid per class for multi-label."""
        logits = self(tokens, lengths, chars, char_lengths, spelling_ids).astype(mx.float32)
        return mx.sigmoid(logits) if self.args.multi_label else mx.softmax(logits, axis=-1, precise=True)


def build_model(args: ModelArgs) -> Classifier:
    return Classifier(args)
