"""A PNG of the training and validation curves, drawn from the records of ``metrics.jsonl``.

Left: training loss (per logged window) and validation loss against the step.
Right: every other numeric validation metric (BLEU, chrF, ...), if any. Drawn
with matplotlib's Agg canvas (no display, no global backend switch) and written
atomically. Without matplotlib nothing is drawn.
"""

from __future__ import annotations

from pathlib import Path

from mlxseq.system.files import atomic_write
from mlxseq.training.progress import TOKENS, LossUnits

SKIPPED = {"kind", "step", "epoch", "elapsed", "loss", "ppl", "lr", "grad_norm", "seconds"}  # and every *_per_s


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_curves(records: list[dict], path, title: str = "", units: LossUnits = TOKENS) -> bool:
    """Draw ``records`` (kinds ``train`` and ``validation``) to ``path``; False without matplotlib.

    ``units`` labels the loss axis (what the task's loss is averaged over) and says how the
    training loss differs from the validation loss, if it does.
    """
    if not have_matplotlib():
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    train = [r for r in records if r.get("kind") == "train"]
    valid = [r for r in records if r.get("kind") == "validation"]
    others = sorted(
        {k for r in valid for k, v in r.items()
         if k not in SKIPPED and not k.endswith("_per_s") and isinstance(v, (int, float)) and not isinstance(v, bool)}
    )
    figure = Figure(figsize=(11 if others else 6, 4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2 if others else 1, squeeze=False)[0]
    loss_axes = axes[0]
    if train:
        note = f" ({units.training_note})" if units.training_note else ""
        loss_axes.plot([r["step"] for r in train], [r["loss"] for r in train], label=f"training loss{note}")
    points = [r for r in valid if isinstance(r.get("loss"), (int, float))]
    if points:
        loss_axes.plot([r["step"] for r in points], [r["loss"] for r in points], "o-", label="validation loss")
    loss_axes.set_xlabel("step")
    loss_axes.set_ylabel(f"loss ({units.loss_label})")
    loss_axes.legend()
    loss_axes.grid(alpha=0.3)
    if others:
        metric_axes = axes[1]
        for name in others:
            points = [r for r in valid if isinstance(r.get(name), (int, float))]
            metric_axes.plot([r["step"] for r in points], [r[name] for r in points], "o-", label=name)
        metric_axes.set_xlabel("step")
        metric_axes.set_ylabel("validation metric")
        metric_axes.legend()
        metric_axes.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    atomic_write(Path(path), lambda tmp: figure.savefig(tmp, format="png", dpi=100), suffix=".png")
    return True
