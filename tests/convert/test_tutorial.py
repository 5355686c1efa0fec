"""`mlxseq convert` of the PyTorch seq2seq tutorial's models: logits, greedy tokens and text as torch's."""

import mlx.core as mx
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import mlxseq
from mlxseq.cli import app
from mlxseq.decoding.search import greedy_decode
from mlxseq.pipelines.translator import TranslationOptions, Translator
from tests.convert import tutorial_models as tut

runner = CliRunner()
H, SRC_WORDS, TGT_WORDS = 16, 12, 10
SRC_VOCAB = ["SOS", "EOS"] + [f"s{i}" for i in range(SRC_WORDS)]
TGT_VOCAB = ["SOS", "EOS"] + [f"t{i}" for i in range(TGT_WORDS)]
SOURCES = [[2, 5, 7], [3, 4, 9, 10, 11, 2, 6], [8], [13, 12, 5, 5]]  # tutorial ids, without EOS


def _trained_like(decoder):
    """Random weights, sharpened so greedy outputs vary; SOS never wins, as after training."""
    with torch.no_grad():
        decoder.out.weight.mul_(4.0)
        decoder.out.bias[tut.SOS_token] = -20.0
    return decoder.eval()


def _new_tutorial(seed=0):
    torch.manual_seed(seed)
    encoder = tut.EncoderRNN(len(SRC_VOCAB), H).eval()
    return encoder, _trained_like(tut.AttnDecoderRNN(H, len(TGT_VOCAB)))


def _old_tutorial(seed=0):
    torch.manual_seed(seed)
    encoder = tut.OldEncoderRNN(len(SRC_VOCAB), H).eval()
    return encoder, _trained_like(tut.OldAttnDecoderRNN(H, len(TGT_VOCAB)))


def _vocab_files(tmp_path, words_only=False):
    skip = 2 if words_only else 0
    (tmp_path / "src.txt").write_text("\n".join(SRC_VOCAB[skip:]) + "\n")
    (tmp_path / "tgt.txt").write_text("\n".join(TGT_VOCAB[skip:]))
    return ["--src-vocab", str(tmp_path / "src.txt"), "--tgt-vocab", str(tmp_path / "tgt.txt")]


def _convert(tmp_path, *args):
    result = runner.invoke(app, ["convert", *map(str, args)])
    assert result.exit_code == 0, result.output
    assert "found pytorch-tutorial" in result.output
    return tmp_path / "out"


def _mlx_log_probs(model, src_ids, tgt_in):
    """Teacher-forced log-probabilities in the tutorial's ids: (T, V_tutorial)."""
    state = model.init_state(model.encode(mx.array([[i + 2 for i in src_ids]]), mx.array([len(src_ids)])))
    rows = []
    for token in tgt_in:
        logits, state = model.step(mx.array([token + 2]), state)
        rows.append(logits[0] - mx.logsumexp(logits[0]))
    return np.array(mx.stack(rows))[:, 2:]  # <pad> and <unk> have no tutorial id


def _translate(folder, sources):
    """Greedy translation of a batch, stopping after MAX_LENGTH tokens as the tutorial does."""
    translator = Translator.load(folder)
    texts = [" ".join(SRC_VOCAB[i] for i in ids) for ids in sources]
    found = translator.translate(texts, TranslationOptions(beam_size=1, max_length_ratio=1e-3, max_length_offset=tut.MAX_LENGTH))
    return [hyps[0].text for hyps in found]


def _greedy_ids(model, src_ids, max_tokens):
    state = model.init_state(model.encode(mx.array([[i + 2 for i in src_ids]]), mx.array([len(src_ids)])))
    (hyp,) = greedy_decode(model, state, bos_id=2, eos_id=3, max_tokens=max_tokens)
    return [t - 2 for t in hyp.tokens]


@pytest.mark.parametrize("layout", ["nested", "two-files", "prefixed-legacy"])
def test_current_tutorial_gives_torch_logits_tokens_and_text(tmp_path, layout):
    encoder, decoder = _new_tutorial()
    vocab = _vocab_files(tmp_path, words_only=layout == "two-files")
    if layout == "nested":
        torch.save({"epoch": 80, "encoder": encoder.state_dict(), "decoder": decoder.state_dict()}, tmp_path / "m.pt")
        folder = _convert(tmp_path, tmp_path / "m.pt", tmp_path / "out", *vocab)
    elif layout == "two-files":
        torch.save(encoder.state_dict(), tmp_path / "encoder.pt")
        torch.save(decoder.state_dict(), tmp_path / "decoder.pt")
        folder = _convert(tmp_path, tmp_path / "encoder.pt", tmp_path / "out", "--decoder", tmp_path / "decoder.pt", *vocab)
    else:
        wrapper = torch.nn.ModuleDict({"enc": encoder, "dec": decoder})
        torch.save(wrapper.state_dict(), tmp_path / "m.pt", _use_new_zipfile_serialization=False)
        folder = _convert(tmp_path, tmp_path / "m.pt", tmp_path / "out", "--format", "pytorch-tutorial", *vocab)
    model = mlxseq.load(folder)
    assert model.args.decoder_style == "bahdanau" and model.args.source_eos

    for src_ids in SOURCES:
        target = torch.tensor([[5, 2, 9, 3, 1, 4, 4, 7, 11, 6]])  # teacher-forced inputs after SOS
        with torch.no_grad():
            outputs, hidden = encoder(torch.tensor([src_ids + [tut.EOS_token]]))
            expected, _, _ = decoder(outputs, hidden, target)
        tgt_in = [tut.SOS_token] + target[0, :-1].tolist()
        np.testing.assert_allclose(_mlx_log_probs(model, src_ids, tgt_in), expected[0].numpy(), atol=1e-5)

    expected_ids = [tut.evaluate(encoder, decoder, ids) for ids in SOURCES]
    assert any(len(ids) > 2 for ids in expected_ids)  # the comparison covers real sequences
    assert [_greedy_ids(model, ids, tut.MAX_LENGTH) for ids in SOURCES] == expected_ids
    assert _translate(folder, SOURCES) == [" ".join(TGT_VOCAB[i] for i in ids) for ids in expected_ids]


def test_older_tutorial_with_fixed_attention_positions(tmp_path):
    encoder, decoder = _old_tutorial(seed=1)
    torch.save({"encoder_state_dict": encoder.state_dict(), "decoder_state_dict": decoder.state_dict()}, tmp_path / "m.pt")
    folder = _convert(tmp_path, tmp_path / "m.pt", tmp_path / "out", *_vocab_files(tmp_path))
    model = mlxseq.load(folder)
    assert (model.args.decoder_style, model.args.max_source_length) == ("location", tut.MAX_LENGTH)

    for src_ids in SOURCES:
        encoder_outputs, hidden = tut.old_encode(encoder, src_ids, tut.MAX_LENGTH)
        tgt_in = [tut.SOS_token, 5, 2, 9, 3, 1, 4]
        expected = []
        with torch.no_grad():
            for token in tgt_in:
                out, hidden, _ = decoder(torch.tensor([[token]]), hidden, encoder_outputs)
                expected.append(out[0].numpy())
        np.testing.assert_allclose(_mlx_log_probs(model, src_ids, tgt_in), np.stack(expected), atol=1e-5)

    expected_ids = [tut.old_evaluate(encoder, decoder, ids) for ids in SOURCES]
    assert any(len(ids) > 2 for ids in expected_ids)
    assert [_greedy_ids(model, ids, tut.MAX_LENGTH) for ids in SOURCES] == expected_ids
    assert _translate(folder, SOURCES) == [" ".join(TGT_VOCAB[i] for i in ids) for ids in expected_ids]

    too_long = " ".join(SRC_VOCAB[2:12])  # 10 words + EOS > max_length 10
    with pytest.raises(ValueError, match="at most 9 tokens"):
        Translator.load(folder).translate([too_long], TranslationOptions(beam_size=1))


def test_tutorial_needs_its_vocabularies(tmp_path):
    encoder, decoder = _new_tutorial()
    torch.save({"encoder": encoder.state_dict(), "decoder": decoder.state_dict()}, tmp_path / "m.pt")
    result = runner.invoke(app, ["convert", str(tmp_path / "m.pt"), str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "--src-vocab" in result.output and "index2word" in result.output
    assert not (tmp_path / "out" / "config.json").exists()

    (tmp_path / "src.txt").write_text("\n".join(SRC_VOCAB[:-1]))
    (tmp_path / "tgt.txt").write_text("\n".join(TGT_VOCAB))
    result = runner.invoke(app, ["convert", str(tmp_path / "m.pt"), str(tmp_path / "out"),
                                 "--src-vocab", str(tmp_path / "src.txt"), "--tgt-vocab", str(tmp_path / "tgt.txt")])
    assert result.exit_code == 1
    assert f"{len(SRC_VOCAB) - 1} lines" in result.output and f"has {len(SRC_VOCAB)} rows" in result.output

    torch.save(decoder.state_dict(), tmp_path / "decoder.pt")
    result = runner.invoke(app, ["convert", str(tmp_path / "decoder.pt"), str(tmp_path / "out")])
    assert result.exit_code == 1 and "--decoder" in result.output


def test_converted_tutorial_translates_from_the_command_line(tmp_path):
    encoder, decoder = _new_tutorial(seed=2)
    torch.save({"encoder": encoder.state_dict(), "decoder": decoder.state_dict()}, tmp_path / "m.pt")
    folder = _convert(tmp_path, tmp_path / "m.pt", tmp_path / "out", *_vocab_files(tmp_path))
    assert "pytorch-tutorial" in (folder / "README.md").read_text()
    expected = " ".join(TGT_VOCAB[i] for i in tut.evaluate(encoder, decoder, SOURCES[1]))
    sentence = " ".join(SRC_VOCAB[i] for i in SOURCES[1])
    result = runner.invoke(
        app, ["translate", sentence, "--model", str(folder), "--beam-size", "1", "--max-length-ratio", "0.001"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == expected
