"""The CLI's info, demo and --version commands."""

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
