"""OpenNMT-py's first RNN model and translator (2017, ``onmt.Dict`` checkpoints), in torch, for the tests.

Reproduced from OpenNMT/OpenNMT-py's first ``onmt/Models.py`` (Encoder, StackedLSTM, Decoder,
NMTModel), ``onmt/modules/GlobalAttention.py``, ``onmt/Beam.py`` and ``onmt/Translator.py``
(``translateBatch`` for one sentence, ``buildTargetTokens``), written for today's torch (no
``Variable``). Module names are OpenNMT-py's, so the state dict keys are its keys; ``opt`` is
the ``argparse.Namespace`` its ``train.py`` saved. :class:`SearchView` puts the model behind
the interface of :mod:`tests.convert.opennmt_models`' later searches.
"""

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence as pack
from torch.nn.utils.rnn import pad_packed_sequence as unpack

PAD, UNK, BOS, EOS = 0, 1, 2, 3  # onmt.Constants
UNK_WORD = "<unk>"


class Encoder(nn.Module):
    def __init__(self, opt, vocab_size):
        super().__init__()
        self.layers = opt.layers
        self.num_directions = 2 if opt.brnn else 1
        assert opt.rnn_size % self.num_directions == 0
        self.hidden_size = opt.rnn_size // self.num_directions
        self.word_lut = nn.Embedding(vocab_size, opt.word_vec_size, padding_idx=PAD)
        self.rnn = nn.LSTM(opt.word_vec_size, self.hidden_size, num_layers=opt.layers, dropout=opt.dropout,
                           bidirectional=opt.brnn)

    def forward(self, input, hidden=None):  # input: (src (S, B), lengths)
        emb = pack(self.word_lut(input[0]), input[1])
        outputs, hidden_t = self.rnn(emb, hidden)
        outputs = unpack(outputs)[0]
        return hidden_t, outputs


class StackedLSTM(nn.Module):
    def __init__(self, num_layers, input_size, rnn_size, dropout):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.num_layers = num_layers
        self.layers = nn.ModuleList()
        for _ in range(num_layers):
            self.layers.append(nn.LSTMCell(input_size, rnn_size))
            input_size = rnn_size

    def forward(self, input, hidden):
        h_0, c_0 = hidden
        h_1, c_1 = [], []
        for i, layer in enumerate(self.layers):
            h_1_i, c_1_i = layer(input, (h_0[i], c_0[i]))
            input = h_1_i
            if i + 1 != self.num_layers:
                input = self.dropout(input)
            h_1 += [h_1_i]
            c_1 += [c_1_i]
        return input, (torch.stack(h_1), torch.stack(c_1))


class GlobalAttention(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.linear_in = nn.Linear(dim, dim, bias=False)
        self.sm = nn.Softmax(dim=1)
        self.linear_out = nn.Linear(dim * 2, dim, bias=False)
        self.tanh = nn.Tanh()
        self.mask = None

    def applyMask(self, mask):
        self.mask = mask

    def forward(self, input, context):  # input (B, H), context (B, S, H)
        targetT = self.linear_in(input).unsqueeze(2)
        attn = torch.bmm(context, targetT).squeeze(2)  # (B, S)
        if self.mask is not None:
            attn = attn.masked_fill(self.mask.reshape(attn.shape), -float("inf"))
        attn = self.sm(attn)
        attn3 = attn.view(attn.size(0), 1, attn.size(1))
        weightedContext = torch.bmm(attn3, context).squeeze(1)
        contextCombined = torch.cat((weightedContext, input), 1)
        return self.tanh(self.linear_out(contextCombined)), attn


class Decoder(nn.Module):
    def __init__(self, opt, vocab_size):
        super().__init__()
        self.layers = opt.layers
        self.input_feed = opt.input_feed
        input_size = opt.word_vec_size + (opt.rnn_size if self.input_feed else 0)
        self.word_lut = nn.Embedding(vocab_size, opt.word_vec_size, padding_idx=PAD)
        self.rnn = StackedLSTM(opt.layers, input_size, opt.rnn_size, opt.dropout)
        self.attn = GlobalAttention(opt.rnn_size)
        self.dropout = nn.Dropout(opt.dropout)
        self.hidden_size = opt.rnn_size

    def forward(self, input, hidden, context, init_output):  # input (T, B), context (S, B, H)
        emb = self.word_lut(input)
        outputs = []
        output = init_output
        for emb_t in emb.split(1):
            emb_t = emb_t.squeeze(0)
            if self.input_feed:
                emb_t = torch.cat([emb_t, output], 1)
            output, hidden = self.rnn(emb_t, hidden)
            output, attn = self.attn(output, context.transpose(0, 1))
            output = self.dropout(output)
            outputs += [output]
        return torch.stack(outputs), hidden, attn


class NMTModel(nn.Module):
    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def make_init_decoder_output(self, context):
        return context.new_zeros(context.size(1), self.decoder.hidden_size)

    def _fix_enc_hidden(self, h):
        # (layers * directions) x batch x dim -> layers x batch x (directions * dim)
        if self.encoder.num_directions == 2:
            return h.view(h.size(0) // 2, 2, h.size(1), h.size(2)).transpose(1, 2).contiguous() \
                .view(h.size(0) // 2, h.size(1), h.size(2) * 2)
        return h

    def forward(self, input):
        src = input[0]
        tgt = input[1][:-1]  # exclude last target from inputs
        enc_hidden, context = self.encoder(src)
        init_output = self.make_init_decoder_output(context)
        enc_hidden = (self._fix_enc_hidden(enc_hidden[0]), self._fix_enc_hidden(enc_hidden[1]))
        out, dec_hidden, _attn = self.decoder(tgt, enc_hidden, context, init_output)
        return out


def build(opt, src_vocab, tgt_vocab):
    """The model and generator as its ``train.py`` built them (the generator is model.generator)."""
    model = NMTModel(Encoder(opt, src_vocab), Decoder(opt, tgt_vocab))
    model.generator = nn.Sequential(nn.Linear(opt.rnn_size, tgt_vocab), nn.LogSoftmax(dim=-1))
    return model.eval()


@torch.no_grad()
def teacher_forced(model, src_ids, tgt_ids):
    """Log-probabilities (T - 1, V) of ``tgt_ids`` (bos first) after each of its tokens but the last."""
    src = (torch.tensor(src_ids).view(-1, 1), [len(src_ids)])
    out = model((src, torch.tensor(tgt_ids).view(-1, 1)))
    return model.generator(out[:, 0])


class Beam:
    """``onmt/Beam.py``: K hypotheses; done when the best of the beam ends in EOS."""

    def __init__(self, size):
        self.size = size
        self.done = False
        self.scores = torch.zeros(size)
        self.prevKs = []
        self.nextYs = [torch.full((size,), PAD, dtype=torch.long)]
        self.nextYs[0][0] = BOS
        self.attn = []

    def getCurrentState(self):
        return self.nextYs[-1]

    def getCurrentOrigin(self):
        return self.prevKs[-1]

    def advance(self, wordLk, attnOut):
        numWords = wordLk.size(1)
        if len(self.prevKs) > 0:
            beamLk = wordLk + self.scores.unsqueeze(1).expand_as(wordLk)
        else:
            beamLk = wordLk[0]
        bestScores, bestScoresId = beamLk.reshape(-1).topk(self.size, 0, True, True)
        self.scores = bestScores
        prevK = bestScoresId // numWords
        self.prevKs.append(prevK)
        self.nextYs.append(bestScoresId - prevK * numWords)
        self.attn.append(attnOut.index_select(0, prevK))
        if self.nextYs[-1][0] == EOS:
            self.done = True
        return self.done

    def sortBest(self):
        return torch.sort(self.scores, 0, True)

    def getHyp(self, k):
        hyp, attn = [], []
        for j in range(len(self.prevKs) - 1, -1, -1):
            hyp.append(self.nextYs[j + 1][k])
            attn.append(self.attn[j][k])
            k = self.prevKs[j][k]
        return hyp[::-1], torch.stack(attn[::-1])


def build_target_tokens(pred, src, attn, tgt_itos, replace_unk):
    """``Translator.buildTargetTokens``: labels up to EOS, EOS dropped, <unk> -> most attended source word."""
    tokens = []
    for i in pred:  # Dict.convertToLabels(pred, EOS)
        tokens += [tgt_itos[int(i)]]
        if i == EOS:
            break
    tokens = tokens[:-1]  # EOS
    if replace_unk:
        for i in range(len(tokens)):
            if tokens[i] == UNK_WORD:
                _, maxIndex = attn[i].max(0)
                tokens[i] = src[int(maxIndex)]
    return tokens


@torch.no_grad()
def translate(model, src_ids, src_words, tgt_itos, beam_size=5, max_sent_length=100, replace_unk=False):
    """``Translator.translate`` of one sentence: (words of the best hypothesis, its ids up to EOS)."""
    src = torch.tensor(src_ids).view(-1, 1)
    encStates, context = model.encoder((src, [len(src_ids)]))
    encStates = (model._fix_enc_hidden(encStates[0]), model._fix_enc_hidden(encStates[1]))
    context = context.repeat(1, beam_size, 1)
    decStates = (encStates[0].repeat(1, beam_size, 1), encStates[1].repeat(1, beam_size, 1))
    beam = Beam(beam_size)
    decOut = model.make_init_decoder_output(context)
    padMask = src.eq(PAD).t().unsqueeze(0).repeat(beam_size, 1, 1)
    for _ in range(max_sent_length):
        model.decoder.attn.applyMask(padMask)
        input = beam.getCurrentState().view(1, -1)
        decOut, decStates, attn = model.decoder(input, decStates, context, decOut)
        decOut = decOut.squeeze(0)
        wordLk = model.generator(decOut).view(beam_size, 1, -1).transpose(0, 1)
        attn = attn.view(beam_size, 1, -1).transpose(0, 1)
        done = beam.advance(wordLk[0], attn[0])
        for decState in decStates:  # h and c follow their beams; decOut (the input feed) stays in place
            sentStates = decState.view(-1, beam_size, 1, decState.size(2))[:, :, 0]
            sentStates.copy_(sentStates.index_select(1, beam.getCurrentOrigin()))
        if done:
            break
    model.decoder.attn.applyMask(None)
    _, ks = beam.sortBest()
    hyp, attn = beam.getHyp(ks[0])
    words = build_target_tokens(hyp, src_words, attn, tgt_itos, replace_unk)
    return words, [int(t) for t in hyp]


class SearchView:
    """The model as ``opennmt_models.greedy``/``beam_search`` call it: ``encoder(src, lengths)``,
    ``decoder.init_state(final)``, ``decoder.step(token, state, memory, lengths)``."""

    def __init__(self, model):
        self.model = model
        self.decoder = self

    def encoder(self, src, lengths):
        return self.model.encoder((src, lengths.tolist()))

    def init_state(self, final):
        hidden = tuple(self.model._fix_enc_hidden(h) for h in final)
        return {"hidden": hidden, "input_feed": torch.zeros_like(hidden[0][0])}

    def step(self, token, state, memory, lengths):  # token (B,), memory (S, B, H)
        mask = torch.arange(memory.size(0))[None, :] >= lengths[:, None]
        self.model.decoder.attn.applyMask(mask)
        out, hidden, attn = self.model.decoder(token.view(1, -1), state["hidden"], memory, state["input_feed"])
        self.model.decoder.attn.applyMask(None)
        return out[0], {"hidden": hidden, "input_feed": out[0], "attn": attn}
