"""Recurrent layers and cells with PyTorch's parameters, compiled for MLX."""

from mlxseq.layers.cells import GRUCell, LSTMCell, RNNCell
from mlxseq.layers.recurrent import GRU, LSTM, RNN

# rnn_type / kind -> class: the one table every model and tool reads.
RECURRENT_LAYERS = {"rnn": RNN, "gru": GRU, "lstm": LSTM}
RECURRENT_CELLS = {"rnn": RNNCell, "gru": GRUCell, "lstm": LSTMCell}
RNN_TYPES = tuple(RECURRENT_LAYERS)


def count_parameters(module) -> int:
    """The number of parameters (array elements) of an ``mlx.nn.Module``."""
    from mlx.utils import tree_flatten

    return sum(value.size for _, value in tree_flatten(module.parameters()))


__all__ = ["RNN", "GRU", "LSTM", "RNNCell", "GRUCell", "LSTMCell", "RECURRENT_LAYERS", "RECURRENT_CELLS", "RNN_TYPES",
           "count_parameters"]
