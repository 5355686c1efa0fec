"""OpenNMT-py's RNN translation model and its beam and greedy search, in torch, for the tests.

Reproduced from OpenNMT/OpenNMT-py: ``onmt/encoders/rnn_encoder.py`` (RNNEncoder with its
bridge), ``onmt/decoders/decoder.py`` (InputFeedRNNDecoder, StdRNNDecoder),
``onmt/models/stacked_rnn.py``, ``onmt/modules/global_attention.py`` (softmax) and
``onmt/translate/beam_search.py`` / ``greedy_search.py`` (one source at a time, which
is how their batch loop treats each source). Module names are OpenNMT-py's, so the
state dict keys are its keys.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence as pack
from torch.nn.utils.rnn import pad_packed_sequence as unpack

RNN = {"LSTM": nn.LSTM, "GRU": nn.GRU}
CELL = {"LSTM": nn.LSTMCell, "GRU": nn.GRUCell}


class Embeddings(nn.Module):
    def __init__(self, vec_size, vocab_size, pad_idx):
        super().__init__()
        self.make_embedding = nn.Sequential()
        self.make_embedding.add_module("emb_luts", nn.ModuleList([nn.Embedding(vocab_size, vec_size, padding_idx=pad_idx)]))

    def forward(self, ids):
        return self.make_embedding.emb_luts[0](ids)


class RNNEncoder(nn.Module):
    def __init__(self, rnn_type, bidirectional, num_layers, hidden_size, embeddings, use_bridge=False):
        super().__init__()
        num_directions = 2 if bidirectional else 1
        self.embeddings = embeddings
        self.rnn = RNN[rnn_type](embeddings.make_embedding.emb_luts[0].embedding_dim, hidden_size // num_directions,
                                 num_layers=num_layers, bidirectional=bidirectional)
        self.use_bridge = use_bridge
        if use_bridge:
            number_of_states = 2 if rnn_type == "LSTM" else 1
            self.total_hidden_dim = hidden_size // num_directions * num_layers
            self.bridge = nn.ModuleList([nn.Linear(self.total_hidden_dim, self.total_hidden_dim, bias=True)
                                         for _ in range(number_of_states)])

    def forward(self, src, lengths):  # src (S, B)
        packed_emb = pack(self.embeddings(src), lengths.tolist(), enforce_sorted=False)
        memory_bank, encoder_final = self.rnn(packed_emb)
        memory_bank = unpack(memory_bank)[0]
        if self.use_bridge:
            encoder_final = self._bridge(encoder_final)
        return encoder_final, memory_bank

    def _bridge(self, hidden):
        def bottle_hidden(linear, states):  # 3.x: each sentence's states alone (batch first)
            states = states.permute(1, 0, 2).contiguous()
            size = states.size()
            result = linear(states.view(-1, self.total_hidden_dim))
            return F.relu(result).view(size).permute(1, 0, 2).contiguous()

        if isinstance(hidden, tuple):  # LSTM
            return tuple(bottle_hidden(layer, hidden[ix]) for ix, layer in enumerate(self.bridge))
        return bottle_hidden(self.bridge[0], hidden)


class GlobalAttention(nn.Module):
    def __init__(self, dim, attn_type="dot"):
        super().__init__()
        self.dim, self.attn_type = dim, attn_type
        if attn_type == "general":
            self.linear_in = nn.Linear(dim, dim, bias=False)
        elif attn_type == "mlp":
            self.linear_context = nn.Linear(dim, dim, bias=False)
            self.linear_query = nn.Linear(dim, dim, bias=True)
            self.v = nn.Linear(dim, 1, bias=False)
        out_bias = attn_type == "mlp"
        self.linear_out = nn.Linear(dim * 2, dim, bias=out_bias)

    def score(self, h_t, h_s):
        src_batch, src_len, _ = h_s.size()
        tgt_batch, tgt_len, tgt_dim = h_t.size()
        if self.attn_type in ["general", "dot"]:
            if self.attn_type == "general":
                h_t = self.linear_in(h_t.view(tgt_batch * tgt_len, tgt_dim)).view(tgt_batch, tgt_len, tgt_dim)
            return torch.bmm(h_t, h_s.transpose(1, 2))
        dim = self.dim
        wq = self.linear_query(h_t.view(-1, dim)).view(tgt_batch, tgt_len, 1, dim).expand(tgt_batch, tgt_len, src_len, dim)
        uh = self.linear_context(h_s.contiguous().view(-1, dim)).view(src_batch, 1, src_len, dim)
        uh = uh.expand(src_batch, tgt_len, src_len, dim)
        return self.v(torch.tanh(wq + uh).view(-1, dim)).view(tgt_batch, tgt_len, src_len)

    def forward(self, source, memory_bank, memory_lengths):  # source (B, H), memory (B, S, H)
        source = source.unsqueeze(1)
        batch, source_l, _ = memory_bank.size()
        align = self.score(source, memory_bank)
        mask = torch.arange(source_l)[None, :] < memory_lengths[:, None]
        align.masked_fill_(~mask.unsqueeze(1), -float("inf"))
        align_vectors = F.softmax(align.view(batch, -1), -1).view(batch, 1, source_l)
        c = torch.bmm(align_vectors, memory_bank)
        attn_h = self.linear_out(torch.cat([c, source], 2).view(batch, -1))
        if self.attn_type in ["general", "dot"]:
            attn_h = torch.tanh(attn_h)
        return attn_h, align_vectors.squeeze(1)


class StackedRNN(nn.Module):
    def __init__(self, rnn_type, num_layers, input_size, rnn_size):
        super().__init__()
        self.rnn_type = rnn_type
        self.layers = nn.ModuleList()
        for _ in range(num_layers):
            self.layers.append(CELL[rnn_type](input_size, rnn_size))
            input_size = rnn_size

    def forward(self, input_feed, hidden):
        if self.rnn_type == "LSTM":
            h_0, c_0 = hidden
            h_1, c_1 = [], []
            for i, layer in enumerate(self.layers):
                h_1_i, c_1_i = layer(input_feed, (h_0[i], c_0[i]))
                input_feed = h_1_i
                h_1 += [h_1_i]
                c_1 += [c_1_i]
            return input_feed, (torch.stack(h_1), torch.stack(c_1))
        h_1 = []
        for i, layer in enumerate(self.layers):
            input_feed = layer(input_feed, hidden[0][i])
            h_1 += [input_feed]
        return input_feed, (torch.stack(h_1),)


class RNNDecoder(nn.Module):
    """InputFeedRNNDecoder (``input_feed``) or StdRNNDecoder, stepping one token at a time."""

    def __init__(self, rnn_type, bidirectional_encoder, num_layers, hidden_size, attn_type, embeddings, input_feed):
        super().__init__()
        self.embeddings, self.input_feed, self.rnn_type = embeddings, input_feed, rnn_type
        self.bidirectional_encoder = bidirectional_encoder
        emb = embeddings.make_embedding.emb_luts[0].embedding_dim
        if input_feed:
            self.rnn = StackedRNN(rnn_type, num_layers, emb + hidden_size, hidden_size)
        else:
            self.rnn = RNN[rnn_type](emb, hidden_size, num_layers=num_layers)
        self.attn = GlobalAttention(hidden_size, attn_type)

    def init_state(self, encoder_final):
        def _fix_enc_hidden(hidden):
            if self.bidirectional_encoder:
                hidden = torch.cat([hidden[0:hidden.size(0):2], hidden[1:hidden.size(0):2]], 2)
            return hidden

        finals = encoder_final if isinstance(encoder_final, tuple) else (encoder_final,)
        hidden = tuple(_fix_enc_hidden(h) for h in finals)
        return {"hidden": hidden, "input_feed": torch.zeros_like(hidden[0][0])}

    def step(self, token, state, memory_bank, lengths):  # token (B,), memory (S, B, H)
        emb = self.embeddings(token)
        if self.input_feed:
            rnn_output, hidden = self.rnn(torch.cat([emb, state["input_feed"]], 1), state["hidden"])
        else:
            h = state["hidden"] if self.rnn_type == "LSTM" else state["hidden"][0]
            rnn_output, hidden = self.rnn(emb.unsqueeze(0), h)
            rnn_output = rnn_output[0]
            hidden = hidden if self.rnn_type == "LSTM" else (hidden,)
        out, attn = self.attn(rnn_output, memory_bank.transpose(0, 1), lengths)
        return out, {"hidden": hidden, "input_feed": out, "attn": attn}


class NMTModel(nn.Module):
    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder


def build(rnn_type, brnn, layers, hidden, attn_type, input_feed, bridge, src_vocab, tgt_vocab,
          src_emb=6, tgt_emb=6, generator_sequential=True):
    """An OpenNMT-py RNN model and generator (``Sequential(Linear, LogSoftmax)`` up to 2.x, ``Linear`` in 3.x)."""
    encoder = RNNEncoder(rnn_type, brnn, layers, hidden, Embeddings(src_emb, src_vocab, 1), use_bridge=bridge)
    decoder = RNNDecoder(rnn_type, brnn, layers, hidden, attn_type, Embeddings(tgt_emb, tgt_vocab, 1), input_feed)
    linear = nn.Linear(hidden, tgt_vocab)
    generator = nn.Sequential(linear, nn.LogSoftmax(dim=-1)) if generator_sequential else linear
    return NMTModel(encoder, decoder).eval(), generator.eval()


def _start(model, src_ids):
    src = torch.tensor(src_ids).view(-1, 1)
    lengths = torch.tensor([len(src_ids)])
    encoder_final, memory = model.encoder(src, lengths)
    return model.decoder.init_state(encoder_final), memory, lengths


def _log_probs(model, generator, token, state, memory, lengths):
    out, state = model.decoder.step(token, state, memory, lengths)
    return F.log_softmax(generator(out), dim=-1), state


@torch.no_grad()
def teacher_forced(model, generator, src_ids, tgt_in):
    """Log-probabilities (T, V) for decoder inputs ``tgt_in`` (bos first)."""
    state, memory, lengths = _start(model, src_ids)
    rows = []
    for token in tgt_in:
        log_probs, state = _log_probs(model, generator, torch.tensor([token]), state, memory, lengths)
        rows.append(log_probs[0])
    return torch.stack(rows)


@torch.no_grad()
def greedy(model, generator, src_ids, bos, eos, max_length=100, with_attention=False):
    """GreedySearch's tokens (and, as its alive_attn, the attention of each step, eos included)."""
    state, memory, lengths = _start(model, src_ids)
    token, out, attention = torch.tensor([bos]), [], []
    for _ in range(max_length):
        log_probs, state = _log_probs(model, generator, token, state, memory, lengths)
        attention.append(state["attn"][0])
        token = log_probs.topk(1, dim=-1)[1][:, 0]
        if token.item() == eos:
            break
        out.append(token.item())
    return (out, torch.stack(attention)) if with_attention else out


def build_target_tokens(tokens, attention, src_raw, itos, replace_unk=True):
    """``onmt/translate/translation.py`` ``_build_target_tokens``: the words, each <unk> replaced by
    the source word its step attended to most (``attn[i][:len(src_raw)].max(0)``)."""
    words = [itos[t] for t in tokens]
    if replace_unk:
        for i in range(len(words)):
            if words[i] == "<unk>":
                _, max_index = attention[i][: len(src_raw)].max(0)
                words[i] = src_raw[max_index.item()]
    return words


def _tile(state, k):
    return {"hidden": tuple(h.repeat_interleave(k, dim=1) for h in state["hidden"]),
            "input_feed": state["input_feed"].repeat_interleave(k, dim=0)}


@torch.no_grad()
def beam_search(model, generator, src_ids, bos, eos, beam_size=5, n_best=1, max_length=100, min_length=0,
                alpha=0.0, length_penalty="none", with_attention=False):
    """OpenNMT-py's BeamSearch.advance/update_finished for one source: [(score, tokens)], best first;
    ``with_attention``: [(score, tokens, attention)] with its ``alive_attn`` rows (eos included)."""
    def penalty(cur_len):
        if length_penalty == "wu":
            return ((5 + cur_len) / 6.0) ** alpha
        if length_penalty == "avg":
            return cur_len ** alpha
        return 1.0

    state, memory, lengths = _start(model, src_ids)
    state = _tile(state, beam_size)
    memory, lengths = memory.repeat_interleave(beam_size, dim=1), lengths.repeat_interleave(beam_size)
    topk_log_probs = torch.tensor([[0.0] + [float("-inf")] * (beam_size - 1)])
    alive_seq = torch.full([beam_size, 1], bos, dtype=torch.long)
    top_beam_finished, hypotheses = False, []
    alive_attn = None
    for step in range(max_length):
        log_probs, state = _log_probs(model, generator, alive_seq[:, -1], state, memory, lengths)
        step_attn = state["attn"]
        vocab_size = log_probs.size(-1)
        cur_len = alive_seq.shape[1]
        if cur_len <= min_length:
            log_probs[:, eos] = -1e20
        log_probs += topk_log_probs.view(beam_size, 1)
        lp = penalty(cur_len + 1)
        curr_scores = (log_probs / lp if lp != 1 else log_probs).reshape(-1, beam_size * vocab_size)
        topk_scores, topk_ids = torch.topk(curr_scores, beam_size, dim=-1)
        topk_log_probs = topk_scores * lp
        select = topk_ids // vocab_size
        topk_ids = topk_ids % vocab_size
        alive_seq = torch.cat([alive_seq.index_select(0, select[0]), topk_ids.view(beam_size, 1)], -1)
        current_attn = step_attn.index_select(0, select[0]).unsqueeze(1)
        alive_attn = current_attn if alive_attn is None else torch.cat(
            [alive_attn.index_select(0, select[0]), current_attn], 1)
        is_finished = topk_ids.eq(eos)
        if alive_seq.shape[1] == max_length + 1:
            is_finished.fill_(1)
        if is_finished.any():
            topk_log_probs.masked_fill_(is_finished, -1e10)
            top_beam_finished |= bool(is_finished[0, 0])
            for j in is_finished[0].nonzero().view(-1):
                hypotheses.append((topk_scores[0, j].item(), alive_seq[j, 1:].tolist(), alive_attn[j]))
            if top_beam_finished and len(hypotheses) >= n_best:
                best = sorted(hypotheses, key=lambda x: x[0], reverse=True)[:n_best]
                found = [(score, tokens[:-1] if tokens[-1] == eos else tokens, attn) for score, tokens, attn in best]
                return found if with_attention else [(score, tokens) for score, tokens, _ in found]
        state = {"hidden": tuple(h.index_select(1, select[0]) for h in state["hidden"]),
                 "input_feed": state["input_feed"].index_select(0, select[0])}
    raise AssertionError("unreachable: every beam ends at max_length")
