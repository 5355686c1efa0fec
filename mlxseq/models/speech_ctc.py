"""``model_type: speech_ctc``: a DeepSpeech2-style recogniser, trained with CTC.

    features (B, T, F)                                   log-mel frames (mlxseq.speech.features)
    -> [Conv1d(F, conv_channels, kernel, stride) + ReLU] optional: fewer, wider frames
    -> deep (bi)directional GRU/LSTM/RNN                 (B, T', dirs * H), lengths respected
    -> Linear(dirs * H, num_classes)                     labels and the blank (blank_id)
    -> log_softmax                                       (B, T', C): mlxseq.losses.ctc_loss takes (T', B, C)
"""

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from mlxseq import layers
from mlxseq.layers.activations import log_softmax

RNN_LAYERS = layers.RECURRENT_LAYERS


@dataclass
class ModelArgs:
    num_features: int  # F: mel bins per frame
    num_classes: int  # C: the labels and the blank
    conv_channels: int = 0  # 0: no convolution front end
    conv_stride: int = 2  # frames per output frame of the convolution
    conv_kernel: int = 3  # frames each output frame sees (odd; >= conv_stride so that every frame is seen)
    rnn_type: str = "gru"  # rnn (tanh), gru or lstm
    hidden_size: int = 256
    num_layers: int = 3
    bidirectional: bool = True
    dropout: float = 0.1  # between recurrent layers, training mode only
    blank_id: int = 0

    def __post_init__(self):
        if self.rnn_type not in RNN_LAYERS:
            raise ValueError(f"rnn_type must be one of {sorted(RNN_LAYERS)}, got {self.rnn_type!r}")
        if not 0 <= self.blank_id < self.num_classes:
            raise ValueError(f"blank_id must be in [0, num_classes={self.num_classes}), got {self.blank_id}")
        if self.conv_stride < 1:
            raise ValueError(f"conv_stride must be >= 1, got {self.conv_stride}")
        if self.conv_kernel < 1 or self.conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd and >= 1, got {self.conv_kernel}")


class SpeechCTC(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        if args.conv_channels:
            self.conv = nn.Conv1d(args.num_features, args.conv_channels, kernel_size=args.conv_kernel,
                                  stride=args.conv_stride, padding=args.conv_kernel // 2)
        width = args.conv_channels or args.num_features
        self.rnn = RNN_LAYERS[args.rnn_type](width, args.hidden_size, num_layers=args.num_layers,
                                             dropout=args.dropout if args.num_layers > 1 else 0.0,
                                             bidirectional=args.bidirectional)
        self.output = nn.Linear(args.hidden_size * (2 if args.bidirectional else 1), args.num_classes)

    def output_lengths(self, lengths: mx.array) -> mx.array:
        """Frames per sequence after the front end: (L + 2 * (kernel // 2) - kernel) // stride + 1 with the
        convolution, which is (L - 1) // stride + 1 for an odd kernel."""
        if not self.args.conv_channels:
            return lengths
        return (lengths - 1) // self.args.conv_stride + 1

    def __call__(self, features: mx.array, lengths: mx.array) -> tuple[mx.array, mx.array]:
        """``(log-probabilities (B, T', C), output lengths (B,))`` of ``features`` ``(B, T, F)``."""
        x = features
        if self.args.conv_channels:
            x = nn.relu(self.conv(x))  # (B, T', channels)
        lengths = self.output_lengths(lengths)
        hidden, _ = self.rnn(x, lengths=mx.minimum(lengths, x.shape[1]))
        return log_softmax(self.output(hidden)), lengths


def build_model(args: ModelArgs) -> SpeechCTC:
    return SpeechCTC(args)
