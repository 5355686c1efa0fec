"""``model_type: recurrent``: a bare recurrent layer or cell (RNN, GRU, LSTM).

The folder form of a layer, e.g. one converted from a PyTorch ``nn.LSTM``
state dict; its weights keep PyTorch's names.
"""

from dataclasses import dataclass

from mlxseq import layers

LAYERS = {"rnn": layers.RNN, "gru": layers.GRU, "lstm": layers.LSTM}
CELLS = {"rnn": layers.RNNCell, "gru": layers.GRUCell, "lstm": layers.LSTMCell}


@dataclass
class ModelArgs:
    kind: str  # "rnn", "gru" or "lstm"
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    dropout: float = 0.0  # between layers, training mode only
    bidirectional: bool = False
    proj_size: int = 0  # LSTM only
    nonlinearity: str = "tanh"  # RNN only
    cell: bool = False  # a single-step cell instead of a layer

    def __post_init__(self):
        if self.kind not in LAYERS:
            raise ValueError(f"kind must be one of {sorted(LAYERS)}, got {self.kind!r}")


def build_model(args: ModelArgs):
    """The layer (or cell) that ``args`` describes, freshly initialised."""
    options = {"bias": args.bias}
    if args.kind == "rnn":
        options["nonlinearity"] = args.nonlinearity
    if args.cell:
        return CELLS[args.kind](args.input_size, args.hidden_size, **options)
    options.update(num_layers=args.num_layers, dropout=args.dropout, bidirectional=args.bidirectional)
    if args.kind == "lstm":
        options["proj_size"] = args.proj_size
    return LAYERS[args.kind](args.input_size, args.hidden_size, **options)
