"""Recurrent layers and cells with PyTorch's parameters, compiled for MLX."""

from mlxseq.layers.cells import GRUCell, LSTMCell, RNNCell
from mlxseq.layers.recurrent import GRU, LSTM, RNN

__all__ = ["RNN", "GRU", "LSTM", "RNNCell", "GRUCell", "LSTMCell"]
