"""Builds mlxseq's optional native recurrence (csrc/ -> mlxseq._native) with CMake.

Everything else is in pyproject.toml. Where the build cannot run (no C++ compiler, no CMake,
an MLX without its headers) or MLXSEQ_NATIVE=0 is set, mlxseq installs without the
extension and runs its pure-MLX path; `mlxseq info` says which path is in use and why.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SOURCE = Path(__file__).resolve().parent / "csrc"


class OptionalCMakeBuild(build_ext):
    """CMake build of csrc/; a failure is reported and leaves the pure-MLX path."""

    def build_extension(self, ext):
        if os.environ.get("MLXSEQ_NATIVE") == "0":
            print("mlxseq: MLXSEQ_NATIVE=0, the native recurrence is not built", file=sys.stderr)
            return
        target = Path(self.get_ext_fullpath(ext.name)).resolve()
        build = Path(self.build_temp).resolve() / "native"
        build.mkdir(parents=True, exist_ok=True)
        configure = ["cmake", str(SOURCE), "-DCMAKE_BUILD_TYPE=Release", f"-DPython_EXECUTABLE={sys.executable}",
                     f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={build / 'out'}"]
        try:
            subprocess.run(configure, cwd=build, check=True, capture_output=True, text=True)
            subprocess.run(["cmake", "--build", ".", "-j", str(os.cpu_count() or 1)], cwd=build, check=True,
                           capture_output=True, text=True)
            built = next((build / "out").glob("_native*"))
        except (OSError, subprocess.CalledProcessError, StopIteration) as error:
            detail = getattr(error, "stderr", "") or getattr(error, "stdout", "") or str(error)
            print(f"mlxseq: the native recurrence was not built; the pure-MLX path will be used.\n"
                  f"{detail.strip()[-2000:]}", file=sys.stderr)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, target.with_name(built.name))

    def copy_extensions_to_source(self):
        built = [Path(self.build_lib) / self.get_ext_filename(self.get_ext_fullname(e.name)) for e in self.extensions]
        if all(path.exists() for path in built):  # an extension that was not built has nothing to copy
            super().copy_extensions_to_source()


setup(ext_modules=[Extension("mlxseq._native", sources=[])], cmdclass={"build_ext": OptionalCMakeBuild})
