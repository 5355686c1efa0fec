"""Translation with a model folder: order, beam vs greedy, n-best, errors, and the CLI commands."""

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from typer.testing import CliRunner

import mlxseq
from mlxseq.checkpoint import ModelFolderError, save_model
from mlxseq.cli import app
from mlxseq.data import TokenizerPair, WordTokenizer, pad_pairs
from mlxseq.losses import label_smoothed_cross_entropy
from mlxseq.models.seq2seq import ModelArgs, build_model
from mlxseq.pipelines.translator import TranslationOptions, Translator, translate

SOURCE_WORDS = "eins zwei drei vier fünf sechs sieben acht".split()
TARGET_WORDS = "ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT".split()
runner = CliRunner()


def _toy_pairs(rng, n):
    """Source: 2-6 German number words; target: the English words in reverse order."""
    pairs = []
    for _ in range(n):
        idx = rng.integers(0, 8, rng.integers(2, 7))
        pairs.append((" ".join(SOURCE_WORDS[i] for i in idx), " ".join(TARGET_WORDS[i] for i in idx[::-1])))
    return pairs


def expected(sentence):
    return " ".join(TARGET_WORDS[SOURCE_WORDS.index(w)] for w in sentence.split()[::-1])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    rng = np.random.default_rng(0)
    tokenizers = TokenizerPair(WordTokenizer.build(SOURCE_WORDS), WordTokenizer.build(TARGET_WORDS))
    mx.random.seed(0)
    args = ModelArgs(12, 12, embed_size=16, hidden_size=32, rnn_type="gru", attention="general", dropout=0.0)
    model = build_model(args)
    optimizer = optim.Adam(learning_rate=1e-2)

    def loss_fn(model, batch):
        total, count = label_smoothed_cross_entropy(
            model(batch.source, batch.source_lengths, batch.target_input), batch.target_output, pad_id=0
        )
        return total / count

    step = nn.value_and_grad(model, loss_fn)
    for _ in range(1200):  # enough that every test sentence comes out right, whatever the float rounding
        pairs = _toy_pairs(rng, 32)
        batch = pad_pairs([tokenizers.source.encode(s) for s, _ in pairs], [tokenizers.target.encode(t) for _, t in pairs])
        _, grads = step(model, batch)
        optimizer.update(model, grads)
        mx.eval(model.parameters(), optimizer.state)
    path = tmp_path_factory.mktemp("toy") / "model"
    save_model(path, model, "seq2seq", args)
    tokenizers.save(path)
    return path


def test_translations_come_back_in_input_order(folder):
    sentences = ["eins zwei drei vier fünf", "acht eins", "drei vier", "sieben sechs fünf", "zwei eins"]
    translator = Translator.load(folder)
    for beam in (1, 4):
        found = translator.translate(sentences, TranslationOptions(beam_size=beam, batch_size=2))
        assert [h[0].text for h in found] == [expected(s) for s in sentences]


def test_nbest_is_sorted_and_beam_one_is_greedy(folder):
    translator = Translator.load(folder)
    sentences = ["eins zwei drei", "vier fünf"]
    nbest = translator.translate(sentences, TranslationOptions(beam_size=4, n_best=3))
    for hyps in nbest:
        assert len(hyps) == 3
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        assert len({h.text for h in hyps}) == 3
    greedy = translator.translate(sentences, TranslationOptions(beam_size=1))
    beam1 = translator.translate(sentences, TranslationOptions(beam_size=1, length_penalty=0.0))
    assert [g[0].tokens for g in greedy] == [b[0].tokens for b in beam1]
    assert translate("acht sieben", model=translator) == "SEVEN EIGHT"


def test_inputs_that_need_a_documented_behaviour(folder):
    translator = Translator.load(folder)
    empty, unknown = translator.translate(["", "eins Fahrrad zwei"], TranslationOptions(beam_size=2))
    assert empty[0].text == "" and empty[0].tokens == []
    assert "<unk>" not in unknown[0].text  # unseen words encode to <unk>; the model never outputs it
    with pytest.raises(ValueError, match="input 1 has 9 tokens, more than max_input_tokens=8"):
        translator.translate(["eins " * 9], TranslationOptions(max_input_tokens=8))
    with pytest.raises(ValueError, match="n_best must be in"):
        TranslationOptions(beam_size=2, n_best=3)


def test_a_folder_without_tokenizer_or_of_another_type(folder, tmp_path):
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    for name in ("config.json", "model.safetensors"):
        (incomplete / name).write_bytes((folder / name).read_bytes())
    with pytest.raises(ModelFolderError, match="no tokenizer"):
        Translator.load(incomplete)
    from mlxseq.models.recurrent import ModelArgs as LayerArgs, build_model

    save_model(tmp_path / "layer", build_model(LayerArgs("gru", 2, 3)), "recurrent", LayerArgs("gru", 2, 3))
    with pytest.raises(ModelFolderError, match="needs model_type 'seq2seq'"):
        Translator.load(tmp_path / "layer")


def test_cli_translate_arguments_file_stdin_and_attention(folder, tmp_path):
    result = runner.invoke(app, ["translate", "--model", str(folder), "eins zwei", "drei acht"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:2] == ["TWO ONE", "EIGHT THREE"]

    (tmp_path / "in.txt").write_text("vier fünf\nsechs zwei\n")
    out = tmp_path / "out.txt"
    result = runner.invoke(app, ["translate", "--model", str(folder), "-i", str(tmp_path / "in.txt"), "-o", str(out),
                                 "--attention", str(tmp_path / "att.png")])
    assert result.exit_code == 0, result.output
    assert out.read_text() == "FIVE FOUR\nTWO SIX\n"
    for name in ("att-1.png", "att-2.png"):  # one heatmap per sentence
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "att.png").exists()
    result = runner.invoke(app, ["translate", "--model", str(folder), "eins zwei", "--attention", str(tmp_path / "one.png")])
    assert result.exit_code == 0 and (tmp_path / "one.png").is_file()

    result = runner.invoke(app, ["translate", "--model", str(folder), "--n-best", "2"], input="sieben acht\n")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2 and lines[0].startswith("EIGHT SEVEN\t")

    result = runner.invoke(app, ["translate", "--model", str(tmp_path / "nowhere"), "eins"])
    assert result.exit_code == 1 and "no model folder at" in result.output

    result = runner.invoke(app, ["translate", "--model", str(folder), "-i", str(tmp_path / "missing.txt")])
    assert result.exit_code == 1 and "missing.txt" in result.output
    result = runner.invoke(app, ["translate", "--model", str(folder), "-o", str(tmp_path), "eins zwei"])
    assert result.exit_code == 1 and f"cannot write {tmp_path}" in result.output


def test_cli_evaluate_prints_scores_with_signatures(folder, tmp_path):
    sentences = ["eins zwei drei", "vier fünf sechs sieben", "acht eins"]
    (tmp_path / "src").write_text("\n".join(sentences) + "\n")
    (tmp_path / "ref").write_text("\n".join(expected(s) for s in sentences) + "\n")
    result = runner.invoke(app, ["evaluate", "--model", str(folder), "--src", str(tmp_path / "src"),
                                 "--ref", str(tmp_path / "ref"), "--beam-size", "3"])
    assert result.exit_code == 0, result.output
    assert "BLEU 100.00  nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:" in result.output
    assert "chrF 100.00" in result.output
    version = mlxseq.__version__
    assert f"decoding: beam:3|lp:0.6(gnmt)|max:2x+10|search:mlxseq|unk:no|mlxseq:{version}; 3 sentences" in result.output


def test_the_decoding_signature_names_every_setting_that_changes_the_output():
    from mlxseq.decoding import DecodingArgs

    version = mlxseq.__version__
    assert DecodingArgs(beam_size=1).signature() == f"greedy|max:2x+10|search:mlxseq|unk:no|mlxseq:{version}"
    assert DecodingArgs(length_penalty=1.0, length_penalty_kind="average", max_length=40, replace_unk=True,
                        search="opennmt").signature() == (
        f"beam:5|lp:1(average)|max:40|search:opennmt|unk:replace|mlxseq:{version}")
    with pytest.raises(ValueError, match="length_penalty_kind must be 'gnmt' or 'average', got 'wu'"):
        DecodingArgs(length_penalty_kind="wu")


def _unk_loving(translator, sentences, wanted=4):
    """Raise the <unk> logit's bias until greedy search writes ``wanted`` <unk>s over ``sentences``.

    The boost that does it depends on the last bits of the toy model's weights
    (BLAS kernels differ between CPUs), so it is searched for, not fixed.
    """
    unk_id = translator.tokenizers.target.unk_id
    original = np.array(translator.model.output.bias)
    for boost in np.arange(4.0, 40.0, 0.5):
        bias = original.copy()
        bias[unk_id] += boost
        translator.model.output.bias = mx.array(bias)
        found = translator.translate(sentences, TranslationOptions(beam_size=1, allow_unk=True))
        if sum(hyps[0].tokens.count(unk_id) for hyps in found) >= wanted:
            return translator
    raise AssertionError(f"no bias up to {boost} made the toy model write {wanted} <unk>s")


def test_replace_unk_copies_the_source_word_attended_most(folder):
    # A copy of the toy model that likes <unk>: each <unk> it writes becomes a source word.
    sentences = ["eins zwei drei", "vier fünf sechs sieben acht", "acht Fahrrad eins", "zwei sechs"]
    translator = _unk_loving(Translator.load(folder), sentences)
    target = translator.tokenizers.target
    replaced = 0
    for beam_size in (1, 4):
        plain = translator.translate(sentences, TranslationOptions(beam_size=beam_size, allow_unk=True))
        found = translator.translate(sentences, TranslationOptions(beam_size=beam_size, replace_unk=True))
        for text, (translation,), (unreplaced,) in zip(sentences, found, plain):
            assert translation.tokens == unreplaced.tokens  # the same search, <unk> allowed
            weights = translator.attention(text, translation)  # recomputed, one sentence alone
            words = [text.split()[int(np.argmax(weights[i]))] if token == target.unk_id else target.tokens[token]
                     for i, token in enumerate(translation.tokens)]
            assert translation.text == " ".join(words)
            replaced += translation.tokens.count(target.unk_id)
    assert replaced >= 4


def test_replace_unk_needs_words_and_attention(folder, tmp_path):
    from mlxseq.data import CharTokenizer

    args = ModelArgs(12, 12, embed_size=8, hidden_size=8, attention="none", dropout=0.0)
    save_model(tmp_path / "plain", build_model(args), "seq2seq", args)
    Translator.load(folder).tokenizers.save(tmp_path / "plain")
    with pytest.raises(ValueError, match="no attention"):
        Translator.load(tmp_path / "plain").translate(["eins"], TranslationOptions(replace_unk=True))
    chars = CharTokenizer.build("einszwdr")
    args = ModelArgs(chars.vocab_size, chars.vocab_size, embed_size=8, hidden_size=8, dropout=0.0)
    save_model(tmp_path / "chars", build_model(args), "seq2seq", args)
    TokenizerPair(chars, chars).save(tmp_path / "chars")
    result = runner.invoke(app, ["translate", "--model", str(tmp_path / "chars"), "--replace-unk", "eins"])
    assert result.exit_code == 1 and "word tokenizers" in result.output and "CharTokenizer" in result.output


@pytest.mark.parametrize("arguments", [[], ["--beam-size", "1"], ["--search", "opennmt"]])
def test_a_model_with_nan_weights_says_so(folder, tmp_path, arguments):
    import shutil

    shutil.copytree(folder, tmp_path / "nan")
    weights = mx.load(str(tmp_path / "nan" / "model.safetensors"))
    weights["output.bias"] = weights["output.bias"] * float("nan")
    mx.save_safetensors(str(tmp_path / "nan" / "model.safetensors"), weights)
    result = runner.invoke(app, ["translate", "--model", str(tmp_path / "nan"), *arguments, "eins zwei"])
    assert result.exit_code == 1
    assert result.output.strip() == (f"error: the model produced NaN or infinite scores (model {tmp_path / 'nan'}): "
                                     "its weights hold NaN or infinite values, or it overflowed")


def test_translate_at_a_terminal_answers_each_line_as_it_arrives(folder):
    import os
    import pty
    import select
    import subprocess
    import sys

    main, secondary = pty.openpty()
    process = subprocess.Popen([sys.executable, "-c", "from mlxseq.cli import app; app()", "translate", "--model", str(folder)],
                               stdin=secondary, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    os.close(secondary)
    try:
        os.write(main, "eins zwei drei\n".encode())
        ready, _, _ = select.select([process.stdout], [], [], 120)
        assert ready, "no translation before the end of input"
        assert process.stdout.readline().decode().strip() == expected("eins zwei drei")
        os.write(main, "vier fünf\n".encode())
        assert process.stdout.readline().decode().strip() == expected("vier fünf")
        os.write(main, b"\x04")  # Ctrl-D: end of input
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
        os.close(main)



def test_a_folder_recommends_its_decoding_settings_and_options_override_them(folder, tmp_path):
    import json
    import shutil

    shutil.copytree(folder, tmp_path / "m")
    (tmp_path / "m" / "generation_config.json").write_text(json.dumps({"beam_size": 3, "length_penalty": 1.0}))
    translator = Translator.load(tmp_path / "m")
    assert translator.options() == TranslationOptions(beam_size=3, length_penalty=1.0)
    assert translator.options(beam_size=2, length_penalty=None) == TranslationOptions(beam_size=2, length_penalty=1.0)
    (tmp_path / "src.txt").write_text("eins zwei\n")
    (tmp_path / "ref.txt").write_text(expected("eins zwei") + "\n")
    used = runner.invoke(app, ["evaluate", "--model", str(tmp_path / "m"), "--src", str(tmp_path / "src.txt"),
                               "--ref", str(tmp_path / "ref.txt")])
    assert used.exit_code == 0 and "decoding: beam:3|lp:1(gnmt)|" in used.output, used.output
    given = runner.invoke(app, ["evaluate", "--model", str(tmp_path / "m"), "--src", str(tmp_path / "src.txt"),
                                "--ref", str(tmp_path / "ref.txt"), "--beam-size", "2"])
    assert "decoding: beam:2|lp:1(gnmt)|" in given.output, given.output
    (tmp_path / "m" / "generation_config.json").write_text(json.dumps({"beam_size": 0}))
    bad = runner.invoke(app, ["translate", "--model", str(tmp_path / "m"), "eins"])
    assert bad.exit_code == 1
    assert bad.output.strip() == f"error: {tmp_path / 'm' / 'generation_config.json'}: beam_size must be in [1, 1000], got 0"


def test_the_bundled_model_decodes_with_the_settings_of_its_card():
    assert Translator.load().options() == TranslationOptions(beam_size=10, length_penalty=1.0)


def test_progress_is_reported_batch_by_batch_and_adds_up_to_every_text(folder):
    reported = []
    texts = ["eins zwei", "", "drei", "vier fünf sechs"] * 5
    translator = Translator.load(folder)
    found = translator.translate(texts, TranslationOptions(beam_size=1, batch_size=4), on_progress=reported.append)
    assert sum(reported) == len(texts) == len(found) and reported[0] == 5  # the five empty texts first
    assert max(reported[1:]) <= 4


def test_attention_rows_are_the_output_tokens_in_order(folder):
    # The toy model reverses its input: output token i translates source word S-1-i, so the
    # attention row of each output token (the step that predicts it) peaks on that word.
    translator = Translator.load(folder)
    for sentence in ["eins zwei drei", "vier fünf sechs sieben acht", "zwei acht"]:
        (found,) = translator.translate([sentence], TranslationOptions(beam_size=1))[0:1]
        best = found[0]
        assert best.text == expected(sentence)
        weights = translator.attention(sentence, best)
        words = len(sentence.split())
        assert weights.shape == (len(best.tokens) + 1, words)  # one row per output token, then </s>
        assert np.allclose(weights.sum(axis=1), 1.0, atol=1e-5)
        assert [int(np.argmax(row)) for row in weights[:-1]] == list(range(words - 1, -1, -1)), weights.round(2)


@pytest.mark.parametrize("search", ["beam", "opennmt"])
def test_sources_leave_the_beams_as_they_end_and_each_gets_what_repeated_memory_gets(folder, search, monkeypatch):
    # A trained model on sources of 2 to 6 words: the short ones end first and leave the batch,
    # the memory of those still running is gathered by source; the memory is kept once per source.
    from mlxseq.decoding import beam_search, opennmt_beam_search
    from tests.support.batches import batches_shrink

    batches_shrink(monkeypatch, True)  # as on the CPU, whatever the device
    model = Translator.load(folder).model
    tokenizers = Translator.load(folder).tokenizers
    sentences = ["acht eins", "eins zwei drei vier fünf sechs", "drei vier", "sieben sechs fünf zwei"]
    ids = [tokenizers.source.encode(s) for s in sentences]
    src = mx.array([s + [0] * (6 - len(s)) for s in ids])
    state = model.init_state(model.encode(src, mx.array([len(s) for s in ids])))
    rows = []

    class Recording:  # the model, recording the rows of each step; with or without its expand_beams
        def __init__(self, per_source):
            if per_source:
                self.expand_beams = model.expand_beams

        def step(self, tokens, state):
            rows.append(tokens.shape[0])
            return model.step(tokens, state)

    decode = beam_search if search == "beam" else opennmt_beam_search
    common = dict(bos_id=model.args.bos_id, eos_id=model.args.eos_id, beam_size=4, max_tokens=12, n_best=2,
                  attention=lambda s: s["attention"])
    found = decode(Recording(per_source=True), state, **common)
    assert rows[0] == 16 and rows[-1] < 16  # sources left
    rows.clear()
    repeated = decode(Recording(per_source=False), state, **common)
    assert [[h.tokens for h in hyps] for hyps in found] == [[h.tokens for h in hyps] for hyps in repeated]
    assert [tokenizers.target.decode(hyps[0].tokens) for hyps in found] == [expected(s) for s in sentences]
    for ours, theirs in zip(found, repeated):
        np.testing.assert_allclose([h.score for h in ours], [h.score for h in theirs], rtol=1e-5)
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a.attention, b.attention, atol=1e-6)
