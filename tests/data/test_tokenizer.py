"""Tests of mlxseq/data/tokenizer.py: sentencepiece on a multi30k slice, char and word vocabularies."""

import gzip
import itertools
import json
from pathlib import Path

import pytest

from mlxseq.data.corpus import DataError, read_lines
from mlxseq.data.tokenizer import (
    SPECIAL_TOKENS,
    CharTokenizer,
    SentencePieceConfig,
    SentencePieceTokenizer,
    TokenizerPair,
    WordTokenizer,
    load_tokenizer,
    train_sentencepiece_pair,
)
from tests.support.corpora import corpus_file

CONFIG = SentencePieceConfig(vocab_size=500)


@pytest.fixture(scope="module")
def multi30k(tmp_path_factory):
    """The first 2000 training pairs, written as gzip files to a temporary folder."""
    corpus = corpus_file("multi30k/raw/train.en.gz").parent
    folder = tmp_path_factory.mktemp("multi30k")
    paths = {}
    for lang in ("en", "de"):
        with gzip.open(corpus / f"train.{lang}.gz", "rb") as handle:
            head = b"".join(itertools.islice(handle, 2000))
        paths[lang] = folder / f"train.{lang}.gz"
        paths[lang].write_bytes(gzip.compress(head))
    return paths


@pytest.fixture(scope="module")
def joint(multi30k):
    return train_sentencepiece_pair(read_lines(multi30k["en"]), read_lines(multi30k["de"]), CONFIG, joint=True)


def normal(lines):
    """Lines that nmt_nfkc normalization leaves alone (no doubled spaces, no no-break spaces)."""
    kept = [s for s in lines if "  " not in s and "\xa0" not in s and s == s.strip()]
    assert len(kept) > 0.99 * len(lines)  # the filter must not hide a broken tokenizer
    return kept


def test_sentencepiece_round_trips_text(joint, multi30k):
    assert joint.joint and joint.source.vocab_size == 500
    for lang in ("en", "de"):
        lines = normal(read_lines(multi30k[lang]))
        encoded = [joint.source.encode(s) for s in lines]
        assert [joint.source.decode(ids) for ids in encoded] == lines
        # Subwords, not characters: a 500-piece vocabulary must shorten text.
        assert sum(map(len, encoded)) < 0.5 * sum(map(len, lines))


def test_identity_normalization_round_trips_any_seen_text(multi30k):
    lines = read_lines(multi30k["de"])
    tok = SentencePieceTokenizer.train(
        lines, SentencePieceConfig(vocab_size=500, normalization="identity", remove_extra_whitespaces=False)
    )
    odd = [s for s in lines if "  " in s or "\xa0" in s]
    assert odd, "the slice should hold text that nmt_nfkc would change"
    assert [tok.decode(tok.encode(s)) for s in lines] == lines


def test_special_token_ids_are_fixed(joint):
    tok = joint.source
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert [tok.id_to_piece(i) for i in range(4)] == list(SPECIAL_TOKENS)
    ids = tok.encode("A dog runs.")
    assert not {0, 2, 3} & set(ids)
    assert tok.decode([2, *ids, 3, 0, 0]) == "A dog runs."


def test_unseen_characters_encode_to_unk(joint):
    assert joint.source.unk_id in joint.source.encode("A dog 🐕")


def test_separate_vocabularies_differ_and_save_load_by_side(multi30k, tmp_path):
    pair = train_sentencepiece_pair(read_lines(multi30k["en"]), read_lines(multi30k["de"]), CONFIG, joint=False)
    assert not pair.joint
    sentence = "Zwei Männer spielen Fußball."
    assert pair.source.encode(sentence) != pair.target.encode(sentence)
    written = pair.save(tmp_path)
    assert sorted(p.name for p in written) == ["source.model", "target.model"]
    loaded = TokenizerPair.load(tmp_path)
    assert loaded.target.encode(sentence) == pair.target.encode(sentence)
    assert loaded.source.encode(sentence) == pair.source.encode(sentence)


def test_save_load_gives_identical_ids(joint, multi30k, tmp_path):
    path = joint.source.save(tmp_path / "model")
    assert path == tmp_path / "model" / "tokenizer.model"
    loaded = load_tokenizer(tmp_path / "model")
    assert isinstance(loaded, SentencePieceTokenizer)
    lines = read_lines(multi30k["de"])[:200]
    assert [loaded.encode(s) for s in lines] == [joint.source.encode(s) for s in lines]
    assert TokenizerPair.load(tmp_path / "model").joint


def test_training_is_deterministic_and_quiet(multi30k, tmp_path, capfd):
    first = SentencePieceTokenizer.train(files=[multi30k["en"]], config=CONFIG)
    second = SentencePieceTokenizer.train(read_lines(multi30k["en"]), CONFIG)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert first.save(tmp_path, "a").read_bytes() == second.save(tmp_path, "b").read_bytes()


def test_too_large_vocabulary_is_a_clear_error():
    with pytest.raises(ValueError, match="Vocabulary size too high"):
        SentencePieceTokenizer.train(["a b c", "d e f"], SentencePieceConfig(vocab_size=500))


def test_loading_a_foreign_or_broken_model_names_the_file(tmp_path, multi30k):
    import io

    import sentencepiece

    model = io.BytesIO()  # sentencepiece's own default ids: unk=0, bos=1, eos=2, no pad
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(read_lines(multi30k["en"])), model_writer=model, vocab_size=200, minloglevel=2
    )
    (tmp_path / "foreign.model").write_bytes(model.getvalue())
    with pytest.raises(DataError, match=r"foreign\.model: sentencepiece model must have <pad> at id 0"):
        SentencePieceTokenizer.load(tmp_path, "foreign")
    (tmp_path / "broken.model").write_bytes(b"not a model")
    with pytest.raises(DataError, match=r"broken\.model: not a sentencepiece model"):
        load_tokenizer(tmp_path, "broken")


def test_char_tokenizer_mapping_and_unknown_characters(tmp_path):
    tok = CharTokenizer.build("hello world\n")
    assert tok.tokens == [*SPECIAL_TOKENS, "\n", " ", "d", "e", "h", "l", "o", "r", "w"]
    assert tok.encode("hold") == [8, 10, 9, 6]
    assert tok.decode(tok.encode("hello\nworld")) == "hello\nworld"
    assert tok.encode("hex!") == [8, 7, 1, 1]
    assert tok.decode([2, 8, 7, 1, 3, 0]) == "he\ufffd"
    tok.save(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert isinstance(loaded, CharTokenizer) and loaded.encode("world x") == tok.encode("world x")


def test_char_tokenizer_min_frequency():
    assert CharTokenizer.build(["aab", "ac"], min_frequency=2).tokens == [*SPECIAL_TOKENS, "a"]


def test_word_tokenizer_frequency_order_limits_and_unknowns(tmp_path):
    text = ["the cat sat on the mat", "the dog sat", "a <unk> cat"]
    tok = WordTokenizer.build(text, min_frequency=2)
    assert tok.tokens == [*SPECIAL_TOKENS, "the", "cat", "sat"]
    assert tok.encode("the dog sat <unk>") == [4, 1, 6, 1]
    assert tok.decode([2, 4, 1, 5, 3, 0]) == "the <unk> cat"
    small = WordTokenizer.build(text, max_size=6)
    assert small.vocab_size == 6 and small.tokens[4:] == ["the", "cat"]
    small.save(tmp_path, "words")
    assert WordTokenizer.load(tmp_path, "words").tokens == small.tokens
    with pytest.raises(DataError, match=r"words\.json: holds a 'word' tokenizer, not 'char'"):
        CharTokenizer.load(tmp_path, "words")


def test_decode_rejects_ids_outside_the_vocabulary():
    with pytest.raises(ValueError, match=r"id 7 is outside the vocabulary \[0, 6\)"):
        CharTokenizer.build("ab").decode([4, 7])


def test_strict_json_loading_names_unknown_keys_and_versions(tmp_path):
    path = CharTokenizer.build("ab").save(tmp_path)
    content = json.loads(path.read_text())
    path.write_text(json.dumps({**content, "lowercase": True}))
    with pytest.raises(DataError, match=r"tokenizer\.json: unknown key 'lowercase'"):
        load_tokenizer(tmp_path)
    path.write_text(json.dumps({**content, "format_version": 99}))
    with pytest.raises(DataError, match="format_version 99 is not supported"):
        load_tokenizer(tmp_path)
    with pytest.raises(DataError, match=r"missing\.json: no such tokenizer file"):
        load_tokenizer(tmp_path, "missing")
