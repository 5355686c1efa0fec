"""The configs in configs/ load strictly (every key known, values valid) and name data that exist."""

from pathlib import Path

import pytest

from mlxseq.config import load_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
DATA_KEYS = ("train", "valid", "path", "recordings")
# Configs whose data files a documented command makes from a corpus (named in the config's comments):
# the corpus file must exist, and the command must appear in the config.
MADE_FROM = {"fsdd_isolated.yaml": ("fsdd/recordings.tar.gz", "tools/make_digit_list.py --recordings")}


def _data_files(config) -> list[str]:
    data = vars(config.data)
    files = [value for key, value in data.items() if key in DATA_KEYS or key.startswith(("train_", "valid_"))]
    return [f for value in files for f in (value if isinstance(value, list) else [value]) if isinstance(f, str) and f]


def test_there_are_shipped_configs():
    assert {p.name for p in CONFIGS} >= {"multi30k_de_en.yaml", "tinyshakespeare_char.yaml", "sst2.yaml",
                                         "ud_ewt_upos.yaml", "etth1.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_a_shipped_config_loads_and_its_data_files_exist(path, monkeypatch, tmp_path):
    # Data paths start at the data root (MLXSEQ_DATA here), never at a folder a user does not have.
    raw = path.read_text()
    assert "../" not in raw.split("\ndata:")[1].split("\n\n")[0], f"{path.name}: a data path leaves the data root"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLXSEQ_DATA", str(tmp_path / "corpora"))
    config = load_config(path)
    files = _data_files(config)
    assert files, f"{path.name}: no data files found in {sorted(vars(config.data))}"
    assert all(f.startswith(str(tmp_path / "corpora")) for f in files), files
    shared = REPO.parent / "shared" / "data"
    if not shared.is_dir():
        pytest.skip(f"the corpora are not in {shared} (see docs/data.md)")
    monkeypatch.setenv("MLXSEQ_DATA", str(shared))
    if path.name in MADE_FROM:
        corpus, command = MADE_FROM[path.name]
        assert command in raw and (shared / corpus).is_file(), f"{path.name}: {corpus} or the command is missing"
        return
    missing = [f for f in _data_files(load_config(path)) if not Path(f).exists()]
    assert not missing, f"{path.name} names data files that do not exist: {missing}"
