"""An optimized BLAS for MLX's Linux CPU build, loaded before ``mlx.core``.

The ``mlx-cpu`` wheel for Linux links the reference (netlib) BLAS: about
7 GFLOP/s for an fp32 matmul. A system OpenBLAS loaded into the global symbol
scope before ``mlx.core`` is imported takes over ``cblas_sgemm`` (same results,
20-50x faster); loaded afterwards it has no effect. mlxseq's ``__init__`` calls
:func:`preload` before anything imports MLX.

Set ``MLXSEQ_BLAS=reference`` to keep the wheel's BLAS, ``MLXSEQ_BLAS=mkl`` to load
MKL (the ``mkl`` wheel's ``libmkl_rt``), or a library path to load that one instead. On machines with AVX-512 whose CPU OpenBLAS does not
recognise (it then falls back to AVX2 kernels), ``OPENBLAS_CORETYPE=SkylakeX``
is set unless the user set it: about twice the speed on such CPUs.
On macOS MLX uses Accelerate and Metal; nothing is done there.
"""

import ctypes
import ctypes.util
import os
import sys
import warnings
from pathlib import Path

CANDIDATES = (
    "libopenblas.so.0",
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "libopenblas.so",
)
INSTALL_HINT = "install OpenBLAS (Debian/Ubuntu: apt-get install libopenblas0-pthread) for ~20x faster matmuls"
IMPORT_ORDER_HINT = (
    "mlx.core was imported before mlxseq, too late to load OpenBLAS for it; "
    "import mlxseq first, or run with LD_PRELOAD=libopenblas.so.0"
)

_state = {"library": None, "core": None, "note": "not loaded", "hint": INSTALL_HINT}


def _has_avx512() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags
    except OSError:
        pass
    return False


def _preloaded_by_environment() -> bool:
    return "openblas" in os.environ.get("LD_PRELOAD", "")


def preload() -> None:
    """Load the best available BLAS into the global scope (Linux only; idempotent)."""
    if _state["library"] is not None or not sys.platform.startswith("linux"):
        if not sys.platform.startswith("linux"):
            _state["note"] = "Accelerate (macOS)"
        return
    choice = os.environ.get("MLXSEQ_BLAS", "auto")
    if choice == "reference":
        _state["note"] = "reference BLAS of the mlx wheel (MLXSEQ_BLAS=reference)"
        return
    if "mlx.core" in sys.modules and not _preloaded_by_environment():
        _state["note"] = f"reference BLAS of the mlx wheel: {IMPORT_ORDER_HINT}"
        _state["hint"] = IMPORT_ORDER_HINT
        # Said at the import, where a library user sees it: the commands' startup notes come later.
        warnings.warn(f"mlxseq: MLX's matmuls run on the mlx wheel's reference BLAS (20-50x slower): "
                      f"{IMPORT_ORDER_HINT}", RuntimeWarning, stacklevel=3)
        return
    if _has_avx512() and "OPENBLAS_CORETYPE" not in os.environ:
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
    names = CANDIDATES if choice == "auto" else ((find_mkl() or "libmkl_rt.so"),) if choice == "mkl" else (choice,)
    for name in names:
        try:
            lib = ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        _state["library"] = name
        _state["core"] = _openblas_core(lib)
        kind = "MKL" if "mkl" in Path(name).name else f"OpenBLAS ({_state['core'] or 'unknown core'})"
        _state["note"] = f"{kind} from {name}"
        return
    _state["note"] = f"reference BLAS of the mlx wheel: {INSTALL_HINT}"


def find_library(distribution: str, stem: str) -> str | None:
    """``lib{stem}.so*`` installed by the wheel ``distribution`` (its files, wherever pip put them:
    a venv's or Python's ``lib/``, ``~/.local/lib``), else in sys.prefix/lib, else the system's."""
    import importlib.metadata

    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    found = sorted(str(f.locate().resolve()) for f in files if f.name.startswith(f"lib{stem}.so"))
    for folder in (Path(sys.prefix) / "lib", Path(sys.base_prefix) / "lib"):
        if not found and folder.is_dir():
            found = sorted(str(f) for f in folder.glob(f"lib{stem}.so*"))
    return found[-1] if found else ctypes.util.find_library(stem)


def find_mkl() -> str | None:
    """libmkl_rt of the ``mkl`` wheel or of the system; None if absent."""
    return find_library("mkl", "mkl_rt")


def _openblas_core(lib):
    try:
        fn = lib.openblas_get_corename
    except AttributeError:
        return None
    fn.restype = ctypes.c_char_p
    return fn().decode()


def describe() -> str:
    """One line: which BLAS MLX's CPU matmuls use in this process."""
    return _state["note"]


def hint() -> str:
    """What to do where MLX's matmuls run on the wheel's reference BLAS (install OpenBLAS, or
    import mlxseq before mlx.core)."""
    return _state["hint"]


def is_optimized() -> bool:
    return _state["library"] is not None or _preloaded_by_environment() or sys.platform == "darwin"
