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

from mlxseq import layers
from mlxseq.layers.attention import ALIASES, KINDS, Attention

RNN_TYPES = ("rnn", "gru", "lstm")
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


_LAYERS = {"rnn": layers.RNN, "gru": layers.GRU, "lstm": layers.LSTM}
_CELLS = {"rnn": layers.RNNCell, "gru": layers.GRUCell, "lstm": layers.LSTMCell}


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
    """Encoder-decoder with attention; see the module docstring for the step equations."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        H, E = args.hidden_size, args.embed_size
        self.encoder = Encoder(args)
        self.bridge = Bridge(args)
        self.embedding = nn.Embedding(args.tgt_vocab_size, E)
        self.dropout = nn.Dropout(args.dropout)
        luong = args.decoder_style == "luong"
        self.input_feed = luong and args.input_feed and args.attention != "none"
        first_input = E + (H if (self.input_feed or not luong) else 0)
        if args.decoder_style == "location":
            first_input = H
            self.location_scores = nn.Linear(E + H, args.max_source_length)
            self.combine = nn.Linear(E + H, H)
        self.cells = [_CELLS[args.rnn_type](first_input if k == 0 else H, H) for k in range(args.decoder_layers)]
        if args.attention not in ("none", "location"):
            self.attention = Attention(H, H, args.attention, args.attention_size or None)
            if luong:
                self.linear_out = nn.Linear(2 * H, H, bias=self.attention.kind == "additive")
        if not args.tie_embeddings:
            self.output = nn.Linear(H, args.tgt_vocab_size)

    # --- decoding interface -------------------------------------------------------

    def encode(self, src: mx.array, lengths: mx.array) -> dict:
        """Run the encoder once per source: memory, projected keys, mask and initial states."""
        if self.args.source_eos:
            src, lengths = _append_eos(src, lengths, self.args.eos_id, self.args.pad_id)
        memory, finals = self.encoder(src, lengths)
        if self.args.decoder_style == "location":
            memory = _pad_positions(memory, self.args.max_source_length, self.args.source_eos)
        mask = mx.arange(memory.shape[1])[None, :] < lengths[:, None]  # (B, S)
        keys = self.attention.project_keys(memory) if self.args.attention not in ("none", "location") else memory
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
        if self.input_feed:
            state["feed"] = mx.zeros((B, self.args.hidden_size))
        return state

    def step(self, tokens: mx.array, state: dict):
        """One decoder step: previous tokens (B,) -> (logits (B, V), new state)."""
        return self._step(self.embedding(tokens), state)

    # --- training -----------------------------------------------------------------

    def __call__(self, src: mx.array, src_lengths: mx.array, tgt_in: mx.array) -> mx.array:
        """Teacher forcing: logits (B, T, V) for decoder inputs ``tgt_in`` (B, T) = bos + y."""
        state = self.init_state(self.encode(src, src_lengths))
        embedded = self.embedding(tgt_in)  # (B, T, E)
        if self.args.decoder_style == "luong" and not self.input_feed:
            return self._parallel_decoder(embedded, state)
        tops = []
        for t in range(tgt_in.shape[1]):
            top, state = self._decoder_step(embedded[:, t], state)
            tops.append(top)
        # One output projection for all steps: one large matmul (and one weight gradient)
        # instead of one per step.
        return self._project(self.dropout(mx.stack(tops, axis=1)))  # (B, T, V)

    def _parallel_decoder(self, embedded, state):
        """Without input feeding nothing flows from one step's attention into the next
        step's RNN, so the decoder RNN runs as whole-sequence scans and attention
        attends for all steps at once: the same numbers as stepping, far fewer ops."""
        x = self.dropout(embedded).transpose(1, 0, 2)  # (T, B, E)
        for k, cell in enumerate(self.cells):
            if k > 0:
                x = self.dropout(x)
            initial = (state["h"][k], state["c"][k]) if self.args.rnn_type == "lstm" else (state["h"][k],)
            x, _ = cell.unroll(x, initial)  # (T, B, H)
        top = x.transpose(1, 0, 2)  # (B, T, H)
        if self.args.attention != "none":
            context, _ = self.attention(top, state["keys"], state["memory"], state["mask"])
            top = self._attentional(context, top)
        return self._project(self.dropout(top))

    def _project(self, out):
        """Output scores (..., V) of attentional states ``out`` (..., H)."""
        return self.embedding.as_linear(out) if self.args.tie_embeddings else self.output(out)

    # --- one step -----------------------------------------------------------------

    def _step(self, embedded, state):
        top, new = self._decoder_step(embedded, state)
        return self._project(self.dropout(top)), new

    def _decoder_step(self, embedded, state):
        """One step before the output projection: the top state (B, H) and the new state."""
        x = self.dropout(embedded)  # (B, E)
        new = dict(state)
        if self.args.decoder_style == "bahdanau":
            context, weights = self._attend(state["h"][-1], state)
            x = mx.concatenate([x, context], axis=-1)
        elif self.args.decoder_style == "location":
            x, weights = self._attend_by_location(x, state)
        elif self.input_feed:
            x = mx.concatenate([x, state["feed"]], axis=-1)
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
        top = x  # (B, H)
        if self.args.decoder_style == "luong":
            if self.args.attention != "none":
                context, weights = self._attend(top, state)
                top = self._attentional(context, top)
                new["attention"] = weights
            if self.input_feed:
                new["feed"] = top
        else:
            new["attention"] = weights
        return top, new

    def _attentional(self, context, top):
        out = self.linear_out(mx.concatenate([context, top], axis=-1))
        return mx.tanh(out) if self.args.output_tanh else out

    def _attend(self, query, state):
        context, weights = self.attention(query[:, None, :], state["keys"], state["memory"], state["mask"])
        return context[:, 0], weights[:, 0]  # (B, H), (B, S)

    def _attend_by_location(self, x, state):
        """Steps 2-4 of the ``location`` style: the first decoder cell's input and the weights."""
        scores = self.location_scores(mx.concatenate([x, state["h"][-1]], axis=-1))  # (B, L)
        weights = mx.softmax(scores, axis=-1, precise=True)
        context = (weights[:, None, :] @ state["memory"])[:, 0]  # (B, H)
        return nn.relu(self.combine(mx.concatenate([x, context], axis=-1))), weights


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
    return Seq2Seq(args)
