"""``model_type: forecaster``: a window of L real-valued steps (D features) to the next H steps.

    1. x = x - x_{L-1}                   each window minus its last value, per feature
                                         (``instance_norm``; added back in step 5)
    2. series: (B, L, D) -> (B D, L, 1)  one series per feature through shared weights
                                         (``channel_independent``), else (B, L, D)
    3. segments of S steps -> (N, L / S, S c), embedded by relu(W s + b)   (S = ``segment_length``)
    4. h = rnn(segments)                 final state (N, Hd)
    5. direct:         y = W_out h -> all H steps at once
       autoregressive: a cell started at h predicts one segment per step and reads
                       its own prediction back in (no teacher forcing), ceil(H / S) steps
    6. y + x_{L-1}, back to (B, H, D)

Values are in the normalised units of the training data (:class:`mlxseq.data.Normaliser`);
segments and channel independence follow SegRNN (Lin et al. 2023).
Shapes: B windows, L input steps, H horizon, D features, c = 1 or D.
"""

import math
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from mlxseq import layers
from mlxseq.models.encoders import RNN_TYPES, recurrent_layer

DECODERS = ("direct", "autoregressive")


@dataclass
class ModelArgs:
    num_features: int
    input_length: int = 336  # L: steps the model reads
    horizon: int = 96  # H: steps it predicts
    segment_length: int = 48  # S: steps per recurrent input; must divide input_length (1: step by step)
    channel_independent: bool = True  # each feature is its own series through shared weights
    instance_norm: bool = True  # predict relative to each window's last value
    rnn_type: str = "gru"  # rnn (tanh), gru or lstm
    hidden_size: int = 512
    num_layers: int = 1
    dropout: float = 0.0  # on the segment embeddings, between layers and before the head
    decoder: str = "direct"  # direct (one linear head for all H steps) or autoregressive

    def __post_init__(self):
        checks = [
            (self.rnn_type in RNN_TYPES, f"rnn_type must be one of {RNN_TYPES}, got {self.rnn_type!r}"),
            (self.decoder in DECODERS, f"decoder must be one of {DECODERS}, got {self.decoder!r}"),
            (min(self.num_features, self.input_length, self.horizon, self.segment_length, self.hidden_size,
                 self.num_layers) >= 1,
             "num_features, input_length, horizon, segment_length, hidden_size and num_layers must be >= 1"),
            (self.input_length % self.segment_length == 0,
             f"segment_length {self.segment_length} must divide input_length {self.input_length}"),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


class Forecaster(nn.Module):
    """Segment-wise recurrent forecaster; see the module docstring for the steps."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.channels = 1 if args.channel_independent else args.num_features
        segment = args.segment_length * self.channels
        self.embed = nn.Linear(segment, args.hidden_size)
        self.dropout = nn.Dropout(args.dropout)
        self.rnn = recurrent_layer(args.rnn_type, args.hidden_size, args.hidden_size, args.num_layers, args.dropout,
                                   False)
        if args.decoder == "direct":
            self.head = nn.Linear(args.hidden_size, args.horizon * self.channels)
        else:
            self.cell = layers.RECURRENT_CELLS[args.rnn_type](args.hidden_size, args.hidden_size)
            self.head = nn.Linear(args.hidden_size, segment)

    def __call__(self, x: mx.array) -> mx.array:
        """``x`` (B, L, D) normalised inputs -> predictions (B, H, D)."""
        a = self.args
        if x.ndim != 3 or x.shape[1:] != (a.input_length, a.num_features):
            raise ValueError(
                f"expected inputs of shape (B, L={a.input_length}, D={a.num_features}), got shape {tuple(x.shape)}"
            )
        B = x.shape[0]
        last = x[:, -1:, :] if a.instance_norm else mx.zeros((B, 1, a.num_features), dtype=x.dtype)
        x = x - last
        if a.channel_independent:
            x = x.transpose(0, 2, 1).reshape(B * a.num_features, a.input_length, 1)  # (B D, L, 1)
        N = x.shape[0]
        segments = x.reshape(N, a.input_length // a.segment_length, a.segment_length * self.channels)
        embedded = self.dropout(nn.relu(self.embed(segments)))  # (N, L / S, Hd)
        _, final = self.rnn(embedded)
        states = final if isinstance(final, tuple) else (final,)
        top = tuple(s[-1] for s in states)  # the top layer's final state(s), each (N, Hd)
        if a.decoder == "direct":
            y = self.head(self.dropout(top[0])).reshape(N, a.horizon, self.channels)
        else:
            y = self._autoregressive(segments[:, -1], top)
        if a.channel_independent:
            y = y.reshape(B, a.num_features, a.horizon).transpose(0, 2, 1)  # (B, H, D)
        return y + last

    def _autoregressive(self, previous: mx.array, state: tuple) -> mx.array:
        """Predict ceil(H / S) segments, each from the previous one (the last input segment first)."""
        a = self.args
        outputs = []
        for _ in range(math.ceil(a.horizon / a.segment_length)):
            inputs = self.dropout(nn.relu(self.embed(previous)))
            state = self.cell(inputs, state) if a.rnn_type == "lstm" else (self.cell(inputs, state[0]),)
            previous = self.head(self.dropout(state[0]))  # (N, S c)
            outputs.append(previous.reshape(previous.shape[0], a.segment_length, self.channels))
        return mx.concatenate(outputs, axis=1)[:, : a.horizon]


def build_model(args: ModelArgs) -> Forecaster:
    return Forecaster(args)
