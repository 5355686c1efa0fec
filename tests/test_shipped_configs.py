"""The configs in configs/ load strictly (every key known, values valid) and name data that exist."""

from pathlib import Path

import pytest

from mlxseq.config import load_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


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
    data = vars(config.data)
    files = [value for key, value in data.items() if key in ("train", "valid", "path") or key.startswith(("train_", "valid_"))]
    files = [f for value in files for f in (value if isinstance(value, list) else [value]) if isinstance(f, str) and f]
    assert files, f"{path.name}: no data files found in {sorted(data)}"
    assert all(f.startswith(str(tmp_path / "corpora")) for f in files), files
    shared = REPO.parent / "shared" / "data"
    if not shared.is_dir():
        pytest.skip(f"the corpora are not in {shared} (see docs/data.md)")
    monkeypatch.setenv("MLXSEQ_DATA", str(shared))
    config = load_config(path)
    files = [value for key, value in vars(config.data).items() if key in ("train", "valid", "path") or key.startswith(("train_", "valid_"))]
    files = [f for value in files for f in (value if isinstance(value, list) else [value]) if isinstance(f, str) and f]
    missing = [f for f in files if not Path(f).is_file()]
    assert not missing, f"{path.name} names data files that do not exist: {missing}"
