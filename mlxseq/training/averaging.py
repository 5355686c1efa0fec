"""Checkpoint averaging: one model folder whose weights are the mean of several.

    mlxseq average runs/multi30k_de_en/checkpoints/step-* --output runs/multi30k_de_en/averaged

For folders 1..N of the same model (``config.json`` equal apart from the mlxseq version),

    θ̄ = (1/N) Σ_i θ_i        for every parameter, in float32 whatever the stored dtype

(as OpenNMT-py's ``average_models.py`` and fairseq's ``average_checkpoints.py`` do). The
last checkpoints of a run lie close together near the end of the learning-rate schedule,
and their mean usually scores a little higher than any one of them. Training keeps such
checkpoints with ``training.keep_checkpoints: N`` (``checkpoints/step-<8-digit step>/``).

The output folder gets the first folder's other files (tokenizer, model card with a note
of what was averaged), the averaged ``model.safetensors`` in the first folder's dtype, and
``config.json`` last, so a folder with a config is complete.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlx.core as mx

from mlxseq.checkpoint import CONFIG_FILE, WEIGHTS_FILE, ModelFolderError
from mlxseq.system.files import atomic_write, write_text

IGNORED_CONFIG_KEYS = ("mlxseq_version",)


def average_folders(folders, output) -> Path:
    """Write model folder ``output`` with the mean of the weights of ``folders``; returns it."""
    folders = [Path(folder) for folder in folders]
    output = Path(output)
    if not folders:
        raise ModelFolderError("nothing to average: give one or more model folders")
    for folder in folders:
        if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
            raise ModelFolderError(f"{folder} is not a model folder: it needs {CONFIG_FILE} and {WEIGHTS_FILE}")
        if folder.resolve() == output.resolve():
            raise ModelFolderError(f"the output folder {output} is also an input: write the average elsewhere")
    configs = [_comparable_config(folder) for folder in folders]
    for folder, config in zip(folders[1:], configs[1:]):
        _check_same_config(folders[0], configs[0], folder, config)

    first = mx.load(str(folders[0] / WEIGHTS_FILE))
    total = {key: value.astype(mx.float32) for key, value in first.items()}
    for folder in folders[1:]:
        weights = mx.load(str(folder / WEIGHTS_FILE))
        _check_same_weights(folders[0], first, folder, weights)
        for key, value in weights.items():
            total[key] = total[key] + value.astype(mx.float32)
        mx.eval(total)
    scale = 1.0 / len(folders)
    averaged = {key: _mean_as(total[key], scale, first[key].dtype) for key in first}
    mx.eval(averaged)

    output.mkdir(parents=True, exist_ok=True)
    atomic_write(output / WEIGHTS_FILE, lambda tmp: mx.save_safetensors(tmp, averaged), suffix=".safetensors")
    for path in sorted(folders[0].iterdir()):
        if path.is_file() and path.name not in (WEIGHTS_FILE, CONFIG_FILE, "README.md"):
            shutil.copyfile(path, output / path.name)
    write_text(output / "README.md", _model_card(folders))
    shutil.copyfile(folders[0] / CONFIG_FILE, output / CONFIG_FILE)
    return output


def _comparable_config(folder: Path) -> dict:
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelFolderError(f"{folder / CONFIG_FILE} is not valid JSON: {error}") from None
    return {key: value for key, value in config.items() if key not in IGNORED_CONFIG_KEYS}


def _check_same_config(first: Path, config: dict, other: Path, other_config: dict) -> None:
    for key in sorted(set(config) | set(other_config)):
        if config.get(key) != other_config.get(key):
            raise ModelFolderError(
                f"{other} is not the same model as {first}: {CONFIG_FILE} key {key!r} is "
                f"{other_config.get(key)!r} there and {config.get(key)!r} in {first}"
            )


def _check_same_weights(first: Path, weights: dict, other: Path, other_weights: dict) -> None:
    missing, extra = sorted(set(weights) - set(other_weights)), sorted(set(other_weights) - set(weights))
    if missing or extra:
        raise ModelFolderError(
            f"{other / WEIGHTS_FILE} has other parameters than {first / WEIGHTS_FILE}: "
            f"missing {missing[:5]}, extra {extra[:5]}"
        )
    for key, value in weights.items():
        if tuple(other_weights[key].shape) != tuple(value.shape):
            raise ModelFolderError(
                f"{other / WEIGHTS_FILE}: parameter {key!r} has shape {tuple(other_weights[key].shape)}, "
                f"expected {tuple(value.shape)} as in {first / WEIGHTS_FILE}"
            )


def _mean_as(total: mx.array, scale: float, dtype: mx.Dtype) -> mx.array:
    mean = total * scale
    if mx.issubdtype(dtype, mx.floating):
        return mean.astype(dtype)
    return mx.round(mean).astype(dtype)  # integer buffers (none in mlxseq's models): the rounded mean


def _model_card(folders: list[Path]) -> str:
    first_card = folders[0] / "README.md"
    card = first_card.read_text(encoding="utf-8").rstrip() + "\n\n" if first_card.is_file() else ""
    names = "\n".join(f"- `{folder}`" for folder in folders)
    return (
        f"{card}## Averaged weights\n\n"
        f"The weights of this folder are the element-wise mean of the {len(folders)} model folders below "
        f"(`mlxseq average`); scores above, if any, are those of the first of them.\n\n{names}\n"
    )
