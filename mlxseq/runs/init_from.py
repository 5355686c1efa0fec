"""Fine-tuning: a run that starts from a model folder (``training.init_from``).

The run takes the folder's model (``model_type`` and settings, which the config's ``model``
section must not contradict), its weights and its tokenizer: the new data are encoded with
the folder's vocabulary (``RUN/tokenizer/`` is seeded from the folder, so a resumed run reuses
it). The optimizer, schedule and data are the run's own. ``training.freeze`` lists module
paths (``encoder``, ``embedding``, ``cells.0``) whose parameters stay as they are.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import mlx.nn as nn

from mlxseq.checkpoint import CONFIG_FILE, WEIGHTS_FILE, ModelFolderError, load_weights, read_config, resolve_folder
from mlxseq.config import ConfigError, ModelConfig
from mlxseq.models import model_module
from mlxseq.tasks.run_tokenizer import TOKENIZER_FOLDER

BUNDLED = Path(__file__).resolve().parents[1] / "bundled"
NOT_TOKENIZER = {CONFIG_FILE, WEIGHTS_FILE, "README.md", "generation_config.json"}


def starting_folder(value: str) -> Path:
    """The folder ``training.init_from`` names: a path, a bundled model's name, or a Hub repo id."""
    if not Path(value).expanduser().exists() and (BUNDLED / value / CONFIG_FILE).is_file():
        return BUNDLED / value
    folder = resolve_folder(value)
    if "quantization" in read_config(folder):
        raise ModelFolderError(f"{folder} is quantized: fine-tune the full-precision folder it was made from")
    return folder


def model_config_from(folder: Path, config) -> ModelConfig:
    """The folder's ``model`` section; the config's own may only repeat it."""
    saved = read_config(folder)
    model_type, task = saved.get("model_type"), config.task
    from mlxseq.tasks import task_module

    filled = task_module(task).FILLED_MODEL_FIELDS
    if model_type != config.model.model_type:
        raise ConfigError(f"training.init_from is a {model_type!r} model; the config's model_type is "
                          f"{config.model.model_type!r}", config.source, "model.model_type")
    fields = {f.name for f in dataclasses.fields(model_module(model_type).ModelArgs)} if model_type else set()
    args = {k: v for k, v in saved.items() if k in fields and k not in filled}
    for key, value in config.model.args.items():
        if key in args and args[key] != value and not (isinstance(value, tuple) and list(value) == args[key]):
            raise ConfigError(f"{value!r} differs from the init_from folder's {args[key]!r} (remove it from the config)",
                              config.source, f"model.{key}")
    return ModelConfig(model_type, args)


def seed_tokenizer(run_dir: Path, folder: Path, *, resuming: bool) -> None:
    """Copy the folder's tokenizer files into ``RUN/tokenizer/``, marked as taken from it (a
    resumed run keeps the tokenizer it has)."""
    target = Path(run_dir) / TOKENIZER_FOLDER
    if resuming and (target / "settings.json").is_file():
        return
    temporary = Path(run_dir) / f".{TOKENIZER_FOLDER}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name not in NOT_TOKENIZER:
            shutil.copyfile(path, temporary / path.name)
    (temporary / "settings.json").write_text(json.dumps({"init_from": str(folder)}) + "\n", encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    temporary.rename(target)


def start_from(model: nn.Module, folder: Path, freeze: tuple[str, ...], *, load: bool = True) -> None:
    """Load the folder's weights into ``model`` (unless resuming) and freeze the modules ``freeze`` names."""
    if load:
        load_weights(model, folder / WEIGHTS_FILE)
    for path in freeze:
        module = model
        for part in path.split("."):
            children = dict(module.children()) if isinstance(module, nn.Module) else {}
            if isinstance(module, list) and part.isdigit() and int(part) < len(module):
                module = module[int(part)]
            elif part in children:
                module = children[part]
            else:
                raise ConfigError(f"no module {path!r} in the model (its parts: {', '.join(dict(model.children()))})",
                                  None, "training.freeze")
        if isinstance(module, list):
            for item in module:
                item.freeze()
        else:
            module.freeze()
