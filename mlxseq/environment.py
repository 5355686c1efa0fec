"""What mlxseq runs on: MLX version and device, BLAS, and the compiler behind mx.compile."""

import platform
import shutil
import sys

from mlxseq import blas


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
