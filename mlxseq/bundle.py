"""Copy a model folder with its weights in half precision: how the bundled models are made.

    python -m mlxseq.bundle runs/multi30k_de_en/best mlxseq/bundled/multi30k-de-en

Every file of the folder is copied as it is except ``model.safetensors``, whose
floating-point weights are stored as float16 (half the size). :func:`mlxseq.load`
computes in float32 again (see :func:`mlxseq.checkpoint.load_weights`).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import mlx.core as mx

from mlxseq.checkpoint import CONFIG_FILE, WEIGHTS_FILE, ModelFolderError
from mlxseq.system.files import atomic_write


def bundle_folder(source, destination, *, dtype: mx.Dtype = mx.float16) -> Path:
    """Copy model folder ``source`` to ``destination`` with floating weights cast to ``dtype``."""
    source, destination = Path(source), Path(destination)
    if not (source / CONFIG_FILE).is_file() or not (source / WEIGHTS_FILE).is_file():
        raise ModelFolderError(f"{source} is not a model folder: it needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    destination.mkdir(parents=True, exist_ok=True)
    weights = mx.load(str(source / WEIGHTS_FILE))
    half = {k: v.astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v for k, v in weights.items()}
    atomic_write(destination / WEIGHTS_FILE, lambda tmp: mx.save_safetensors(tmp, half), suffix=".safetensors")
    for path in sorted(source.iterdir()):
        if path.is_file() and path.name not in (WEIGHTS_FILE, CONFIG_FILE):
            shutil.copyfile(path, destination / path.name)
    shutil.copyfile(source / CONFIG_FILE, destination / CONFIG_FILE)  # last: a folder with a config is complete
    return destination


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m mlxseq.bundle SOURCE_FOLDER DESTINATION_FOLDER")
    out = bundle_folder(sys.argv[1], sys.argv[2])
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"{out}: {size / 1e6:.1f} MB")
