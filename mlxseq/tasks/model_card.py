"""The parts every task's model card (a model folder's ``README.md``) shares.

A card starts with the Hugging Face Hub's front matter (library, task, tags, the data
and the validation metrics with their values), so a folder published with
``mlxseq upload`` is listed correctly; then the title and how far the model was
trained; ``## Scores``, a table of
the validation metrics with what produced them; ``## Data`` (the task's own lines);
``## Training``, the command and the model size. Each task joins these lists of lines
with its own.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import yaml

from mlxseq._version import __version__


def front_matter(config, pipeline_tag: str, summary: dict, datasets: list[str]) -> list[str]:
    """The Hub's YAML header: library, pipeline tag, tags, data files and the validation metrics."""
    name = Path(config.output_dir).name
    files = [f for d in datasets for f in (d if isinstance(d, (list, tuple)) else [d]) if isinstance(f, str) and f]
    metrics = [{"type": key, "value": round(float(value), 4)}
               for key, value in (summary.get("metrics") or {}).items()
               if isinstance(value, float) and not isinstance(value, bool)]
    header = {
        "library_name": "mlxseq",
        "pipeline_tag": pipeline_tag,
        "tags": ["mlxseq", "mlx", "recurrent", config.task],
        "datasets": sorted({Path(f).name for f in files}),
    }
    if metrics:
        header["model-index"] = [{"name": name, "results": [{
            "task": {"type": pipeline_tag},
            "dataset": {"name": ", ".join(sorted({Path(f).name for f in files})) or "validation", "type": "custom",
                        "split": "validation"},
            "metrics": metrics,
        }]}]
    return ["---", *yaml.safe_dump(header, sort_keys=False, allow_unicode=True).splitlines(), "---", ""]


def card_heading(config, title: str, summary: dict, pipeline_tag: str, datasets: list[str]) -> list[str]:
    """Front matter, the title (the run folder's name and ``title``), the version and step, ``## Scores``."""
    return front_matter(config, pipeline_tag, summary, datasets) + [
        f"# {Path(config.output_dir).name}: {title}", "",
        f"Trained with mlxseq {__version__} (MLX {mx.__version__}) to step {summary['step']} "
        f"(epoch {summary['epoch']}).", "", "## Scores", "",
    ]


def scores_table(intro: str, metrics: dict) -> list[str]:
    """``intro`` and a table of the numeric ``metrics``, or a line saying there are none."""
    if not metrics:
        return ["Not validated at this step."]
    return [intro, "", "| metric | value |", "| --- | ---: |"] + [
        f"| {k} | {v:.4g} |" for k, v in metrics.items() if isinstance(v, float)
    ]


def training_section(command: str, parameters: int, then: str = "") -> list[str]:
    """``## Training``: the command in a code block, then the model size (``then`` continues that sentence)."""
    return ["", "## Training", "", "```", command, "```", "",
            f"Model: {parameters:,} parameters; arguments in config.json.{then}", ""]
