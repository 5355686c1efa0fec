"""Training configs written for the task tests: defaults plus a test's changes, as ``config.yaml``."""

from pathlib import Path

import yaml


def write_training_config(folder: Path, raw: dict, sections: dict | None = None) -> Path:
    """``raw`` with ``sections`` applied, written to ``folder/config.yaml``; returns its path.

    A dict in ``sections`` updates that section key by key; anything else replaces it.
    """
    for name, changes in (sections or {}).items():
        raw[name] = {**raw.get(name, {}), **changes} if isinstance(changes, dict) else changes
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path
