"""What mlxseq runs on: MLX version and device, BLAS, the recurrence path, and the compiler behind mx.compile."""

import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

from mlxseq.system import blas, native


def describe_environment() -> dict:
    import mlx.core as mx

    from mlxseq._version import __version__

    info = {
        "mlxseq": __version__,
        "mlx": mx.__version__,
        "device": str(mx.default_device()),
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}",
        "blas": blas.describe(),
        "recurrence": native.describe(),
    }
    if sys.platform.startswith("linux") and mx.default_device() == mx.cpu:
        # MLX's CPU backend builds fused kernels for mx.compile with the system's
        # C++ compiler; without one it silently runs them unfused (same numbers, slower).
        compiler = shutil.which("g++") or shutil.which("c++")
        info["mx.compile"] = (
            f"fused CPU kernels built with {compiler}"
            if compiler
            else "no C++ compiler found: compiled functions run unfused (install g++)"
        )
    return info


def kernel_cache_folder() -> Path:
    """Where MLX's CPU backend keeps the kernels it builds for ``mx.compile`` (per MLX version)."""
    import mlx.core as mx

    return Path(tempfile.gettempdir()) / "mlx" / mx.__version__ / "cpu"


def startup_notes() -> list[str]:
    """What a command should say once before long silent work: a slow BLAS, a first kernel build."""
    import mlx.core as mx

    notes = []
    if not sys.platform.startswith("linux") or mx.default_device() != mx.cpu:
        return notes
    if not blas.is_optimized() and os.environ.get("MLXSEQ_BLAS", "") != "reference":
        notes.append(f"mlxseq: matmuls run on the mlx wheel's reference BLAS (20-50x slower): {blas.hint()}")
    cache = kernel_cache_folder()
    if (shutil.which("g++") or shutil.which("c++")) and not (cache.is_dir() and any(cache.iterdir())):
        notes.append(f"mlxseq: MLX builds its CPU kernels for this machine on first use (once, 10-20 s; cached in {cache})")
    return notes
