"""The parts every task's model card (a model folder's ``README.md``) shares.

A card reads: the title and how far the model was trained; ``## Scores``, a table of
the validation metrics with what produced them; ``## Data`` (the task's own lines);
``## Training``, the command and the model size. Each task joins these lists of lines
with its own.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx

from mlxseq._version import __version__


def card_heading(config, title: str, summary: dict) -> list[str]:
    """The title (the run folder's name and ``title``), the version and step, and the ``## Scores`` heading."""
    return [
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
