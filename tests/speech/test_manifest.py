"""Speech lists: audio files with transcripts, read lazily; malformed lists are one clear error."""

import numpy as np
import pytest

from mlxseq.speech.features import AudioError
from mlxseq.speech.manifest import read_speech_list
from tests.speech.fake_fsdd import tone, write_wav


def test_audio_paths_are_relative_to_the_list_and_resampled_on_demand(tmp_path):
    (tmp_path / "clips").mkdir()
    write_wav(tmp_path / "clips" / "a.wav", tone(1, 0, 0), rate=16000)
    write_wav(tmp_path / "b.wav", tone(2, 0, 0))
    (tmp_path / "list.tsv").write_text("audio\ttranscript\nclips/a.wav\thello  world \n\n"
                                       f"{tmp_path / 'b.wav'}\tbye\n")
    items = read_speech_list(tmp_path / "list.tsv")
    assert [i.transcript for i in items] == ["hello  world", "bye"]
    assert len(items[0].samples(8000)) == len(tone(1, 0, 0)) // 2
    np.testing.assert_allclose(items[1].samples(8000), tone(2, 0, 0), atol=1 / 32767)


def test_a_missing_audio_file_is_named_when_read(tmp_path):
    (tmp_path / "list.tsv").write_text("audio\ttranscript\ngone.wav\tx\n")
    item = read_speech_list(tmp_path / "list.tsv")[0]
    with pytest.raises(AudioError, match="gone.wav: no such file"):
        item.samples(8000)


@pytest.mark.parametrize("content, problem", [
    ("", "empty; expected a header line"),
    ("path\ttext\na.wav\tx\n", ":1: expected the header audio<TAB>transcript"),
    ("audio\ttranscript\na.wav\n", ":2: expected audio<TAB>transcript, got 1 field"),
    ("audio\ttranscript\na.wav\tx\ty\n", ":2: expected audio<TAB>transcript, got 3 field"),
])
def test_malformed_lists_name_the_line(tmp_path, content, problem):
    (tmp_path / "list.tsv").write_text(content)
    with pytest.raises(AudioError, match=problem):
        read_speech_list(tmp_path / "list.tsv")


def test_a_list_that_is_not_text_is_one_clear_error(tmp_path):
    (tmp_path / "list.tsv").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(AudioError, match="not a UTF-8 text file"):
        read_speech_list(tmp_path / "list.tsv")
    with pytest.raises(AudioError, match="no such speech list"):
        read_speech_list(tmp_path / "none.tsv")
