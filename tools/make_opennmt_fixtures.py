"""Write tests/convert/fixtures/opennmt/: tiny OpenNMT-py 3.5.1 RNN checkpoints and its own translations.

Each model is built, saved and run by OpenNMT-py's code: its train options and their
checks (``onmt.opts``, ``ArgumentParser``), its vocabularies (``build_vocab`` from vocabulary
files), ``build_model`` with its ``-param_init`` initialisation, its ``Optimizer`` and
``ModelSaver`` (the checkpoint is what ``onmt_train`` writes at a step), then its
``InferenceEnginePY`` (what ``onmt_translate`` runs) for each search setting. The
translations and scores go to ``<name>.json`` beside ``<name>_step_100.pt``;
tests/convert/test_opennmt_fixtures.py checks mlxseq against them without OpenNMT-py.

Needs OpenNMT-py 3.5.1 and ConfigArgParse, installed without their dependencies (OpenNMT-py
pins torch<2.3 and runs here under newer torch as well)::

    pip install --no-deps OpenNMT-py==3.5.1 configargparse
    python tools/make_opennmt_fixtures.py

What OpenNMT-py imports but these RNN models never use is stood in for while the script
runs: pyonmttok (a C++ tokenizer whose ``Vocab`` OpenNMT-py uses as a token list; the stand-in
maps an unknown token to ``<unk>``'s id, as its ``Vocab::get_default_id`` does), and the
modules of transforms that are not used (spacy, rapidfuzz, ...).
"""

import argparse
import json
import os
import sys
import tempfile
import types
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "convert" / "fixtures" / "opennmt"
SRC_WORDS = [f"s{i}" for i in range(16)]
TGT_WORDS = [f"t{i}" for i in range(16)]
SENTENCES = ["s1 s4 s2", "s9 s0 s3 s3 s7 s5", "s6", "s2 zzz s8 s1", "s10 s11 s12 s13 s14 s15 s1"]  # zzz: unknown
STEP = 100

# name: (train options, seed, (generator weight scale, eos bias, embedding scale)): random weights
# (-param_init) made less uniform, as training would, so that outputs vary and some end early.
MODELS = {
    "brnn_lstm_2_layers_general_bridge": (
        ["-encoder_type", "brnn", "-rnn_type", "LSTM", "-layers", "2", "-hidden_size", "16", "-word_vec_size", "8",
         "-global_attention", "general", "-input_feed", "1", "-bridge", "-param_init", "0.4"], 1, (6.0, 0.6, 3.0)),
    "rnn_gru_1_layer_mlp_no_input_feed": (
        ["-encoder_type", "rnn", "-rnn_type", "GRU", "-layers", "1", "-hidden_size", "16", "-word_vec_size", "8",
         "-global_attention", "mlp", "-input_feed", "0", "-param_init", "0.4"], 1, (3.0, 2.0, 6.0)),
    "rnn_lstm_2_layers_dot": (
        ["-encoder_type", "rnn", "-rnn_type", "LSTM", "-layers", "2", "-hidden_size", "12", "-src_word_vec_size",
         "6", "-tgt_word_vec_size", "8", "-global_attention", "dot", "-input_feed", "1", "-param_init", "0.4"], 2,
        (3.0, 0.6, 3.0)),
}

# Each run: onmt_translate options (besides -model, -src, -gpu). Runs with -max_length_ratio 0 cut at
# -max_length; the last ones keep OpenNMT-py 3.5.1's defaults (-length_penalty avg -alpha 1.0,
# -max_length 250 -max_length_ratio 1.25: at most int(1.25 * longest source in the batch + 5) tokens).
# -batch_size 30 (its default) puts the five sentences in one batch, 1 translates each alone.
RUNS = [
    dict(beam_size=1, n_best=1, length_penalty="none", alpha=0.0, max_length=12, max_length_ratio=0.0, batch_size=30),
    dict(beam_size=3, n_best=2, length_penalty="none", alpha=0.0, max_length=12, max_length_ratio=0.0, batch_size=30),
    dict(beam_size=5, n_best=2, length_penalty="wu", alpha=0.6, max_length=12, max_length_ratio=0.0, batch_size=1),
    dict(beam_size=5, n_best=2, length_penalty="avg", alpha=1.0, max_length=12, max_length_ratio=0.0, batch_size=30),
    dict(beam_size=1, n_best=1, length_penalty="avg", alpha=1.0, max_length=250, max_length_ratio=1.25, batch_size=1),
    dict(beam_size=3, n_best=3, length_penalty="avg", alpha=1.0, max_length=250, max_length_ratio=1.25,
         batch_size=30),
]


class Vocab:
    """pyonmttok.Vocab as OpenNMT-py uses it: ids in insertion order; an unknown token gets
    ``default_id``, which is ``<unk>``'s id unless set (else the size)."""

    def __init__(self, tokens=()):
        self.ids_to_tokens, self.tokens_to_ids, self._default_id = [], {}, None
        for token in tokens:
            self.add_token(token)

    def add_token(self, token):
        if token not in self.tokens_to_ids:
            self.tokens_to_ids[token] = len(self.ids_to_tokens)
            self.ids_to_tokens.append(token)

    @property
    def default_id(self):
        return self.tokens_to_ids.get("<unk>", len(self)) if self._default_id is None else self._default_id

    @default_id.setter
    def default_id(self, value):
        self._default_id = value

    def lookup_token(self, token):
        return self.tokens_to_ids.get(token, self.default_id)

    def lookup_index(self, index):
        return self.ids_to_tokens[index] if index < len(self) else "<unk>"

    def __len__(self):
        return len(self.ids_to_tokens)

    def __contains__(self, token):
        return token in self.tokens_to_ids

    def __getitem__(self, token):
        return self.lookup_token(token)

    def __call__(self, tokens):
        return [self.lookup_token(t) for t in tokens]


def build_vocab_from_tokens(tokens, maximum_size=0, minimum_frequency=1, special_tokens=None):
    # Special tokens first, then the tokens in order (each file token once: the stable sort by
    # frequency of pyonmttok's resize keeps that order).
    return Vocab(list(special_tokens or []) + list(tokens))


def stand_ins():
    pyonmttok = types.ModuleType("pyonmttok")
    pyonmttok.Vocab, pyonmttok.build_vocab_from_tokens = Vocab, build_vocab_from_tokens
    sys.modules.setdefault("pyonmttok", pyonmttok)
    for name in ("spacy", "ahocorasick", "rapidfuzz", "rapidfuzz.fuzz", "rapidfuzz.process", "fasttext", "ctranslate2"):
        sys.modules.setdefault(name, types.ModuleType(name))


def train_options(work: Path, name: str, model_args: list[str]) -> argparse.Namespace:
    from onmt.bin.train import _get_parser
    from onmt.utils.parse import ArgumentParser

    corpus = work / "corpus.txt"
    corpus.write_text(" ".join(SRC_WORDS) + "\n")
    (work / "src.vocab").write_text("".join(f"{w}\t{10 + i}\n" for i, w in enumerate(reversed(SRC_WORDS))))
    (work / "tgt.vocab").write_text("".join(f"{w}\t{10 + i}\n" for i, w in enumerate(reversed(TGT_WORDS))))
    config = work / f"{name}.yaml"
    config.write_text(
        f"data:\n  corpus_1:\n    path_src: {corpus}\n    path_tgt: {corpus}\n"
        f"src_vocab: {work / 'src.vocab'}\ntgt_vocab: {work / 'tgt.vocab'}\nsave_model: {OUT / name}\n"
        f"train_steps: {STEP}\nsave_checkpoint_steps: {STEP}\ndecoder_type: rnn\n"
        "optim: adam\nlearning_rate: 0.001\n"
    )
    opt = _get_parser().parse_args(["-config", str(config), *model_args])
    ArgumentParser.validate_train_opts(opt)
    ArgumentParser.update_model_opts(opt)
    ArgumentParser.validate_model_opts(opt)
    return opt


def save_model(name: str, model_args: list[str], seed: int, sharpen: tuple[float, float, float]) -> Path:
    import torch
    from onmt.constants import DefaultTokens
    from onmt.model_builder import build_model
    from onmt.models.model_saver import build_model_saver
    from onmt.train_single import _get_model_opts, _init_train, configure_process
    from onmt.utils.optimizers import Optimizer

    with tempfile.TemporaryDirectory() as tmp:  # onmt.train_single.main up to the model
        opt = train_options(Path(tmp), name, [*model_args, "-seed", str(seed)])
        configure_process(opt, -1)
        checkpoint, vocabs, _ = _init_train(opt)
        model = build_model(_get_model_opts(opt, checkpoint), opt, vocabs, checkpoint, -1)
    scale, eos_bias, embedding_scale = sharpen
    tgt = vocabs["tgt"]
    with torch.no_grad():  # words that matter, a peaked output that ends sentences, never <blank> or <s>
        for key, parameter in model.named_parameters():
            if "embeddings" in key:
                parameter.mul_(embedding_scale)
        model.generator.weight.mul_(scale)
        model.generator.bias[[tgt[DefaultTokens.PAD], tgt[DefaultTokens.BOS]]] = -30.0
        model.generator.bias[tgt[DefaultTokens.EOS]] += eos_bias
    optim = Optimizer.from_opt(model, opt, checkpoint=None)
    build_model_saver(opt, opt, model, vocabs, optim, -1).save(STEP)
    return OUT / f"{name}_step_{STEP}.pt"


def translate(checkpoint: Path, run: dict) -> list[list[dict]]:
    from onmt.bin.translate import _get_parser
    from onmt.inference_engine import InferenceEnginePY
    from onmt.utils.misc import set_random_seed
    from onmt.utils.parse import ArgumentParser

    args = ["-model", str(checkpoint), "-src", "unused", "-output", os.devnull, "-gpu", "-1"]
    for key, value in run.items():
        args += [f"-{key}", str(value)]
    opt = _get_parser().parse_args(args)
    ArgumentParser.validate_translate_opts(opt)
    ArgumentParser._get_all_transform_translate(opt)
    ArgumentParser._validate_transforms_opts(opt)
    ArgumentParser.validate_translate_opts_dynamic(opt)
    set_random_seed(opt.seed, False)
    engine = InferenceEnginePY(opt)
    scores, predictions = engine.infer_list(SENTENCES)
    engine.terminate()
    return [[{"text": text, "score": float(score)} for text, score in zip(texts, found)]
            for texts, found in zip(predictions, scores)]


def main():
    stand_ins()
    import onmt
    import torch

    # torch >= 2.6 loads weights only by default; OpenNMT-py 3.5.1 (for torch < 2.3) pickles its options.
    torch.serialization.add_safe_globals([argparse.Namespace])
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (model_args, seed, sharpen) in MODELS.items():
        checkpoint = save_model(name, model_args, seed, sharpen)
        runs = [dict(options=run, translations=translate(checkpoint, run)) for run in RUNS]
        record = dict(opennmt_py=onmt.__version__, torch=torch.__version__, checkpoint=checkpoint.name,
                      train_options=model_args, sentences=SENTENCES, runs=runs)
        (OUT / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
        print(f"{checkpoint.name}: {checkpoint.stat().st_size} bytes")


if __name__ == "__main__":
    main()
