"""`mlxseq convert` of OpenNMT-py RNN checkpoints of each generation: OpenNMT-py's numbers and translations.

The checkpoints are built as OpenNMT-py's model_saver writes them, with the same pickled
class paths (torchtext Vocab and Field, OpenNMT-py's TextMultiField and Optim,
argparse.Namespace); classes that are not installed here are stand-ins registered under
those paths while the file is written.
"""

import argparse
import functools
import sys
import types
from collections import Counter, defaultdict

import mlx.core as mx
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import mlxseq
from mlxseq.cli import app
from mlxseq.pipelines.translator import TranslationOptions, Translator
from tests.convert import opennmt_dict_models as onmt17
from tests.convert import opennmt_models as onmt

runner = CliRunner()
WORDS = [f"w{i}" for i in range(10)]
SRC_OLD = ["<unk>", "<blank>"] + WORDS  # torchtext fields: the source has no <s>, </s>
TGT = ["<unk>", "<blank>", "<s>", "</s>"] + [f"t{i}" for i in range(9)]
SRC_V3 = ["<unk>", "<blank>", "<s>", "</s>"] + WORDS
SENTENCES = ["w1 w4 w2", "w9 w0 w3 w3 w7 w5", "w6", "w2 zzz w8 w1"]  # zzz is unknown
MAX_LENGTH = 12


def _fake(monkeypatch, path, kind="class"):
    """A stand-in class or function pickled under ``path`` (its modules created if missing)."""
    module, name = path.rsplit(".", 1)
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        if ".".join(parts[:i]) not in sys.modules:
            monkeypatch.setitem(sys.modules, ".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    if hasattr(sys.modules[module], name):
        return getattr(sys.modules[module], name)
    value = type(name, (), {}) if kind == "class" else (lambda *args, **kwargs: 0)
    value.__module__, value.__qualname__ = module, name
    monkeypatch.setattr(sys.modules[module], name, value, raising=False)
    return value


def _record(cls, **attributes):
    obj = cls()
    obj.__dict__.update(attributes)
    return obj


def _torchtext_vocab(monkeypatch, itos):
    Vocab = _fake(monkeypatch, "torchtext.vocab.Vocab")
    unk = _fake(monkeypatch, "torchtext.vocab._default_unk_index", kind="function")
    stoi = defaultdict(unk, {t: i for i, t in enumerate(itos)})
    return _record(Vocab, freqs=Counter(itos[2:]), itos=list(itos), stoi=stoi, vectors=None)


def _options(**kwargs):
    return argparse.Namespace(model_type="text", encoder_type="rnn", decoder_type="rnn", dropout=0.3,
                              global_attention_function="softmax", copy_attn=False, coverage_attn=False, **kwargs)


def _checkpoint(monkeypatch, generation, model, generator, opt):
    model_state = {k: v for k, v in model.state_dict().items() if "generator" not in k}
    if generation == "legacy":
        Optim = _fake(monkeypatch, "onmt.Optim.Optim")
        optim = _record(Optim, method="sgd", lr=1.0, optimizer=torch.optim.SGD(model.parameters(), lr=1.0))
        vocab = [("src", _torchtext_vocab(monkeypatch, SRC_OLD)), ("tgt", _torchtext_vocab(monkeypatch, TGT))]
        return {"model": model_state, "generator": generator.state_dict(), "vocab": vocab, "opt": opt,
                "epoch": 13, "optim": optim}
    if generation == "v2":
        Field = _fake(monkeypatch, "torchtext.data.field.Field")
        Multi = _fake(monkeypatch, "onmt.inputters.text_dataset.TextMultiField")
        tokenize = _fake(monkeypatch, "onmt.inputters.text_dataset._feature_tokenize", kind="function")

        def field(itos, side):
            base = _record(Field, vocab=_torchtext_vocab(monkeypatch, itos), pad_token="<blank>", unk_token="<unk>",
                           tokenize=functools.partial(tokenize, layer=0, feat_delim=None), dtype=torch.int64)
            return _record(Multi, fields=[(side, base)], is_target=side == "tgt", preprocessing=None)

        vocab = {"src": field(SRC_OLD, "src"), "tgt": field(TGT, "tgt"), "indices": _record(Field, vocab=None)}
        optim = torch.optim.Adam(model.parameters()).state_dict()
        return {"model": model_state, "generator": generator.state_dict(), "vocab": vocab, "opt": opt, "optim": optim}
    vocab = {"src": list(SRC_V3), "tgt": list(TGT), "decoder_start_token": "<s>", "data_task": "seq2seq"}
    return {"model": model_state, "generator": generator.state_dict(), "vocab": vocab, "opt": opt,
            "optim": torch.optim.Adam(model.parameters()).state_dict()}


CASES = {
    "legacy-lstm-brnn-2-layers-general": dict(generation="legacy", rnn_type="LSTM", brnn=True, layers=2, hidden=8,
                                              attn_type="general", input_feed=True, bridge=False),
    "v2-gru-rnn-mlp-bridge": dict(generation="v2", rnn_type="GRU", brnn=False, layers=1, hidden=8,
                                  attn_type="mlp", input_feed=True, bridge=True, src_emb=5),
    "v3-lstm-brnn-dot-std-decoder-bridge": dict(generation="v3", rnn_type="LSTM", brnn=True, layers=1, hidden=8,
                                                attn_type="dot", input_feed=False, bridge=True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_converted_model_translates_as_opennmt(tmp_path, monkeypatch, name):
    case = dict(CASES[name])
    generation = case.pop("generation")
    src_itos = SRC_V3 if generation == "v3" else SRC_OLD
    torch.manual_seed(len(name))
    model, generator = onmt.build(case["rnn_type"], case["brnn"], case["layers"], case["hidden"], case["attn_type"],
                                  case["input_feed"], case["bridge"], len(src_itos), len(TGT),
                                  src_emb=case.get("src_emb", 6), generator_sequential=generation != "v3")
    linear = generator[0] if generation != "v3" else generator
    with torch.no_grad():  # sharper and never <blank> or <s>, as after training
        linear.weight.mul_(3.0)
        linear.bias[[1, 2]] = -30.0
    opt = _options(rnn_type=case["rnn_type"], brnn=case["brnn"], layers=case["layers"], rnn_size=case["hidden"],
                   global_attention=case["attn_type"], input_feed=int(case["input_feed"]), bridge=case["bridge"])
    path = tmp_path / "model_step_1000.pt"
    torch.save(_checkpoint(monkeypatch, generation, model, generator, opt), path,
               _use_new_zipfile_serialization=generation != "legacy")

    result = runner.invoke(app, ["convert", str(path), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "found opennmt" in result.output
    translator = Translator.load(tmp_path / "out")
    tokens = translator.tokenizers.target.tokens
    assert tokens[:4] == ["<pad>", "<unk>", "<s>", "</s>"]
    to_mlx = {i: tokens.index("<pad>" if t == "<blank>" else t) for i, t in enumerate(TGT)}
    stoi = {t: i for i, t in enumerate(src_itos)}
    sources = [[stoi.get(w, 0) for w in s.split()] for s in SENTENCES]

    # numbers: teacher-forced log-probabilities
    model_mx = mlxseq.load(tmp_path / "out")
    tgt_in = [2, 5, 9, 4, 3, 7]
    for text, src_ids in zip(SENTENCES, sources):
        expected = onmt.teacher_forced(model, generator, src_ids, tgt_in).numpy()
        ids = translator.tokenizers.source.encode(text)
        state = model_mx.init_state(model_mx.encode(mx.array([ids]), mx.array([len(ids)])))
        for t, token in enumerate(tgt_in):
            logits, state = model_mx.step(mx.array([to_mlx[token]]), state)
            log_probs = np.array(logits[0] - mx.logsumexp(logits[0]))
            np.testing.assert_allclose(log_probs[[to_mlx[i] for i in range(len(TGT))]], expected[t], atol=1e-5)

    # tokens and text: greedy and beam search with OpenNMT-py's rules
    batch = 1 if case["bridge"] and case["layers"] * (2 if case["brnn"] else 1) > 1 else 8
    greedy = translator.translate(SENTENCES, TranslationOptions(beam_size=1, search="opennmt", max_length=MAX_LENGTH,
                                                                batch_size=batch))
    for hyps, src_ids in zip(greedy, sources):
        expected = onmt.greedy(model, generator, src_ids, bos=2, eos=3, max_length=MAX_LENGTH)
        assert hyps[0].tokens == [to_mlx[t] for t in expected]
        assert hyps[0].text == " ".join(TGT[t] for t in expected)
    options = TranslationOptions(beam_size=4, n_best=2, search="opennmt", max_length=MAX_LENGTH, batch_size=batch,
                                 length_penalty=0.6, length_penalty_kind="gnmt")
    for hyps, src_ids in zip(translator.translate(SENTENCES, options), sources):
        expected = onmt.beam_search(model, generator, src_ids, bos=2, eos=3, beam_size=4, n_best=2,
                                    max_length=MAX_LENGTH, alpha=0.6, length_penalty="wu")
        assert [h.tokens for h in hyps] == [[to_mlx[t] for t in tokens] for _, tokens in expected]
        np.testing.assert_allclose([h.score for h in hyps], [score for score, _ in expected], rtol=1e-5)

    (_, best), = onmt.beam_search(model, generator, sources[1], bos=2, eos=3, beam_size=4, max_length=MAX_LENGTH)
    result = runner.invoke(app, ["translate", SENTENCES[1], "--model", str(tmp_path / "out"), "--search", "opennmt",
                                 "--beam-size", "4", "--length-penalty", "0", "--max-length", str(MAX_LENGTH)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == " ".join(TGT[t] for t in best)


def test_opennmt_features_mlxseq_lacks_are_refused(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model, generator = onmt.build("LSTM", False, 1, 8, "general", True, False, len(SRC_V3), len(TGT))
    checkpoint = _checkpoint(monkeypatch, "v3", model, generator, _options())
    checkpoint["model"]["decoder.attn.linear_cover.weight"] = torch.zeros(8, 1)
    torch.save(checkpoint, tmp_path / "cov.pt")
    result = runner.invoke(app, ["convert", str(tmp_path / "cov.pt"), str(tmp_path / "out")])
    assert result.exit_code == 1 and "coverage attention" in result.output

    torch.save(checkpoint["model"], tmp_path / "bare.pt")
    result = runner.invoke(app, ["convert", str(tmp_path / "bare.pt"), str(tmp_path / "out")])
    assert result.exit_code == 1 and "'vocab'" in result.output


# --- the first checkpoints (2017): onmt.Dict vocabularies, word_lut embeddings ---------------

DICT_SPECIALS = ["<blank>", "<unk>", "<s>", "</s>"]  # onmt.Constants: PAD 0, UNK 1, BOS 2, EOS 3
SRC_DICT = DICT_SPECIALS + WORDS
TGT_DICT = DICT_SPECIALS + [f"t{i}" for i in range(9)]
DICT_CASES = {  # options, then how the generator is sharpened: (scale, eos bias)
    "brnn-2-layers-input-feed": (dict(layers=2, brnn=True, input_feed=1), (3.0, 1.0)),
    "rnn-1-layer-no-input-feed": (dict(layers=1, brnn=False, input_feed=0), (6.0, 2.0)),
}


def _onmt_dict(monkeypatch, labels, lower=False):
    Dict = _fake(monkeypatch, "onmt.Dict.Dict")
    return _record(Dict, idxToLabel=dict(enumerate(labels)), labelToIdx={t: i for i, t in enumerate(labels)},
                   frequencies={i: 1 for i in range(len(labels))}, special=[0, 1, 2, 3], lower=lower)


def _dict_options(**kwargs):
    """The options the first train.py saved."""
    options = dict(data="demo-train.pt", save_model="demo-model", train_from="", layers=2, rnn_size=8,
                   word_vec_size=6, input_feed=1, brnn=False, brnn_merge="concat", batch_size=64,
                   max_generator_batches=32, epochs=13, start_epoch=1, param_init=0.1, optim="sgd", max_grad_norm=5,
                   dropout=0.3, curriculum=False, learning_rate=1.0, learning_rate_decay=0.5, start_decay_at=8,
                   pre_word_vecs_enc=None, pre_word_vecs_dec=None, gpus=[], log_interval=50)
    return argparse.Namespace(**{**options, **kwargs})


def _dict_checkpoint(monkeypatch, model, opt, lower=False):
    """As the first train.py saved it (with torch.save's legacy layout of that time)."""
    Optim = _fake(monkeypatch, "onmt.Optim.Optim")
    optim = _record(Optim, params=list(model.parameters()), last_ppl=12.0, lr=1.0, max_grad_norm=5, method="sgd",
                    lr_decay=0.5, start_decay_at=8, start_decay=False,
                    optimizer=torch.optim.SGD(model.parameters(), lr=1.0))
    dicts = {"src": _onmt_dict(monkeypatch, SRC_DICT, lower), "tgt": _onmt_dict(monkeypatch, TGT_DICT, lower)}
    return {"model": {k: v for k, v in model.state_dict().items() if "generator" not in k},
            "generator": model.generator.state_dict(), "dicts": dicts, "opt": opt, "epoch": 13, "optim": optim}


def _first_model(name, opt, scale, eos_bias, unk_bias=-30.0):
    torch.manual_seed(len(name))
    model = onmt17.build(opt, len(SRC_DICT), len(TGT_DICT))
    with torch.no_grad():  # sharper, never <blank> or <s>, mostly ending before MAX_LENGTH, as after training
        for parameter in model.parameters():
            parameter.mul_(2.0)
        model.generator[0].weight.mul_(scale)
        model.generator[0].bias[[0, 2]] = -30.0
        model.generator[0].bias[1] = unk_bias
        model.generator[0].bias[3] += eos_bias
    return model


def _convert_first(tmp_path, monkeypatch, model, opt, **kwargs):
    path = tmp_path / "demo-model_acc_55.00_ppl_12.00_e13.pt"
    torch.save(_dict_checkpoint(monkeypatch, model, opt, **kwargs), path, _use_new_zipfile_serialization=False)
    return runner.invoke(app, ["convert", str(path), str(tmp_path / "out")])


@pytest.mark.parametrize("name", list(DICT_CASES))
def test_first_checkpoints_translate_as_their_translator(tmp_path, monkeypatch, name):
    options, (scale, eos_bias) = DICT_CASES[name]
    opt = _dict_options(**options)
    model = _first_model(name, opt, scale, eos_bias)
    result = _convert_first(tmp_path, monkeypatch, model, opt)
    assert result.exit_code == 0, result.output
    assert "found opennmt: OpenNMT-py 2017 (onmt.Dict" in result.output
    translator = Translator.load(tmp_path / "out")
    assert translator.tokenizers.target.tokens == ["<pad>"] + TGT_DICT[1:]  # the same ids
    stoi = {t: i for i, t in enumerate(SRC_DICT)}
    sources = [[stoi.get(w, onmt17.UNK) for w in s.split()] for s in SENTENCES]

    # numbers: NMTModel.forward and the generator against the converted model's steps
    model_mx = mlxseq.load(tmp_path / "out")
    tgt = [2, 5, 9, 4, 3, 7, 3]
    for text, src_ids in zip(SENTENCES, sources):
        expected = onmt17.teacher_forced(model, src_ids, tgt).numpy()
        ids = translator.tokenizers.source.encode(text)
        assert ids == src_ids
        state = model_mx.init_state(model_mx.encode(mx.array([ids]), mx.array([len(ids)])))
        for t, token in enumerate(tgt[:-1]):
            logits, state = model_mx.step(mx.array([token]), state)
            np.testing.assert_allclose(np.array(logits[0] - mx.logsumexp(logits[0])), expected[t], atol=1e-5)

    # tokens and text: its translate.py -beam_size 1, then OpenNMT-py's later beam search
    greedy = translator.translate(SENTENCES, TranslationOptions(beam_size=1, search="opennmt", max_length=MAX_LENGTH))
    ended = 0
    for hyps, text, src_ids in zip(greedy, SENTENCES, sources):
        words, ids = onmt17.translate(model, src_ids, text.split(), TGT_DICT, beam_size=1, max_sent_length=MAX_LENGTH)
        if ids[-1] == onmt17.EOS:
            assert hyps[0].tokens == ids[:-1] and hyps[0].text == " ".join(words)
            ended += 1
        else:  # at the limit buildTargetTokens drops the last word as if it were EOS; mlxseq keeps it
            assert hyps[0].tokens == ids and hyps[0].text == " ".join(words + [TGT_DICT[ids[-1]]])
    assert ended >= 3
    options = TranslationOptions(beam_size=4, n_best=2, search="opennmt", max_length=MAX_LENGTH,
                                 length_penalty=0.6, length_penalty_kind="gnmt")
    for hyps, src_ids in zip(translator.translate(SENTENCES, options), sources):
        expected = onmt.beam_search(onmt17.SearchView(model), model.generator, src_ids, bos=2, eos=3, beam_size=4,
                                    n_best=2, max_length=MAX_LENGTH, alpha=0.6, length_penalty="wu")
        assert [h.tokens for h in hyps] == [tokens for _, tokens in expected]
        np.testing.assert_allclose([h.score for h in hyps], [score for score, _ in expected], rtol=1e-5)
    assert "first `train.py`" in (tmp_path / "out" / "README.md").read_text()


def test_first_checkpoints_mlxseq_cannot_hold_are_refused(tmp_path, monkeypatch):
    opt = _dict_options(layers=1, brnn=True)
    model = _first_model("lower", opt, 3.0, 1.0)
    result = _convert_first(tmp_path, monkeypatch, model, opt, lower=True)
    assert result.exit_code == 1 and "-lower" in result.output

    # Directions added rather than concatenated: each as wide as the decoder.
    opt = _dict_options(layers=1, brnn=True, brnn_merge="sum")
    model = _first_model("sum", opt, 3.0, 1.0)
    model.encoder.rnn = torch.nn.LSTM(6, 8, bidirectional=True)
    result = _convert_first(tmp_path, monkeypatch, model, opt)
    assert result.exit_code == 1 and "brnn_merge sum" in result.output and "concatenates" in result.output


# --- -replace_unk ----------------------------------------------------------------------------


def test_replace_unk_as_the_first_translator(tmp_path, monkeypatch):
    opt = _dict_options(layers=2, brnn=True)
    model = _first_model("brnn-2-layers-input-feed", opt, 3.0, 2.0, unk_bias=1.0)
    assert _convert_first(tmp_path, monkeypatch, model, opt).exit_code == 0
    translator = Translator.load(tmp_path / "out")
    stoi = {t: i for i, t in enumerate(SRC_DICT)}
    options = TranslationOptions(beam_size=1, search="opennmt", max_length=MAX_LENGTH, replace_unk=True)
    replaced = 0
    for hyps, text in zip(translator.translate(SENTENCES, options), SENTENCES):
        src_ids = [stoi.get(w, onmt17.UNK) for w in text.split()]
        words, ids = onmt17.translate(model, src_ids, text.split(), TGT_DICT, beam_size=1,
                                      max_sent_length=MAX_LENGTH, replace_unk=True)
        assert ids[-1] == onmt17.EOS
        assert hyps[0].text == " ".join(words)
        replaced += ids.count(onmt17.UNK)
    assert replaced >= 2


def test_replace_unk_as_opennmt(tmp_path, monkeypatch):
    torch.manual_seed(3)
    model, generator = onmt.build("LSTM", True, 1, 8, "general", True, False, len(SRC_V3), len(TGT),
                                  generator_sequential=False)
    with torch.no_grad():  # <unk> (id 0 there) often, never <blank> or <s>
        generator.weight.mul_(3.0)
        generator.bias[[1, 2]] = -30.0
        generator.bias[0] += 2.0
    opt = _options(rnn_type="LSTM", brnn=True, layers=1, rnn_size=8, global_attention="general", input_feed=1)
    torch.save(_checkpoint(monkeypatch, "v3", model, generator, opt), tmp_path / "model.pt")
    assert runner.invoke(app, ["convert", str(tmp_path / "model.pt"), str(tmp_path / "out")]).exit_code == 0
    translator = Translator.load(tmp_path / "out")
    stoi = {t: i for i, t in enumerate(SRC_V3)}
    sources = [[stoi.get(w, 0) for w in s.split()] for s in SENTENCES]

    greedy = TranslationOptions(beam_size=1, search="opennmt", max_length=MAX_LENGTH, replace_unk=True)
    replaced = 0
    for hyps, text, src_ids in zip(translator.translate(SENTENCES, greedy), SENTENCES, sources):
        tokens, attention = onmt.greedy(model, generator, src_ids, bos=2, eos=3, max_length=MAX_LENGTH,
                                        with_attention=True)
        assert hyps[0].text == " ".join(onmt.build_target_tokens(tokens, attention, text.split(), TGT))
        replaced += tokens.count(0)
    assert replaced >= 2

    beam = TranslationOptions(beam_size=4, n_best=3, search="opennmt", max_length=MAX_LENGTH, replace_unk=True,
                              length_penalty=0.0)
    replaced = 0
    for hyps, text, src_ids in zip(translator.translate(SENTENCES, beam), SENTENCES, sources):
        expected = onmt.beam_search(model, generator, src_ids, bos=2, eos=3, beam_size=4, n_best=3,
                                    max_length=MAX_LENGTH, with_attention=True)
        assert [h.text for h in hyps] == [" ".join(onmt.build_target_tokens(tokens, attention, text.split(), TGT))
                                          for _, tokens, attention in expected]
        replaced += sum(tokens.count(0) for _, tokens, _ in expected)
    assert replaced >= 2

    result = runner.invoke(app, ["translate", SENTENCES[3], "--model", str(tmp_path / "out"), "--search", "opennmt",
                                 "--beam-size", "4", "--length-penalty", "0", "--max-length", str(MAX_LENGTH),
                                 "--replace-unk"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == translator.translate([SENTENCES[3]], beam)[0][0].text
