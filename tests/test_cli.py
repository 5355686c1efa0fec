"""The CLI's info, demo and --version commands."""

import pytest
from typer.testing import CliRunner

from mlxseq import __version__
from mlxseq.cli import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"mlxseq {__version__}"


def test_info_names_mlx_and_blas():
    import mlx.core as mx

    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0
    assert f"mlx:          {mx.__version__}" in result.output
    assert "blas:" in result.output


def test_demo_runs_forward_and_backward():
    result = runner.invoke(app, ["demo", "--kind", "gru", "--batch", "3", "--steps", "5", "--hidden", "8"])
    assert result.exit_code == 0, result.output
    assert "GRU(64, 8, num_layers=2, bidirectional=True)" in result.output
    assert "output (3, 5, 16), h_n (4, 3, 8)" in result.output
    assert "training step (forward + backward)" in result.output


def test_demo_rejects_an_unknown_kind():
    result = runner.invoke(app, ["demo", "--kind", "transformer"])
    assert result.exit_code == 1
    assert "kind must be one of ['gru', 'lstm', 'rnn'], got 'transformer'" in result.output


def _one_error_line(result, message):
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert lines == [f"error: {message}"], result.output



@pytest.mark.parametrize("arguments, message", [
    (["translate", "--beam-size", "100000", "Hallo"], "beam_size must be in [1, 1000], got 100000"),
    (["translate", "--max-length-ratio", "inf", "Hallo"], "max_length_ratio must be in (0, 100.0], got inf"),
    (["translate", "--max-length", "10000000", "Hallo"], "max_length must be in [0, 100000], got 10000000"),
    (["translate", "--length-penalty", "nan", "Hallo"], "length_penalty must be a finite number, got nan"),
    (["generate", "--seed", "-1"], "seed must be in [0, 2**64), got -1"),
    (["generate", "--seed", str(2**64)], f"seed must be in [0, 2**64), got {2**64}"),
    (["generate", "--max-tokens", "100000000"], "max_tokens must be in [0, 1000000], got 100000000"),
    (["transcribe", "--beam-size", "0", "a.wav"], "beam_size must be in [1, 256], got 0"),
    (["evaluate", "--model", "m", "--data", "list.tsv", "--beam-size", "100000"],
     "beam_size must be in [1, 256], got 100000"),
    (["evaluate", "--data", "list.tsv"], "--data scores a model folder: pass it with --model (a classifier, tagger, "
                                         "forecaster or speech recogniser; the bundled digit recogniser is "
                                         "mlxseq/bundled/fsdd-digits)"),
])
def test_options_out_of_bounds_are_one_line_before_any_work(arguments, message):
    _one_error_line(runner.invoke(app, arguments), message)


def test_binary_data_on_standard_input_is_one_line():
    result = runner.invoke(app, ["translate"], input=b"Ein Hund.\n\x89PNG\r\n\x1a\n\xff\xfe\x00binary\n")
    _one_error_line(result, "standard input, line 2: not UTF-8 text (byte 1 of the line)")


def test_attention_to_a_folder_or_a_missing_folder_is_one_line(tmp_path):
    _one_error_line(runner.invoke(app, ["translate", "--attention", str(tmp_path), "Hallo"]),
                    f"{tmp_path} is a folder; pass a file name (e.g. {tmp_path / 'attention.png'})")
    missing = tmp_path / "no" / "a.png"
    _one_error_line(runner.invoke(app, ["translate", "--attention", str(missing), "Hallo"]),
                    f"cannot write {missing}: folder {missing.parent} does not exist")


def test_average_into_an_unwritable_place_is_one_line(tmp_path):
    from mlxseq.pipelines.generator import BUNDLED_MODEL

    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder would go")
    result = runner.invoke(app, ["average", str(BUNDLED_MODEL), str(BUNDLED_MODEL), "-o", str(blocker / "out")])
    assert result.exit_code == 1 and result.output.startswith(f"error: cannot write {blocker / 'out'}: ")
    assert len(result.output.strip().splitlines()) == 1, result.output
