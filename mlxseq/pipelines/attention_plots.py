"""PNG figures: attention heatmaps, drawn on matplotlib's Agg canvas (no global backend
switch, no display) and written atomically."""

from pathlib import Path

import numpy as np

from mlxseq.system.files import atomic_write


def save_attention_heatmap(path, weights: np.ndarray, source_tokens: list[str], target_tokens: list[str]) -> Path:
    """Save a (target x source) attention matrix as a labelled heatmap with a colour bar.

    Row i is the attention of the decoder step that produced output token i (the last row: ``</s>``).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, cols = weights.shape
    fig = Figure(figsize=(max(4, 0.45 * cols + 2), max(3, 0.4 * rows + 1.5)))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    image = ax.imshow(weights, cmap="viridis", aspect="auto", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="attention weight")
    ax.set_xticks(range(cols), source_tokens, rotation=60, ha="right")
    ax.set_yticks(range(rows), target_tokens)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110), suffix=".png")
    return Path(path)


def attention_paths(path, count: int) -> list[Path]:
    """Where the heatmaps of ``count`` sentences go: ``path`` itself for one, ``NAME-1.png`` ... for more."""
    path = Path(path)
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i}{path.suffix or '.png'}") for i in range(1, count + 1)]
