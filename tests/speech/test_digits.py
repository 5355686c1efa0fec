"""Connected digits from FSDD-named recordings: splits, seeded draws, rendering, digit lists."""

from pathlib import Path

import numpy as np
import pytest

from mlxseq.speech.digits import (
    SynthesisArgs,
    Utterance,
    load_recordings,
    parse_digit_row,
    sample_utterances,
    split_of,
    write_digit_list,
)
from mlxseq.speech.features import AudioError
from mlxseq.speech.manifest import read_speech_list
from tests.speech.fake_fsdd import make_archive, make_recordings, tone

SHIPPED_TEST_LIST = Path(__file__).parents[2] / "configs" / "fsdd_digits_test.tsv"


def test_splits_follow_the_recording_index():
    assert [split_of(f"3_theo_{i}.wav") for i in (0, 4, 5, 9, 10, 49)] == ["test", "test", "valid", "valid",
                                                                            "train", "train"]
    with pytest.raises(AudioError, match="not an FSDD recording name"):
        split_of("three.wav")


def test_a_folder_and_its_tar_archive_give_the_same_recordings(tmp_path):
    archive = make_archive(tmp_path)
    from_folder = load_recordings(tmp_path / "recordings")
    from_archive = load_recordings(archive)
    assert sorted(from_folder) == sorted(from_archive) and len(from_folder) == 10 * 2 * 13
    np.testing.assert_array_equal(from_folder["7_bert_8.wav"], from_archive["7_bert_8.wav"])
    np.testing.assert_allclose(from_folder["7_bert_8.wav"], tone(7, 1, 8), atol=1 / 32767)


def test_missing_and_foreign_sources_are_one_clear_error(tmp_path):
    with pytest.raises(AudioError, match="no such folder or archive"):
        load_recordings(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AudioError, match="holds no FSDD recordings"):
        load_recordings(tmp_path / "empty")
    (tmp_path / "junk.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(AudioError, match="not a folder of recordings or a readable tar archive"):
        load_recordings(tmp_path / "junk.tar.gz")


def test_draws_are_seeded_and_stay_within_the_names_and_digit_counts(tmp_path):
    names = [n for n in load_recordings(make_recordings(tmp_path)) if split_of(n) == "test"]
    args = SynthesisArgs(min_digits=2, max_digits=4)
    first, again = sample_utterances(names, 50, 7, args), sample_utterances(names, 50, 7, args)
    assert first == again and first != sample_utterances(names, 50, 8, args)
    assert all(2 <= len(u.recordings) <= 4 and set(u.recordings) <= set(names) for u in first)
    assert all(len(u.pauses_ms) == len(u.recordings) + 1 and len(u.gains_db) == len(u.recordings) for u in first)


def test_rendering_joins_pauses_gained_recordings_and_noise_at_the_snr(tmp_path):
    recordings = load_recordings(make_recordings(tmp_path))
    quiet = Utterance(("4_anna_0.wav", "2_bert_4.wav"), (100, 50, 25), (0.0, -6.0), 200.0, 1)
    samples = quiet.render(recordings)
    first, second = recordings["4_anna_0.wav"], recordings["2_bert_4.wav"]
    assert quiet.transcript == "4 2" and len(samples) == (100 + 50 + 25) * 8 + len(first) + len(second)
    np.testing.assert_allclose(samples[800 : 800 + len(first)], first, atol=1e-6)
    start = 800 + len(first) + 400
    np.testing.assert_allclose(samples[start : start + len(second)], second * 10 ** (-6 / 20), atol=1e-6)
    assert np.abs(samples[:800]).max() < 1e-9 and np.abs(samples[800 + len(first) : start]).max() < 1e-9  # SNR 200 dB
    noisy = Utterance(quiet.recordings, quiet.pauses_ms, quiet.gains_db, 20.0, 1).render(recordings)
    noise = noisy - samples
    assert np.sqrt(np.mean(noise**2)) / np.sqrt(np.mean(samples**2)) == pytest.approx(0.1, rel=0.05)


def test_a_digit_list_round_trips_and_renders_from_the_recordings(tmp_path):
    recordings = load_recordings(make_recordings(tmp_path))
    drawn = sample_utterances([n for n in recordings if split_of(n) == "valid"], 20, 3)
    write_digit_list(tmp_path / "list.tsv", drawn)
    items = read_speech_list(tmp_path / "list.tsv", tmp_path / "recordings")
    assert [i.transcript for i in items] == [u.transcript for u in drawn]
    np.testing.assert_array_equal(items[3].samples(8000), drawn[3].render(recordings))
    assert len(items[3].samples(16000)) == 2 * len(drawn[3].render(recordings))
    with pytest.raises(AudioError, match="rendered from FSDD recordings"):
        read_speech_list(tmp_path / "list.tsv")


@pytest.mark.parametrize("row, problem", [
    ("1_a_0.wav\t10,10\t0.0\t30\t1\t2", "does not match the recordings"),
    ("1_a_0.wav\t10\t0.0\t30\t1\t1", "need 2 pauses"),
    ("1_a_0.wav\t10,x\t0.0\t30\t1\t1", "invalid literal"),
    ("1_a_0.wav\t10,99999999\t0.0\t30\t1\t1", "pauses must be 0-10000 ms"),
    ("one.wav\t10,10\t0.0\t30\t1\t1", "not an FSDD recording name"),
    ("1_a_0.wav\t10,10\t0.0\t30\t1", "expected 6 tab-separated fields"),
    (",".join(["1_a_0.wav"] * 101) + "\t" + ",".join(["0"] * 102) + "\t" + ",".join(["0"] * 101) + "\t30\t1\t"
     + " ".join(["1"] * 101), "101 recordings in one utterance; at most 100"),
])
def test_malformed_digit_rows_name_the_line(row, problem):
    with pytest.raises(AudioError, match=problem):
        parse_digit_row(row.split("\t"), "list.tsv:7")


def test_the_shipped_test_list_holds_1000_utterances_of_official_test_recordings_only():
    items = [parse_digit_row(line.split("\t"), f"{SHIPPED_TEST_LIST}:{n}")
             for n, line in enumerate(SHIPPED_TEST_LIST.read_text().splitlines()[1:], start=2)]
    assert len(items) == 1000
    assert {split_of(name) for u in items for name in u.recordings} == {"test"}
    assert {len(u.recordings) for u in items} == set(range(1, 8))
    assert len({name for u in items for name in u.recordings}) == 300  # every test recording is used


def test_the_shipped_test_list_is_the_seeded_draw_of_tools_make_digit_list():
    lines = SHIPPED_TEST_LIST.read_text().splitlines()
    shipped = [parse_digit_row(line.split("\t"), f"{SHIPPED_TEST_LIST}:{n}") for n, line in enumerate(lines[1:], 2)]
    names = {name for u in shipped for name in u.recordings}  # all 300 official test recordings
    assert sample_utterances(names, 1000, 20221) == shipped  # the command and seed in tools/make_digit_list.py


def test_a_clean_fraction_draws_that_share_without_noise_and_keeps_the_rest(tmp_path):
    names = [n for n in load_recordings(make_recordings(tmp_path)) if split_of(n) == "train"]
    noisy = sample_utterances(names, 400, 3)
    mixed = sample_utterances(names, 400, 3, SynthesisArgs(edge_pause_ms=(0, 20), clean_fraction=0.25))
    clean = [u for u in mixed if u.snr_db == float("inf")]
    assert 70 <= len(clean) <= 130 and all(20 <= u.snr_db <= 40 for u in noisy)
    assert mixed[0].recordings == noisy[0].recordings  # the other draws are the same kinds as before
    assert all(u.pauses_ms[0] <= 20 and u.pauses_ms[-1] <= 20 for u in mixed)
    assert all(50 <= p <= 400 for u in mixed for p in u.pauses_ms[1:-1])
    first = next(u for u in clean if u.pauses_ms[0] > 0)
    samples = first.render(load_recordings(tmp_path / "recordings"))
    assert samples[: first.pauses_ms[0] * 8].tolist() == [0.0] * (first.pauses_ms[0] * 8)  # digital silence


def test_an_isolated_fraction_draws_single_recordings_as_stored(tmp_path):
    names = [n for n in load_recordings(make_recordings(tmp_path)) if split_of(n) == "train"]
    drawn = sample_utterances(names, 400, 4, SynthesisArgs(isolated_fraction=0.25))
    isolated = [u for u in drawn if u == Utterance.isolated(u.recordings[0])]
    assert 70 <= len(isolated) <= 130 and all(len(u.recordings) == 1 for u in isolated)
    assert all(u.snr_db < float("inf") for u in drawn if u not in isolated)


def test_the_shipped_isolated_list_is_the_300_official_test_recordings_as_they_are(tmp_path):
    lines = (SHIPPED_TEST_LIST.parent / "fsdd_isolated_test.tsv").read_text().splitlines()[1:]
    items = [parse_digit_row(line.split("\t"), f"isolated:{n}") for n, line in enumerate(lines, start=2)]
    assert len(items) == 300 and {split_of(u.recordings[0]) for u in items} == {"test"}
    assert len({u.recordings[0] for u in items}) == 300
    recordings = load_recordings(make_recordings(tmp_path))
    one = Utterance.isolated("5_anna_0.wav")
    np.testing.assert_array_equal(one.render(recordings), recordings["5_anna_0.wav"])
    with pytest.raises(AudioError, match="snr_db must be >= 0"):
        parse_digit_row(["1_a_0.wav", "0,0", "0.0", "nan", "1", "1"], "list.tsv:2")
