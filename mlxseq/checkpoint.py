"""Model folders: ``config.json`` + ``model.safetensors`` (+ tokenizer files, README).

A folder is the unit of exchange: :func:`save_model` writes one, :func:`load`
reads one from a local path or a Hugging Face Hub repo id. Every file is written
to a temporary name in the same folder and renamed into place, so a crash
never leaves a half-written file under a real name.

``config.json`` holds ``model_type``, ``format_version``, ``mlxseq_version``
and the model type's ``ModelArgs`` fields at the top level. Loading is strict:
an unknown key is an error that names the key and the file.
"""

import dataclasses
import json
import re
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from mlxseq._version import __version__
from mlxseq.files import atomic_write, write_text
from mlxseq.models import model_module

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
META_KEYS = ("model_type", "format_version", "mlxseq_version")
# What a model folder may hold; nothing else is downloaded from the Hub.
HUB_PATTERNS = ["config.json", "*.safetensors", "*.model", "*.vocab", "*.json", "*.txt", "README.md"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelFolderError(ValueError):
    """A model folder is missing, incomplete or inconsistent; the message says what to do."""


def save_weights(path, model) -> None:
    """Write a model's parameters as safetensors, atomically."""
    weights = dict(tree_flatten(model.parameters()))
    atomic_write(path, lambda tmp: mx.save_safetensors(tmp, weights), suffix=".safetensors")


# --- saving ---------------------------------------------------------------------


def save_model(folder, model, model_type: str, args, *, readme: str | None = None) -> Path:
    """Write ``model`` and its ``ModelArgs`` as a model folder; returns the folder.

    Weights go first and ``config.json`` last, so a folder with a config is complete.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(folder / WEIGHTS_FILE, model)
    if readme is not None:
        write_text(folder / "README.md", readme)
    config = {
        "model_type": model_type,
        "format_version": FORMAT_VERSION,
        "mlxseq_version": __version__,
        **dataclasses.asdict(args),
    }
    write_text(folder / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    return folder


# --- loading --------------------------------------------------------------------


def resolve_folder(path_or_repo, revision: str | None = None) -> Path:
    """A local model folder for a path or a Hub repo id (downloaded or from the cache)."""
    path = Path(path_or_repo).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelFolderError(f"{path} is a file; a model is a folder holding {CONFIG_FILE} and {WEIGHTS_FILE}")
        return path
    name = str(path_or_repo)
    if not _REPO_ID.match(name):
        raise ModelFolderError(f"no model folder at {name} (and it is not a Hub repo id of the form owner/name)")
    return _download(name, revision)


def _download(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=HUB_PATTERNS))
    except Exception as error:  # the Hub raises many types: offline, not found, gated, HTTP
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelFolderError(
            f"could not get {repo_id!r} from the Hugging Face Hub ({type(error).__name__}: {reason}). "
            "Offline? Pass a local folder, or download it once online (it is then read from the cache "
            "with HF_HUB_OFFLINE=1)."
        ) from None


def read_config(folder) -> dict:
    """``config.json`` of a folder, checked for ``model_type`` and format version."""
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise ModelFolderError(f"{folder} is not a complete model folder: {CONFIG_FILE} is missing")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelFolderError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise ModelFolderError(f"{path}: no 'model_type' key")
    version = config.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFolderError(
            f"{path}: format_version {version!r} is newer than this mlxseq ({__version__}) reads "
            f"(up to {FORMAT_VERSION}); upgrade mlxseq"
        )
    return config


def model_args(config: dict, source) -> tuple[str, object]:
    """``(model_type, ModelArgs)`` from a config dict; unknown keys name the file."""
    model_type = config["model_type"]
    try:
        module = model_module(model_type)
    except ValueError as error:
        raise ModelFolderError(f"{source}: {error}") from None
    fields = {f.name for f in dataclasses.fields(module.ModelArgs)}
    values = {k: v for k, v in config.items() if k not in META_KEYS}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ModelFolderError(f"{source}: unknown key {unknown[0]!r} for model_type {model_type!r}")
    try:
        return model_type, module.ModelArgs(**values)
    except (TypeError, ValueError) as error:
        raise ModelFolderError(f"{source}: {error}") from None


def load_weights(model, path) -> None:
    """Load safetensors into ``model``, naming missing, unexpected and mis-shaped weights."""
    path = Path(path)
    if not path.is_file():
        raise ModelFolderError(f"{path.parent} is not a complete model folder: {path.name} is missing")
    try:
        weights = mx.load(str(path))
    except Exception as error:
        raise ModelFolderError(f"{path}: cannot read weights ({error})") from None
    expected = dict(tree_flatten(model.parameters()))
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ModelFolderError(f"{path}: weights do not match the config: missing {missing}, unexpected {unexpected}")
    for name, value in weights.items():
        if value.shape != expected[name].shape:
            raise ModelFolderError(
                f"{path}: weight {name} has shape {tuple(value.shape)}, the config expects {tuple(expected[name].shape)}"
            )
    # Weights stored in half precision (as the bundled models are) compute in the model's own dtype.
    model.load_weights([(name, _as_dtype(value, expected[name].dtype)) for name, value in weights.items()])


def _as_dtype(value: mx.array, dtype: mx.Dtype) -> mx.array:
    floating = mx.issubdtype(value.dtype, mx.floating) and mx.issubdtype(dtype, mx.floating)
    return value.astype(dtype) if floating and value.dtype != dtype else value


def load_with_tokenizer(path_or_repo, model_type: str, read_tokenizer, *, bundled: Path, job: str, revision=None):
    """Load a folder of ``model_type`` and its tokenizer(s); ``(model, tokenizer, folder)``.

    ``path_or_repo`` None means the ``bundled`` folder shipped with mlxseq. ``read_tokenizer``
    reads the tokenizer(s) from the folder; ``job`` names the use in messages.
    """
    if path_or_repo is None:
        if not (Path(bundled) / CONFIG_FILE).is_file():
            raise ModelFolderError(f"this install has no bundled {job} model; pass a model folder or Hub repo id")
        path_or_repo = bundled
    folder = resolve_folder(path_or_repo, revision)
    found = read_config(folder)["model_type"]
    if found != model_type:
        raise ModelFolderError(f"{folder} holds a {found!r} model; {job} needs model_type {model_type!r}")
    model = load(folder)
    try:
        tokenizer = read_tokenizer(folder)
    except Exception as error:
        raise ModelFolderError(f"{folder} is not a complete {job} model: no tokenizer ({error})") from None
    return model, tokenizer, folder


def load(path_or_repo, *, revision: str | None = None):
    """Load a model from a folder or a Hugging Face Hub repo id, in eval mode."""
    folder = resolve_folder(path_or_repo, revision)
    config = read_config(folder)
    model_type, args = model_args(config, folder / CONFIG_FILE)
    model = model_module(model_type).build_model(args)
    load_weights(model, folder / WEIGHTS_FILE)
    model.eval()
    return model


def upload(folder, repo_id: str, *, private: bool = False, message: str | None = None) -> str:
    """Publish a model folder to the Hugging Face Hub (creating the repo); returns its URL.

    Only a complete folder is uploaded, and only the files a model folder holds
    (``HUB_PATTERNS``): no resume state or logs.
    """
    from huggingface_hub import HfApi

    folder = Path(folder)
    config = read_config(folder)
    if not (folder / WEIGHTS_FILE).is_file():
        raise ModelFolderError(f"{folder} is not a complete model folder: {WEIGHTS_FILE} is missing")
    if not _REPO_ID.match(repo_id):
        raise ModelFolderError(f"{repo_id!r} is not a Hub repo id of the form owner/name")
    api = HfApi()
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            allow_patterns=HUB_PATTERNS,
            commit_message=message or f"Upload mlxseq {config['model_type']} model",
        )
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelFolderError(f"could not upload to {repo_id!r} ({type(error).__name__}: {reason}); logged in? (hf auth login)") from None
    return str(url)
