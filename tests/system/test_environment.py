"""What commands say before long silent work: a first kernel build, a slow BLAS."""

import shutil
import sys

import pytest

from mlxseq.system import blas, environment

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="notes about MLX's CPU backend on Linux")


def test_a_cold_kernel_cache_and_a_slow_blas_are_announced(tmp_path, monkeypatch):
    monkeypatch.setattr(environment, "kernel_cache_folder", lambda: tmp_path / "cpu")
    monkeypatch.setattr(blas, "is_optimized", lambda: False)
    monkeypatch.delenv("MLXSEQ_BLAS", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/g++")
    notes = environment.startup_notes()
    assert notes == [
        f"mlxseq: matmuls run on the mlx wheel's reference BLAS (20-50x slower): {blas.INSTALL_HINT}",
        f"mlxseq: MLX builds its CPU kernels for this machine on first use (once, 10-20 s; cached in {tmp_path / 'cpu'})",
    ]


def test_nothing_is_said_once_kernels_are_built_and_the_blas_is_fast_or_chosen(tmp_path, monkeypatch):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "kernel.so").write_bytes(b"")
    monkeypatch.setattr(environment, "kernel_cache_folder", lambda: tmp_path / "cpu")
    monkeypatch.setattr(blas, "is_optimized", lambda: False)
    monkeypatch.setenv("MLXSEQ_BLAS", "reference")  # chosen on purpose: no warning
    assert environment.startup_notes() == []


def _import_in_a_new_process(code):
    import subprocess

    env = {k: v for k, v in __import__("os").environ.items() if k not in ("LD_PRELOAD", "MLXSEQ_BLAS")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_importing_mlx_before_mlxseq_is_said_at_the_import_with_what_to_do():
    late = _import_in_a_new_process(
        "import mlx.core\nimport mlxseq\nfrom mlxseq.system import environment\n"
        "print(mlxseq.system.blas.describe())\nprint(environment.startup_notes()[0])"
    )
    assert late.returncode == 0, late.stderr
    assert "RuntimeWarning: mlxseq: MLX's matmuls run on the mlx wheel's reference BLAS" in late.stderr
    assert "import mlxseq first, or run with LD_PRELOAD=libopenblas.so.0" in late.stderr
    described, note = late.stdout.splitlines()
    assert described == f"reference BLAS of the mlx wheel: {blas.IMPORT_ORDER_HINT}"
    assert note.endswith(blas.IMPORT_ORDER_HINT)  # not the advice to install OpenBLAS
    in_order = _import_in_a_new_process("import mlxseq\nimport mlx.core")
    assert in_order.returncode == 0 and "RuntimeWarning" not in in_order.stderr
