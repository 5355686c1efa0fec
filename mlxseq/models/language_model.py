"""``model_type: lm``: a recurrent language model (characters, words or subwords).

    x_t = dropout(embed(y_{t-1}))                      (B, T, E)
    h_t = rnn(x_t, h_{t-1})                            any mlxseq layer, stacked, dropout between
    logits_t = W_out dropout(h_t)                      (B, T, V), or embed^T when tied

Training runs over contiguous chunks with the state carried from one chunk to the next
(truncated backpropagation through time): ``logits, state = model(tokens, state)``.
Decoding follows :class:`mlxseq.decoding.StepModel`: ``model.init_state(B)`` and
``model.step(tokens, state)``, the state being the RNN's states with the batch axis first.
"""

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from mlxseq import layers

RNN_TYPES = layers.RNN_TYPES


@dataclass
class ModelArgs:
    vocab_size: int
    embed_size: int = 256
    hidden_size: int = 512
    num_layers: int = 2
    rnn_type: str = "lstm"
    dropout: float = 0.2  # embeddings, between layers, before the output projection
    tie_embeddings: bool = False  # output projection = embedding^T (needs embed_size == hidden_size)
    bos_id: int = 2  # where generation from an empty prompt starts

    def __post_init__(self):
        if self.rnn_type not in RNN_TYPES:
            raise ValueError(f"rnn_type must be one of {RNN_TYPES}, got {self.rnn_type!r}")
        if self.tie_embeddings and self.embed_size != self.hidden_size:
            raise ValueError(
                f"tie_embeddings needs embed_size == hidden_size, got {self.embed_size} and {self.hidden_size}"
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class LanguageModel(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.embedding = nn.Embedding(args.vocab_size, args.embed_size)
        self.dropout = nn.Dropout(args.dropout)
        self.rnn = layers.RECURRENT_LAYERS[args.rnn_type](
            args.embed_size,
            args.hidden_size,
            num_layers=args.num_layers,
            dropout=args.dropout if args.num_layers > 1 else 0.0,
        )
        if not args.tie_embeddings:
            self.output = nn.Linear(args.hidden_size, args.vocab_size)

    def __call__(self, tokens: mx.array, state: dict | None = None):
        """``tokens`` (B, T) -> ``(logits (B, T, V), state)``; ``state`` carries over to the next chunk."""
        rnn_state = None
        if state is not None:
            rnn_state = self._to_layer_state(state)
        out, final = self.rnn(self.dropout(self.embedding(tokens)), rnn_state)
        return self._logits(out), self._from_layer_state(final)

    # --- decoding interface -------------------------------------------------------

    def init_state(self, batch_size: int) -> dict:
        """Zero states, batch axis first: ``{"h": (B, L, H)[, "c": (B, L, H)]}``."""
        shape = (batch_size, self.args.num_layers, self.args.hidden_size)
        state = {"h": mx.zeros(shape)}
        if self.args.rnn_type == "lstm":
            state["c"] = mx.zeros(shape)
        return state

    def step(self, tokens: mx.array, state: dict):
        """Previous tokens (B,) -> (logits (B, V), new state)."""
        logits, state = self(tokens[:, None], state)
        return logits[:, 0], state

    # --- helpers ------------------------------------------------------------------

    def _logits(self, out):
        out = self.dropout(out)
        return self.embedding.as_linear(out) if self.args.tie_embeddings else self.output(out)

    def _to_layer_state(self, state):
        # The layers take (L, B, H); the decoding state keeps the batch axis first.
        h = state["h"].transpose(1, 0, 2)
        return (h, state["c"].transpose(1, 0, 2)) if self.args.rnn_type == "lstm" else h

    def _from_layer_state(self, final):
        if self.args.rnn_type == "lstm":
            return {"h": final[0].transpose(1, 0, 2), "c": final[1].transpose(1, 0, 2)}
        return {"h": final.transpose(1, 0, 2)}


def build_model(args: ModelArgs) -> LanguageModel:
    return LanguageModel(args)
