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
import struct
import typing
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from mlxseq._version import __version__
from mlxseq.system.files import atomic_write, write_text
from mlxseq.layers.recurrent import TORCH_SUFFIXES
from mlxseq.models import model_module
from mlxseq.quantization import (dequantize_recurrent, keep_recurrent_quantized, keeps_recurrent_quantized,
                                 quantize_recurrent)

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
META_KEYS = ("model_type", "format_version", "mlxseq_version", "quantization")
QUANTIZATION_BITS = (4, 8)
QUANTIZATION_GROUP_SIZES = (32, 64, 128)
# What a model folder may hold; nothing else is downloaded from the Hub.
HUB_PATTERNS = ["config.json", "*.safetensors", "*.model", "*.vocab", "*.json", "*.txt", "README.md"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelFolderError(ValueError):
    """A model folder is missing, incomplete or inconsistent; the message says what to do."""


def save_weights(path, model, weights: dict | None = None) -> None:
    """Write a model's parameters (or ``weights``, as they are to be stored) as safetensors, atomically."""
    weights = dict(tree_flatten(model.parameters())) if weights is None else weights
    atomic_write(path, lambda tmp: mx.save_safetensors(tmp, weights), suffix=".safetensors")


# --- saving ---------------------------------------------------------------------


def quantizable(path: str, module, group_size: int) -> bool:
    """Linear and Embedding weights whose rows split into groups: what :func:`quantize_folder` stores quantized."""
    return isinstance(module, (nn.Linear, nn.Embedding)) and module.weight.shape[-1] % group_size == 0


def save_model(folder, model, model_type: str, args, *, readme: str | None = None,
               quantization: dict | None = None, weights: dict | None = None) -> Path:
    """Write ``model`` and its ``ModelArgs`` as a model folder; returns the folder.

    Weights (the model's parameters, or ``weights`` as they are to be stored) go first and
    ``config.json`` last, so a folder with a config is complete.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(folder / WEIGHTS_FILE, model, weights)
    if readme is not None:
        write_text(folder / "README.md", readme)
    config = {
        "model_type": model_type,
        "format_version": FORMAT_VERSION,
        "mlxseq_version": __version__,
        **({"quantization": quantization} if quantization else {}),
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
            hint = (f"; convert a PyTorch checkpoint first: mlxseq convert {path} FOLDER"
                    if path.suffix in TORCH_SUFFIXES else "")
            raise ModelFolderError(f"{path} is a file; a model is a folder holding {CONFIG_FILE} and {WEIGHTS_FILE}{hint}")
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
    if not isinstance(config["model_type"], str):
        raise ModelFolderError(f"{path}: model_type must be a string, got {config['model_type']!r}")
    version = config.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFolderError(
            f"{path}: format_version {version!r} is newer than this mlxseq ({__version__}) reads "
            f"(up to {FORMAT_VERSION}); upgrade mlxseq"
        )
    return config


_VOCABULARY_FIELDS = ("vocab_size", "src_vocab_size", "tgt_vocab_size")


def model_args(config: dict, source) -> tuple[str, object]:
    """``(model_type, ModelArgs)`` from a config dict; unknown keys and bad values name the file."""
    model_type = config["model_type"]
    try:
        module = model_module(model_type)
    except ValueError as error:
        raise ModelFolderError(f"{source}: {error}") from None
    fields = {f.name for f in dataclasses.fields(module.ModelArgs)}
    retired = getattr(module, "RETIRED_FIELDS", ())  # training settings older folders stored
    values = {k: v for k, v in config.items() if k not in META_KEYS and k not in retired}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ModelFolderError(f"{source}: unknown key {unknown[0]!r} for model_type {model_type!r}")
    _check_values(typing.get_type_hints(module.ModelArgs), values, source)
    try:
        return model_type, module.ModelArgs(**values)
    except (TypeError, ValueError) as error:
        raise ModelFolderError(f"{source}: {error}") from None


def _check_values(types: dict, values: dict, source) -> None:
    """Each value of the type its field declares; counts and sizes >= 0; token ids inside the vocabularies."""
    for name, value in values.items():
        kind = types[name]
        if kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind) if isinstance(kind, type) else True
        if not ok:
            raise ModelFolderError(f"{source}: {name} must be {kind.__name__}, got {value!r}")
        if kind is int and value < 0:
            raise ModelFolderError(f"{source}: {name} must be >= 0, got {value}")
    vocabularies = {name: values[name] for name in _VOCABULARY_FIELDS if name in values}
    for name, value in values.items():
        for vocabulary, size in vocabularies.items():
            if name.endswith("_id") and value >= size:
                raise ModelFolderError(f"{source}: {name} {value} lies outside the vocabulary ({vocabulary} {size})")


def weights_header(path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in a safetensors file, from its header alone (no tensor is read)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as file:
        prefix = file.read(8)
        if len(prefix) < 8:
            raise ModelFolderError(f"{path}: not a safetensors file (shorter than its header)")
        (length,) = struct.unpack("<Q", prefix)
        if length > size - 8 or length > 100 * 2**20:
            raise ModelFolderError(f"{path}: not a safetensors file (header of {length} bytes in {size})")
        try:
            header = json.loads(file.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelFolderError(f"{path}: not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise ModelFolderError(f"{path}: not a safetensors file (its header is not a JSON object)")
    shapes = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise ModelFolderError(f"{path}: tensor {name!r} has no valid shape in the header")
        shapes[name] = tuple(shape)
    return shapes


def check_sizes_against_weights(args, weights_path, source) -> None:
    """Refuse a config whose counts or sizes the weights file cannot hold, before a model is built.

    A model with ``n`` layers has at least ``n`` tensors, and no size (a field
    named ``*_size``) exceeds the elements the file holds; so a 600-byte config
    cannot make mlxseq build a model of a million layers before the weights are
    looked at. (Arrays are lazy: a model built too wide allocates nothing before
    :func:`load_weights` names the mismatched shapes.)
    """
    shapes = weights_header(weights_path)
    elements = sum(_numel(shape) for shape in shapes.values())
    for field in dataclasses.fields(args):
        value = getattr(args, field.name)
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        if field.name.endswith("layers") and value > len(shapes):
            raise ModelFolderError(
                f"{source}: {field.name} {value} needs more tensors than {Path(weights_path).name} holds ({len(shapes)})")
        if field.name.endswith("size") and value > elements:
            raise ModelFolderError(
                f"{source}: {field.name} {value} exceeds the {elements} weights {Path(weights_path).name} holds")


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for n in shape:
        count *= n
    return count


def write_folder_settings(folder, name: str, settings) -> None:
    """Write dataclass ``settings`` as the folder's settings file ``name`` (JSON with ``format_version``,
    atomically); :func:`read_folder_settings` reads it back."""
    content = {"format_version": FORMAT_VERSION, **dataclasses.asdict(settings)}
    write_text(Path(folder) / name, json.dumps(content, ensure_ascii=False, indent=1) + "\n")


def read_folder_settings(folder, name: str, cls, what: str):
    """A model folder's settings file ``name`` (JSON: ``format_version`` and the fields of dataclass
    ``cls``) as a ``cls``; a missing, unreadable or mis-versioned file is a ModelFolderError."""
    path = Path(folder) / name
    if not path.is_file():
        raise ModelFolderError(f"{folder} is not a complete model folder: {name} is missing")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        if content.pop("format_version") != FORMAT_VERSION:
            raise ValueError(f"format_version must be {FORMAT_VERSION}")
        return cls(**content)
    except (ValueError, TypeError, KeyError, AttributeError) as error:  # JSONDecodeError is a ValueError
        raise ModelFolderError(f"{path}: not {what} ({error})") from None


def check_sizes(folder, sizes: dict[str, tuple[int, int]]) -> None:
    """ModelFolderError for the first ``what: (found in the folder's files, expected by config.json)`` that differ."""
    for what, (found, expected) in sizes.items():
        if found != expected:
            raise ModelFolderError(f"{folder}: {found} {what}, but the model's config.json expects {expected}")


def load_weights(model, path, recurrent_quantized: tuple[int, int] | None = None) -> None:
    """Load safetensors into ``model``, naming missing, unexpected and mis-shaped weights.

    ``recurrent_quantized`` ``(bits, group_size)``: the recurrent matrices are stored quantized
    (:mod:`mlxseq.quantization`): they are dequantized, and on a GPU then kept quantized.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFolderError(f"{path.parent} is not a complete model folder: {path.name} is missing")
    try:
        stored = weights = mx.load(str(path))
        if recurrent_quantized:
            weights = dequantize_recurrent(weights, *recurrent_quantized)
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
    if recurrent_quantized and keeps_recurrent_quantized():
        keep_recurrent_quantized(model, stored, *recurrent_quantized)


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
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelFolderError(f"{folder} is not a complete model folder: {WEIGHTS_FILE} is missing")
    check_sizes_against_weights(args, weights, folder / CONFIG_FILE)
    try:
        model = model_module(model_type).build_model(args)
    except (ValueError, TypeError, OverflowError) as error:
        raise ModelFolderError(f"{folder / CONFIG_FILE}: cannot build the model ({error})") from None
    quantization, recurrent = config.get("quantization"), None
    if quantization is not None:
        bits, group_size = _quantization(quantization, folder / CONFIG_FILE)
        nn.quantize(model, group_size=group_size, bits=bits,
                    class_predicate=lambda path, module: quantizable(path, module, group_size))
        recurrent = (bits, group_size) if quantization.get("recurrent") else None
    load_weights(model, weights, recurrent)
    model.eval()
    return model


def _quantization(value, source) -> tuple[int, int]:
    if not isinstance(value, dict) or not {"bits", "group_size"} <= set(value) <= {"bits", "group_size", "recurrent"} \
            or not isinstance(value.get("recurrent", False), bool):
        raise ModelFolderError(f"{source}: quantization must be {{\"bits\": 4 or 8, \"group_size\": 32, 64 or 128, "
                               f"optionally \"recurrent\": true or false}}")
    bits, group_size = value["bits"], value["group_size"]
    if bits not in QUANTIZATION_BITS or group_size not in QUANTIZATION_GROUP_SIZES:
        raise ModelFolderError(f"{source}: quantization bits {bits!r} / group_size {group_size!r} "
                               f"(bits 4 or 8, group_size 32, 64 or 128)")
    return bits, group_size


def quantize_folder(source, out, *, bits: int = 8, group_size: int = 64, recurrent: bool = True) -> Path:
    """Write ``source``'s model to ``out`` with its Linear and Embedding weights quantized (MLX's
    affine quantization, ``bits`` per weight in groups of ``group_size``); the other files are copied.

    With ``recurrent`` the recurrent matrices are stored quantized too (:mod:`mlxseq.quantization`):
    dequantized when the folder loads, the recurrence multiplies them in full precision.
    """
    import shutil

    if bits not in QUANTIZATION_BITS or group_size not in QUANTIZATION_GROUP_SIZES:
        raise ModelFolderError(f"bits must be 4 or 8 and group_size 32, 64 or 128, got {bits} and {group_size}")
    source = resolve_folder(source)
    out = Path(out)
    if out.resolve() == Path(source).resolve():
        raise ModelFolderError("the quantized folder must be another folder than the source")
    config = read_config(source)
    if config.get("quantization"):
        raise ModelFolderError(f"{source} is quantized already")
    model_type, args = model_args(config, source / CONFIG_FILE)
    model = load(source)
    nn.quantize(model, group_size=group_size, bits=bits,
                class_predicate=lambda path, module: quantizable(path, module, group_size))
    stored = {value.dtype for value in mx.load(str(Path(source) / WEIGHTS_FILE)).values()}
    if mx.float16 in stored or mx.bfloat16 in stored:  # keep the rest as compact as the source kept it
        half = mx.bfloat16 if mx.bfloat16 in stored else mx.float16
        model.update(tree_unflatten([(k, v.astype(half) if mx.issubdtype(v.dtype, mx.floating) else v)
                                     for k, v in tree_flatten(model.parameters())]))
    out.mkdir(parents=True, exist_ok=True)
    for item in Path(source).iterdir():
        if item.is_file() and item.name not in (CONFIG_FILE, WEIGHTS_FILE):
            shutil.copy2(item, out / item.name)
    weights, count = dict(tree_flatten(model.parameters())), 0
    if recurrent:
        weights, count = quantize_recurrent(weights, bits, group_size)
    readme = (out / "README.md").read_text(encoding="utf-8") if (out / "README.md").is_file() else None
    if readme is not None:
        stored = "stored the same way and dequantized when the folder loads" if count else "in full precision"
        readme += f"\n## Quantization\n\nLinear and embedding weights stored with {bits}-bit affine quantization " \
                  f"in groups of {group_size} (`mlxseq quantize`); recurrent weights {stored}.\n"
    return save_model(out, model, model_type, args, readme=readme, weights=weights,
                      quantization={"bits": bits, "group_size": group_size, **({"recurrent": True} if count else {})})


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
