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
        f"mlxseq: matmuls run on the mlx wheel's reference BLAS (about 9x slower): {blas.INSTALL_HINT}",
        f"mlxseq: MLX builds its CPU kernels for this machine on first use (once, 10-20 s; cached in {tmp_path / 'cpu'})",
    ]


def test_nothing_is_said_once_kernels_are_built_and_the_blas_is_fast_or_chosen(tmp_path, monkeypatch):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "kernel.so").write_bytes(b"")
    monkeypatch.setattr(environment, "kernel_cache_folder", lambda: tmp_path / "cpu")
    monkeypatch.setattr(blas, "is_optimized", lambda: False)
    monkeypatch.setenv("MLXSEQ_BLAS", "reference")  # chosen on purpose: no warning
    assert environment.startup_notes() == []
