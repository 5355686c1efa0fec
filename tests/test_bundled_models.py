"""The models shipped inside the package: present, small, and doing their job offline."""

import gzip
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mlxseq
from mlxseq.cli import app
from mlxseq.metrics import score_translations
from mlxseq.pipelines.generator import BUNDLED_MODEL as GENERATION_MODEL
from mlxseq.pipelines.translator import BUNDLED_MODEL as TRANSLATION_MODEL
from mlxseq.pipelines.translator import TranslationOptions, Translator
from mlxseq.pipelines.transcriber import BUNDLED_MODEL as SPEECH_MODEL
from mlxseq.pipelines.transcriber import Transcriber
from tests.support.corpora import corpus_file

FIXTURES = Path(__file__).resolve().parent / "fixtures"
LIMIT_BYTES = 20 * 1000 * 1000
COMMON_WORDS = {"the", "and", "i", "to", "of", "a", "my", "you", "that", "in", "is", "not", "me", "it", "with", "be",
                "your", "his", "for", "this", "thou", "thee", "thy", "what", "so", "but", "have", "will", "he", "as"}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_the_bundled_translation_model_is_complete_and_under_20_mb():
    files = sorted(p.name for p in TRANSLATION_MODEL.iterdir())
    assert {"config.json", "model.safetensors", "README.md", "tokenizer.model"} <= set(files), files
    assert sum(p.stat().st_size for p in TRANSLATION_MODEL.iterdir()) <= LIMIT_BYTES
    assert mlxseq.load(TRANSLATION_MODEL).args.src_vocab_size == 5000


def test_mlxseq_translate_with_no_model_uses_the_bundled_one():
    result = CliRunner().invoke(app, ["translate", "Ein Mann fährt mit dem Fahrrad."])
    assert result.exit_code == 0, result.output
    text = result.output.strip()
    assert text.startswith("A man") and ("bike" in text or "bicycle" in text), text


def test_the_bundled_model_translates_test_sentences_sensibly():
    with gzip.open(corpus_file("multi30k/raw/test_2016_flickr.de.gz"), "rt", encoding="utf-8") as f:
        sources = [line.strip() for _, line in zip(range(100), f)]
    with gzip.open(corpus_file("multi30k/raw/test_2016_flickr.en.gz"), "rt", encoding="utf-8") as f:
        references = [line.strip() for _, line in zip(range(100), f)]
    found = Translator.load().translate(sources, TranslationOptions(beam_size=5))
    scores = score_translations([hyps[0].text for hyps in found], references)
    assert scores.bleu > 30 and scores.chrf > 49, (scores.bleu, scores.chrf)  # these 100: 32.0, 51.2; all 1,000: 35.4, 53.5


def test_the_bundled_language_model_is_complete_and_under_20_mb():
    files = {p.name for p in GENERATION_MODEL.iterdir()}
    assert {"config.json", "model.safetensors", "README.md", "tokenizer.json"} <= files, files
    assert sum(p.stat().st_size for p in GENERATION_MODEL.iterdir()) <= LIMIT_BYTES


def test_mlxseq_generate_with_no_model_writes_shakespeare_offline():
    result = CliRunner().invoke(app, ["generate", "--prompt", "ROMEO:", "--max-tokens", "200", "--seed", "1",
                                      "--temp", "0.8"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert text.startswith("ROMEO:") or "ROMEO:" in text[:20], text
    words = text.split()
    assert len(words) > 20 and sum(w.strip(".,:;!?'").lower() in COMMON_WORDS for w in words) >= 5, text


def test_the_bundled_language_model_keeps_its_validation_loss_on_a_slice():
    import math

    import mlx.core as mx

    from mlxseq.pipelines.generator import Generator
    from mlxseq.losses import label_smoothed_cross_entropy

    valid = (FIXTURES / "tinyshakespeare_valid_head.txt").read_text()  # the start of the conventional validation split
    generator = Generator.load()
    ids = mx.array([generator.tokenizer.encode(valid)])
    state, total, count = None, 0.0, 0
    for start in range(0, ids.shape[1] - 1, 250):  # chunks, the state carried (one graph of thousands of steps is too deep)
        chunk = ids[:, start : start + 251]
        logits, state = generator.model(chunk[:, :-1], state)
        loss, n = label_smoothed_cross_entropy(logits, chunk[:, 1:], -1)
        mx.eval(loss, n, state)
        total, count = total + loss.item(), count + n.item()
    nats = total / count
    assert nats < 1.6 and math.isfinite(nats), nats  # the whole split, read as 16 streams: see the model card


def test_the_bundled_cards_carry_hub_front_matter_with_their_scores():
    import yaml

    for folder, tag, metric in ((TRANSLATION_MODEL, "translation", ("bleu", 36.1)),
                                (GENERATION_MODEL, "text-generation", ("loss", 1.436)),
                                (SPEECH_MODEL, "automatic-speech-recognition", ("wer", SPEECH_TEST_WER))):
        text = (folder / "README.md").read_text()
        header = yaml.safe_load(text.split("---\n")[1])
        assert header["library_name"] == "mlxseq" and header["pipeline_tag"] == tag
        metrics = header["model-index"][0]["results"][0]["metrics"]
        assert (metrics[0]["type"], metrics[0]["value"]) == metric
        assert metric[1] is not None and str(metric[1]) in text.split("---\n", 2)[2]  # the card's own table says it


# --- the digit recogniser --------------------------------------------------------------

SPEECH_TEST_WER = 1.83  # the card's digit error rate on configs/fsdd_digits_test.tsv, percent


def test_the_bundled_digit_recogniser_is_complete_and_under_10_mb():
    files = sorted(p.name for p in SPEECH_MODEL.iterdir())
    assert {"config.json", "model.safetensors", "README.md", "speech.json"} <= set(files), files
    assert sum(p.stat().st_size for p in SPEECH_MODEL.iterdir()) < 10 * 1000 * 1000


def test_mlxseq_transcribe_with_no_model_hears_digits_it_never_trained_on(tmp_path):
    """Four recordings of FSDD's test split (shipped as fixtures), alone and joined with pauses."""
    from mlxseq.speech.digits import Utterance, load_recordings
    from tests.speech.fake_fsdd import write_wav

    fixtures = sorted((FIXTURES / "fsdd").glob("*.wav"))
    out = CliRunner().invoke(app, ["transcribe", *map(str, fixtures)])
    assert out.exit_code == 0, out.output
    assert [line.split("\t")[1] for line in out.output.strip().splitlines()] == [f.name[0] for f in fixtures]
    recordings = load_recordings(FIXTURES / "fsdd")
    joined = Utterance(("4_george_2.wav", "0_jackson_1.wav", "7_theo_3.wav", "9_yweweler_0.wav"),
                       (150, 200, 120, 250, 180), (0.0, 3.0, -3.0, 0.0), 30.0, 5)
    write_wav(tmp_path / "4079.wav", joined.render(recordings))
    assert Transcriber.load().transcribe([str(tmp_path / "4079.wav")]) == ["4 0 7 9"]


def test_the_bundled_recogniser_keeps_its_digit_error_rate_on_the_shipped_test_list():
    from mlxseq.speech.manifest import read_speech_list

    recordings = corpus_file("fsdd/recordings.tar.gz")
    items = read_speech_list(Path(__file__).parents[1] / "configs" / "fsdd_digits_test.tsv", recordings)[:250]
    scores = Transcriber.load().evaluate(items, batch_size=50)
    assert scores["wer"] < 2 * SPEECH_TEST_WER + 1.0, scores["wer"]  # 250 of the 1,000 utterances: see the card
