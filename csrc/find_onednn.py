"""Prints the include folder of oneDNN's headers (the `onednn-devel-cpu-gomp` wheel), or nothing."""

import importlib.metadata
import os

folder = os.environ.get("MLXSEQ_ONEDNN_INCLUDE", "")
for name in () if folder else ("onednn-devel-cpu-gomp", "onednn-devel"):
    try:
        files = importlib.metadata.distribution(name).files or []
    except importlib.metadata.PackageNotFoundError:
        continue
    header = next((f for f in files if str(f).endswith("oneapi/dnnl/dnnl.h")), None)
    if header is not None:
        folder = str(header.locate().resolve().parents[2])
        break
print(folder, end="")
