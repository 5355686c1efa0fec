"""``model_type: seq2seq``: recurrent encoder-decoder with attention, for translation.

Encoder: source embedding, dropout, an mlxseq RNN/GRU/LSTM (layers, bidirectional; each
direction has ``hidden_size // 2`` units when bidirectional, so the memory has
``hidden_size`` features either way). Bridge: the encoder's final states become the
decoder's initial states (``dense``: tanh(W [h_fwd; h_bwd] + b); ``concat``: the
directions side by side; ``zeros``; ``opennmt``: OpenNMT-py's bridge, relu(W s + b) over
rows of ``layers`` consecutive final states of one sentence (each ``hidden_size / dirs``
wide, in the order layer 0 fwd, layer 0 bwd, layer 1 fwd, ...), then the directions side
by side).

Decoder, one step (``decoder_style``):

``luong`` (Luong et al. 2015, as OpenNMT-py's RNN decoder):
    1. x = [emb(y_{t-1}); a_{t-1}]            input feeding (if ``input_feed``)
    2. h_t = cells(x, h_{t-1})                  stacked, dropout between layers
    3. c_t = attention(h_t, memory)             dot / general / additive scores
    4. a_t = tanh(W_c [c_t; h_t])               the attentional hidden state (no tanh if
                                                ``output_tanh`` is off, as OpenNMT-py's mlp)
    5. logits = W_out dropout(a_t)

``bahdanau`` (Bahdanau et al. 2015, as the PyTorch seq2seq tutorial):
    1. c_t = attention(h_{t-1}, memory)         queried with the previous top state
    2. h_t = cells([emb(y_{t-1}); c_t], h_{t-1})
    3. logits = W_out dropout(h_t)

``location`` (the PyTorch seq2seq tutorial's first attention decoder, 2017-2023): the
scores come from the decoder alone, one per source position up to ``max_source_length``:
    1. e = emb(y_{t-1})
    2. a_t = softmax(W_a [e; h_{t-1}] + b_a)    (B, L); L = max_source_length, no mask:
                                                positions past a source hold zero memory
    3. c_t = a_t memory                         memory zero-padded to L positions
    4. h_t = cells(relu(W_c [e; c_t] + b_c), h_{t-1})
    5. logits = W_out dropout(h_t)

``source_eos`` appends eos to every source inside :meth:`Seq2Seq.encode`, for models
trained that way (the tutorial's).

The model follows the decoding interface (:class:`mlxseq.decoding.StepModel`):
``state = model.init_state(model.encode(src, lengths))`` then
``logits, state = model.step(tokens, state)``; every state leaf has the batch axis first.
Shapes: B batch, S source length, T target length, E embedding, H hidden, V vocabulary.
"""

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_map

from mlxseq import layers
from mlxseq.layers.attention import ALIASES, KINDS, Attention

RNN_TYPES = layers.RNN_TYPES
BRIDGES = ("dense", "concat", "zeros", "opennmt")
DECODER_STYLES = ("luong", "bahdanau", "location")


@dataclass
class ModelArgs:
    src_vocab_size: int
    tgt_vocab_size: int
    embed_size: int = 256
    hidden_size: int = 512
    encoder_layers: int = 1
    decoder_layers: int = 1
    rnn_type: str = "lstm"  # rnn (tanh), gru or lstm, for encoder and decoder
    bidirectional: bool = True  # the encoder
    dropout: float = 0.2  # embeddings, between layers, before the output projection
    attention: str = "general"  # dot, general, additive (bahdanau/mlp/concat), none; location for that style
    attention_size: int = 0  # additive attention's inner size; 0 means hidden_size
    decoder_style: str = "luong"  # luong (attentional hidden state), bahdanau or location
    input_feed: bool = True  # luong: feed a_{t-1} into the next step
    bridge: str = "dense"  # dense, concat, zeros or opennmt
    tie_embeddings: bool = False  # target embedding = output projection (needs embed_size == hidden_size)
    max_source_length: int = 0  # location: source positions the attention spans (eos included)
    source_eos: bool = False  # append eos to every source before encoding
    src_embed_size: int = 0  # source embedding size; 0 means embed_size
    output_tanh: bool = True  # luong: tanh on the attentional hidden state
    pad_id: int = 0
    bos_id: int = 2
    eos_id: int = 3

    def __post_init__(self):
        checks = [
            (self.rnn_type in RNN_TYPES, f"rnn_type must be one of {RNN_TYPES}, got {self.rnn_type!r}"),
            (self.bridge in BRIDGES, f"bridge must be one of {BRIDGES}, got {self.bridge!r}"),
            (self.decoder_style in DECODER_STYLES, f"decoder_style must be one of {DECODER_STYLES}, got {self.decoder_style!r}"),
            (
                self.attention == "none" or ALIASES.get(self.attention, self.attention) in KINDS
                or (self.attention == "location" and self.decoder_style == "location"),
                f"attention must be one of {KINDS + tuple(ALIASES) + ('none',)}, got {self.attention!r}",
            ),
            (
                (self.decoder_style == "location") == (self.attention == "location" and self.max_source_length > 0),
                "decoder_style 'location' goes with attention 'location' and max_source_length > 0, "
                f"got {self.decoder_style!r}, {self.attention!r} and {self.max_source_length}",
            ),
            (
                not (self.decoder_style == "bahdanau" and self.attention == "none"),
                "decoder_style 'bahdanau' needs an attention",
            ),
            (
                not self.bidirectional or self.hidden_size % 2 == 0,
                f"a bidirectional encoder needs an even hidden_size, got {self.hidden_size}",
            ),
            (
                self.bridge == "zeros" or self.encoder_layers == self.decoder_layers,
                f"bridge {self.bridge!r} needs encoder_layers == decoder_layers, got {self.encoder_layers} and {self.decoder_layers}",
            ),
            (
                not self.tie_embeddings or self.embed_size == self.hidden_size,
                f"tie_embeddings needs embed_size == hidden_size, got {self.embed_size} and {self.hidden_size}",
            ),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


_LAYERS = layers.RECURRENT_LAYERS
_CELLS = layers.RECURRENT_CELLS


class Encoder(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        dirs = 2 if args.bidirectional else 1
        embed_size = args.src_embed_size or args.embed_size
        self.embedding = nn.Embedding(args.src_vocab_size, embed_size)
        self.dropout = nn.Dropout(args.dropout)
        self.rnn = _LAYERS[args.rnn_type](
            embed_size,
            args.hidden_size // dirs,
            num_layers=args.encoder_layers,
            dropout=args.dropout if args.encoder_layers > 1 else 0.0,
            bidirectional=args.bidirectional,
        )

    def __call__(self, src, lengths):
        """``src`` (B, S) int, ``lengths`` (B,) -> (memory (B, S, H), final states)."""
        memory, final = self.rnn(self.dropout(self.embedding(src)), lengths=lengths)
        finals = list(final) if isinstance(final, tuple) else [final]  # each (L * dirs, B, H / dirs)
        return memory, finals


class Bridge(nn.Module):
    """Encoder final states -> decoder initial states, each ``(L, B, H)``."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.kind = args.bridge
        self.layers_out = args.decoder_layers
        self.hidden_size = args.hidden_size
        self.dirs = 2 if args.bidirectional else 1
        num_states = 2 if args.rnn_type == "lstm" else 1
        if self.kind == "dense":
            self.linears = [nn.Linear(args.hidden_size, args.hidden_size) for _ in range(num_states)]
        elif self.kind == "opennmt":
            size = args.hidden_size // self.dirs * args.encoder_layers
            self.linears = [nn.Linear(size, size) for _ in range(num_states)]

    def __call__(self, finals, batch_size):
        if self.kind == "zeros":
            return [mx.zeros((self.layers_out, batch_size, self.hidden_size)) for _ in finals]
        states = []
        for k, state in enumerate(finals):
            L2, B, Hd = state.shape  # (L * dirs, B, H / dirs), index = layer * dirs + direction
            if self.kind == "opennmt":
                # OpenNMT-py cuts each sentence's L * dirs states into dirs rows of L states
                # (3.x; before 3.0 it cut the (L * dirs, B) array unpermuted, mixing a batch's sentences).
                rows = state.transpose(1, 0, 2).reshape(B * self.dirs, -1)  # (B * dirs, L * H / dirs)
                state = nn.relu(self.linears[k](rows)).reshape(B, L2, Hd).transpose(1, 0, 2)
            joined = state.reshape(L2 // self.dirs, self.dirs, B, Hd).transpose(0, 2, 1, 3)
            joined = joined.reshape(L2 // self.dirs, B, self.dirs * Hd)  # (L, B, H): [fwd; bwd]
            if self.kind == "dense":
                joined = mx.tanh(self.linears[k](joined))
            states.append(joined)
        return states


class Seq2Seq(nn.Module):
    """Encoder + bridge + decoder; the decoder's step is its style's (a subclass per
    ``decoder_style``, made by :func:`build_model`; see the module docstring for the steps).

    Each subclass defines ``_decoder_step(embedded (B, E), state) -> (top (B, H), new state)``,
    one step before the output projection; :meth:`step` and :meth:`__call__` run it."""

    def __init__(self, args: ModelArgs, first_input: int):
        super().__init__()
        self.args = args
        self.encoder = Encoder(args)
        self.bridge = Bridge(args)
        self.embedding = nn.Embedding(args.tgt_vocab_size, args.embed_size)
        self.dropout = nn.Dropout(args.dropout)
        H = args.hidden_size
        self.cells = [_CELLS[args.rnn_type](first_input if k == 0 else H, H) for k in range(args.decoder_layers)]
        if not args.tie_embeddings:
            self.output = nn.Linear(H, args.tgt_vocab_size)

    # --- decoding interface -------------------------------------------------------

    def encode(self, src: mx.array, lengths: mx.array) -> dict:
        """Run the encoder once per source: memory, projected keys, mask and initial states."""
        if self.args.source_eos:
            src, lengths = _append_eos(src, lengths, self.args.eos_id, self.args.pad_id)
        memory, finals = self.encoder(src, lengths)
        memory = self._memory(memory)
        if not self.training:
            # Decoding: made row-contiguous once, as every step of a search reads it (gathering
            # rows of the transposed view of the encoder's time-major output took 20x as long as
            # of a copy). In training the copy and its gradient cost more than they saved.
            memory = mx.contiguous(memory)
        mask = mx.arange(memory.shape[1])[None, :] < lengths[:, None]  # (B, S)
        keys = self.attention.project_keys(memory) if "attention" in self else memory
        return {"memory": memory, "keys": keys, "mask": mask, "finals": finals}

    def init_state(self, encoded: dict) -> dict:
        """The decoder state before the first step (a pytree, batch axis first)."""
        B = encoded["memory"].shape[0]
        initial = self.bridge(encoded["finals"], B)  # each (L, B, H)
        state = {
            "h": [initial[0][k] for k in range(self.args.decoder_layers)],
            "memory": encoded["memory"],
            "keys": encoded["keys"],
            "mask": encoded["mask"],
            "attention": mx.zeros(encoded["mask"].shape),
        }
        if self.args.rnn_type == "lstm":
            state["c"] = [initial[1][k] for k in range(self.args.decoder_layers)]
        return state

    def expand_beams(self, state: dict, K: int) -> dict:
        """The state for K beams of each source (rows b * K + k). The memory, its keys and mask
        stay once per source: a step attends for a source's K beams at once, reading them once."""
        per_source = ("memory", "keys", "mask")
        return {name: value if name in per_source else tree_map(lambda a: mx.repeat(a, K, axis=0), value)
                for name, value in state.items()}

    def step(self, tokens: mx.array, state: dict):
        """One decoder step: previous tokens (B,) -> (logits (B, V), new state)."""
        top, new = self._decoder_step(self.embedding(tokens), state)
        return self._project(self.dropout(top)), new

    # --- training -----------------------------------------------------------------

    def __call__(self, src: mx.array, src_lengths: mx.array, tgt_in: mx.array) -> mx.array:
        """Teacher forcing: logits (B, T, V) for decoder inputs ``tgt_in`` (B, T) = bos + y."""
        state = self.init_state(self.encode(src, src_lengths))
        embedded = self.embedding(tgt_in)  # (B, T, E)
        tops = []
        for t in range(tgt_in.shape[1]):
            top, state = self._decoder_step(embedded[:, t], state)
            tops.append(top)
        # One output projection for all steps: one large matmul (and one weight gradient)
        # instead of one per step.
        return self._project(self.dropout(mx.stack(tops, axis=1)))  # (B, T, V)

    # --- shared parts of a step ---------------------------------------------------

    def _memory(self, memory: mx.array) -> mx.array:
        return memory

    def _cells(self, x: mx.array, state: dict, new: dict) -> mx.array:
        """The stacked cells on input ``x`` (B, ·): new h (and c) into ``new``; the top h (B, H)."""
        new["h"], new_c = [], []
        for k, cell in enumerate(self.cells):
            if k > 0:
                x = self.dropout(x)
            if self.args.rnn_type == "lstm":
                h, c = cell(x, (state["h"][k], state["c"][k]))
                new_c.append(c)
            else:
                h = cell(x, state["h"][k])
            new["h"].append(h)
            x = h
        if new_c:
            new["c"] = new_c
        return x

    def _attend(self, query: mx.array, state: dict) -> tuple[mx.array, mx.array]:
        """Attention of ``query`` (B*K, H) over the memory of B sources (K queries each: beams)."""
        sources = state["memory"].shape[0]
        grouped = query.reshape(sources, -1, query.shape[-1])  # (B, K, H)
        context, weights = self.attention(grouped, state["keys"], state["memory"], state["mask"])
        return context.reshape(query.shape[0], -1), weights.reshape(query.shape[0], -1)  # (B*K, H), (B*K, S)

    def _project(self, out: mx.array) -> mx.array:
        """Output scores (..., V) of top states ``out`` (..., H)."""
        return self.embedding.as_linear(out) if self.args.tie_embeddings else self.output(out)


class LuongSeq2Seq(Seq2Seq):
    """``decoder_style: luong``: attention after the cells, on the new state (OpenNMT-py's RNN decoder)."""

    def __init__(self, args: ModelArgs):
        input_feed = args.input_feed and args.attention != "none"
        super().__init__(args, args.embed_size + (args.hidden_size if input_feed else 0))
        self.input_feed = input_feed
        if args.attention != "none":
            self.attention = Attention(args.hidden_size, args.hidden_size, args.attention, args.attention_size or None)
            self.linear_out = nn.Linear(2 * args.hidden_size, args.hidden_size, bias=self.attention.kind == "additive")

    def init_state(self, encoded: dict) -> dict:
        state = super().init_state(encoded)
        if self.input_feed:
            state["feed"] = mx.zeros((encoded["memory"].shape[0], self.args.hidden_size))
        return state

    def _decoder_step(self, embedded, state):
        new = dict(state)
        x = self.dropout(embedded)  # (B, E)
        if self.input_feed:
            x = mx.concatenate([x, state["feed"]], axis=-1)  # 1. x = [emb(y_{t-1}); a_{t-1}]    (B, E + H)
        top = self._cells(x, state, new)  # 2. h_t = cells(x, h_{t-1})                         (B, H)
        if "attention" in self:
            context, new["attention"] = self._attend(top, state)  # 3. c_t = attention(h_t)    (B, H)
            top = self._attentional(context, top)  # 4. a_t = tanh(W_c [c_t; h_t])           (B, H)
        if self.input_feed:
            new["feed"] = top
        return top, new

    def __call__(self, src, src_lengths, tgt_in):
        if self.input_feed:
            return super().__call__(src, src_lengths, tgt_in)
        # Without input feeding nothing flows from one step's attention into the next step's
        # cells: they run as whole-sequence scans and attention attends for all steps at once
        # (the same numbers as stepping, far fewer ops).
        state = self.init_state(self.encode(src, src_lengths))
        x = self.dropout(self.embedding(tgt_in)).transpose(1, 0, 2)  # (T, B, E)
        for k, cell in enumerate(self.cells):
            if k > 0:
                x = self.dropout(x)
            initial = (state["h"][k], state["c"][k]) if self.args.rnn_type == "lstm" else (state["h"][k],)
            x, _ = cell.unroll(x, initial)  # (T, B, H)
        top = x.transpose(1, 0, 2)  # (B, T, H)
        if "attention" in self:
            context, _ = self.attention(top, state["keys"], state["memory"], state["mask"])
            top = self._attentional(context, top)
        return self._project(self.dropout(top))

    def _attentional(self, context, top):
        out = self.linear_out(mx.concatenate([context, top], axis=-1))
        return layers.activations.tanh(out) if self.args.output_tanh else out  # vectorised on the CPU


class BahdanauSeq2Seq(Seq2Seq):
    """``decoder_style: bahdanau``: attention before the cells, queried with the previous state."""

    def __init__(self, args: ModelArgs):
        super().__init__(args, args.embed_size + args.hidden_size)
        self.attention = Attention(args.hidden_size, args.hidden_size, args.attention, args.attention_size or None)

    def _decoder_step(self, embedded, state):
        new = dict(state)
        context, new["attention"] = self._attend(state["h"][-1], state)  # 1. c_t = attention(h_{t-1})  (B, H)
        x = mx.concatenate([self.dropout(embedded), context], axis=-1)  # [emb(y_{t-1}); c_t]       (B, E + H)
        return self._cells(x, state, new), new  # 2. h_t = cells(x, h_{t-1})                        (B, H)


class LocationSeq2Seq(Seq2Seq):
    """``decoder_style: location``: scores from the decoder alone, one per source position."""

    def __init__(self, args: ModelArgs):
        super().__init__(args, args.hidden_size)
        E, H = args.embed_size, args.hidden_size
        self.location_scores = nn.Linear(E + H, args.max_source_length)
        self.combine = nn.Linear(E + H, H)

    def _memory(self, memory):
        return _pad_positions(memory, self.args.max_source_length, self.args.source_eos)  # (B, L, H)

    def _decoder_step(self, embedded, state):
        new = dict(state)
        e = self.dropout(embedded)  # 1. e = emb(y_{t-1})                                         (B, E)
        scores = self.location_scores(mx.concatenate([e, state["h"][-1]], axis=-1))  # W_a [e; h_{t-1}] + b_a  (B, L)
        weights = mx.softmax(scores, axis=-1, precise=True)  # 2. a_t                              (B, L)
        memory = state["memory"]  # (B, L, H) once per source: the a_t of its K beams (B, K, L) at once
        grouped = weights.reshape(memory.shape[0], -1, weights.shape[-1])
        context = (grouped @ memory).reshape(e.shape[0], -1)  # 3. c_t = a_t memory               (B, H)
        x = nn.relu(self.combine(mx.concatenate([e, context], axis=-1)))  # relu(W_c [e; c_t] + b_c)  (B, H)
        new["attention"] = weights
        return self._cells(x, state, new), new  # 4. h_t = cells(x, h_{t-1})                       (B, H)


DECODERS = {"luong": LuongSeq2Seq, "bahdanau": BahdanauSeq2Seq, "location": LocationSeq2Seq}


def _append_eos(src, lengths, eos_id, pad_id):
    """``src`` (B, S) -> (B, S + 1) with eos after each source's last token; lengths + 1."""
    padded = mx.concatenate([src, mx.full((src.shape[0], 1), pad_id, dtype=src.dtype)], axis=1)
    at_end = mx.arange(padded.shape[1])[None, :] == lengths[:, None]
    return mx.where(at_end, mx.array(eos_id, dtype=src.dtype), padded), lengths + 1


def _pad_positions(memory, positions, with_eos):
    """Zero-pad memory (B, S, H) to the L positions location attention spans."""
    B, S, H = memory.shape
    if S > positions:
        words = f"{positions - 1} tokens (and eos)" if with_eos else f"{positions} tokens"
        raise ValueError(f"this model attends over at most {words}; got a source of {S - with_eos}")
    return mx.concatenate([memory, mx.zeros((B, positions - S, H), dtype=memory.dtype)], axis=1)


def build_model(args: ModelArgs) -> Seq2Seq:
    """The seq2seq model of ``args``, with the decoder of its ``decoder_style``."""
    return DECODERS[args.decoder_style](args)
