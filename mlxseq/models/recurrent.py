"""``model_type: recurrent``: a bare recurrent layer or cell (RNN, GRU, LSTM).

The folder form of a layer, e.g. one converted from a PyTorch ``nn.LSTM``
state dict; its weights keep PyTorch's names.
"""

from dataclasses import dataclass

from mlxseq import layers

LAYERS = layers.RECURRENT_LAYERS
CELLS = layers.RECURRENT_CELLS


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
    peephole: bool = False  # LSTM only: gates read the cell state (weight_ph_l{k})
    reset_after: bool = True  # GRU only: False is Cho et al.'s reset before the recurrent product
    learn_initial_state: bool = False  # initial_h_l{k} (and initial_c_l{k}) are parameters

    def __post_init__(self):
        if self.kind not in LAYERS:
            raise ValueError(f"kind must be one of {sorted(LAYERS)}, got {self.kind!r}")
        variants = {"peephole": self.peephole, "reset_after": not self.reset_after,
                    "learn_initial_state": self.learn_initial_state}
        if self.cell and any(variants.values()):
            raise ValueError(f"a cell has none of {', '.join(name for name, on in variants.items() if on)}: "
                             "only layers do")
        if self.peephole and self.kind != "lstm":
            raise ValueError(f"peephole belongs to an LSTM, not a {self.kind}")
        if not self.reset_after and self.kind != "gru":
            raise ValueError(f"reset_after belongs to a GRU, not a {self.kind}")


def build_model(args: ModelArgs):
    """The layer (or cell) that ``args`` describes, freshly initialised."""
    options = {"bias": args.bias}
    if args.kind == "rnn":
        options["nonlinearity"] = args.nonlinearity
    if args.cell:
        return CELLS[args.kind](args.input_size, args.hidden_size, **options)
    options.update(num_layers=args.num_layers, dropout=args.dropout, bidirectional=args.bidirectional,
                   learn_initial_state=args.learn_initial_state)
    if args.kind == "lstm":
        options.update(proj_size=args.proj_size, peephole=args.peephole)
    if args.kind == "gru":
        options["reset_after"] = args.reset_after
    return LAYERS[args.kind](args.input_size, args.hidden_size, **options)
