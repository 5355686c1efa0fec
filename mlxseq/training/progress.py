"""What a person watching a run sees: a rich progress bar, or plain log lines.

The bar shows the step, loss, perplexity, target tokens per second, learning
rate and the time left. It is on by default only when stderr is a terminal;
without it, each logged window becomes one line through ``log``. Messages
(validation scores, saves) go above the bar, or through ``log``.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Callable

Log = Callable[[str], None]


@dataclass(frozen=True)
class LossUnits:
    """What a task's training loss is averaged over, so that logs, the bar and the curves say it honestly."""

    item: str = "token"  # one counted unit of the loss: token, example, value, span
    perplexity: bool = True  # exp(loss) means something: a per-token cross-entropy of a language model
    loss_label: str = "nats per token"  # the loss axis of curves.png
    training_note: str = ""  # how the training loss differs from the validation loss (e.g. "adversarial")

    @property
    def rate_key(self) -> str:
        """The metrics.jsonl field of the training speed: tokens_per_s, examples_per_s, ..."""
        return f"{self.item}s_per_s"


TOKENS = LossUnits()


def stderr_log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Progress:
    """Context manager; ``enabled=None`` means: a bar if stderr is a terminal.

    Args:
        total: the step the run ends at (for the bar and the time left).
        start: the step it starts from (a resumed run starts past 0).
        enabled: draw the bar; ``None`` decides by the terminal.
        log: where messages and (without a bar) window summaries go; ``None`` is silent.
    """

    def __init__(self, total: int, start: int, enabled: bool | None = None, log: Log | None = stderr_log,
                 units: LossUnits = TOKENS):
        self.total, self.start, self.log, self.units = total, start, log, units
        self.enabled = (sys.stderr.isatty() if enabled is None else enabled) and log is not None
        self._bar = self._task = None

    def __enter__(self) -> "Progress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            ppl = "  ppl {task.fields[ppl]:.1f}" if self.units.perplexity else ""
            fields = ("loss {task.fields[loss]:.3f}" + ppl + "  {task.fields[tps]:,.0f} "
                      + f"{self.units.item}s/s" + "  lr {task.fields[lr]:.2e}")
            self._bar = RichProgress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn(fields),
                TextColumn("eta"), TimeRemainingColumn(), console=Console(stderr=True),
            )
            self._bar.start()
            self._task = self._bar.add_task(
                "train", total=self.total, completed=self.start, loss=math.nan, ppl=math.nan, tps=0.0, lr=0.0
            )
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def step(self, step: int, loss: float, tokens_per_s: float, lr: float) -> None:
        """After every update (cheap: the loss is already on the host)."""
        if self._bar is not None:
            self._bar.update(
                self._task, completed=step, loss=loss, ppl=perplexity(loss), tps=tokens_per_s, lr=lr
            )

    def window(self, record: dict) -> None:
        """After each logged window: a line when there is no bar."""
        if self._bar is None and self.log is not None:
            ppl = f"ppl {record['ppl']:.2f}  " if self.units.perplexity else ""
            self.log(
                f"step {record['step']}/{self.total}  epoch {record['epoch']}  loss {record['loss']:.4f}  "
                f"{ppl}{record[self.units.rate_key]:,.0f} {self.units.item}s/s  lr {record['lr']:.3e}"
            )

    def message(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False)
        elif self.log is not None:
            self.log(text)


def perplexity(loss: float) -> float:
    """``exp(loss)``, inf instead of an overflow."""
    return math.exp(loss) if loss < 700 else math.inf


class TrainingWindow:
    """Training statistics since the last logged record."""

    def __init__(self):
        self.loss_sum = self.tokens = self.seconds = self.norm_sum = 0.0
        self.steps = 0

    def add(self, loss: float, tokens: float, norm: float, seconds: float) -> None:
        self.loss_sum += loss * tokens
        self.tokens += tokens
        self.norm_sum += norm
        self.seconds += seconds
        self.steps += 1

    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def record(self, step: int, epoch: int, lr: float, elapsed: float, units: LossUnits = TOKENS) -> dict:
        """The window as a metrics.jsonl record; ``units``: what the loss counts (ppl only where it means something)."""
        loss = self.loss_sum / max(self.tokens, 1.0)
        record = {"kind": "train", "step": step, "epoch": epoch, "loss": loss}
        if units.perplexity:
            record["ppl"] = perplexity(loss)
        record.update({units.rate_key: self.tokens_per_s(), "lr": lr, "grad_norm": self.norm_sum / max(self.steps, 1),
                       "elapsed": round(elapsed, 3)})
        return record
