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
def test_a_shipped_config_loads_and_its_data_files_exist(path, monkeypatch):
    monkeypatch.chdir(REPO)  # the configs' relative paths are relative to the repository root
    config = load_config(path)
    data = vars(config.data)
    files = [value for key, value in data.items() if key in ("train", "valid", "path") or key.startswith(("train_", "valid_"))]
    files = [f for value in files for f in (value if isinstance(value, list) else [value]) if isinstance(f, str) and f]
    assert files, f"{path.name}: no data files found in {sorted(data)}"
    if not (REPO.parent / "shared" / "data").is_dir():
        pytest.skip("the shared corpora are not next to this checkout")
    missing = [f for f in files if not (REPO / f).is_file()]
    assert not missing, f"{path.name} names data files that do not exist: {missing}"
