"""Where a config's data files are: a data root for relative paths, and datasets on the Hugging Face Hub.

A data path in a config is one of:

- absolute, or relative to the working folder where that file exists: used as it is;
- ``hf://datasets/OWNER/NAME/PATH`` (``@REVISION`` after NAME optional): the file PATH of
  that Hub dataset repo, downloaded once into the Hugging Face cache (offline: from the
  cache, or one clear error);
- any other relative path: under the data root, ``data.root`` in the config, else the
  ``MLXSEQ_DATA`` environment variable, else ``./data``.

The corpora the shipped configs use are listed in :data:`KNOWN_CORPORA`, so that a
missing file is named with where to get it and where to put it.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ROOT_VARIABLE = "MLXSEQ_DATA"
DEFAULT_DATA_ROOT = "data"
HUB_PREFIX = "hf://datasets/"

# First folder under the data root -> (public source, licence) of the corpora the shipped configs read.
KNOWN_CORPORA = {
    "multi30k": ("GitHub multi30k/dataset, data/task1/raw/{train,val,test_2016_flickr}.{de,en}.gz",
                 "research use; images from Flickr (see the repository's README)"),
    "tinyshakespeare": ("GitHub karpathy/char-rnn, data/tinyshakespeare/input.txt", "public domain text, MIT repository"),
    "sst2": ("GLUE SST-2 (gluebenchmark.com), train.tsv and dev.tsv, gzipped as glue/{train,dev}.tsv.gz",
             "see GLUE's terms; SST is from Stanford"),
    "ud-english-ewt": ("GitHub UniversalDependencies/UD_English-EWT, en_ewt-ud-{train,dev,test}.conllu, gzipped",
                       "CC BY-SA 4.0"),
    "ett": ("GitHub zhouhaoyi/ETDataset, ETT-small/ETTh1.csv", "CC BY-ND 4.0"),
    "fsdd": ("GitHub Jakobovski/free-spoken-digit-dataset, the recordings/ folder (or it packed as "
             "recordings.tar.gz)", "CC BY-SA 4.0"),
}


# Fields of a task's DataArgs that name data files (a path or a list of paths).
DATA_FILE_KEYS = ("train", "valid", "test", "path", "train_src", "train_tgt", "valid_src", "valid_tgt", "recordings")


class DataLocationError(ValueError):
    """A data path cannot be resolved (a Hub dataset that cannot be fetched); the message says why.

    Attributes:
        key: the DataArgs field the path came from, once known.
    """

    key = ""


def data_root(configured: str | None = None) -> Path:
    """The folder relative data paths start at: ``configured``, else ``$MLXSEQ_DATA``, else ``./data``."""
    return Path(configured or os.environ.get(DATA_ROOT_VARIABLE) or DEFAULT_DATA_ROOT).expanduser()


def resolve_data_path(value: str, root: Path) -> str:
    """The local path of a config's data path (see the module docstring)."""
    if value.startswith(HUB_PREFIX):
        return str(fetch_hub_file(value))
    path = Path(value).expanduser()
    if path.is_absolute() or path.exists():
        return str(path)
    return str(root / path)


def resolve_data_files(data, root: Path):
    """``data`` (a task's DataArgs) with each of its :data:`DATA_FILE_KEYS` paths resolved.

    Paths found under the data root become absolute, so that a saved config reads back the
    same; a path given absolute or found relative to the working folder stays as written.
    """
    def resolved(value: str) -> str:
        local = resolve_data_path(value, root)
        return local if local == value or Path(local).is_absolute() else str(Path(local).resolve())

    for key in DATA_FILE_KEYS:
        value = getattr(data, key, None)
        try:
            if isinstance(value, str) and value:
                setattr(data, key, resolved(value))
            elif isinstance(value, list):
                setattr(data, key, [resolved(v) if isinstance(v, str) and v else v for v in value])
        except DataLocationError as error:
            error.key = key
            raise
    return data


def fetch_hub_file(url: str) -> Path:
    """Download ``hf://datasets/OWNER/NAME[@REVISION]/PATH`` into the Hub cache (or find it there offline)."""
    parts = url[len(HUB_PREFIX):].split("/")
    if len(parts) < 3 or not all(parts):
        raise DataLocationError(f"{url}: expected hf://datasets/OWNER/NAME/PATH")
    name, _, revision = parts[1].partition("@")
    repo_id, filename = f"{parts[0]}/{name}", "/".join(parts[2:])
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, filename, repo_type="dataset", revision=revision or None))
    except Exception as error:  # the Hub raises many types: offline, not found, gated, HTTP
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataLocationError(
            f"could not get {filename} of dataset {repo_id!r} from the Hugging Face Hub ({type(error).__name__}: "
            f"{reason}). Offline? Download it once online (it is then read from the cache with HF_HUB_OFFLINE=1), "
            "or give a local path") from None


def where_to_get(path: str | os.PathLike) -> str:
    """A hint for a missing data file of a known corpus (a folder of :data:`KNOWN_CORPORA` in its path):
    its source, licence and where to put it; '' for other files."""
    parts = Path(path).parts
    corpus = next((part for part in parts if part in KNOWN_CORPORA), None)
    if corpus is None:
        return ""
    source, licence = KNOWN_CORPORA[corpus]
    return (f"; it is part of {corpus}: get it from {source} ({licence}) and put it at {path} "
            f"(relative data paths start at the data root: data.root, {DATA_ROOT_VARIABLE} or ./data)")
