"""The training loop: a function of a model, a resumable batch iterator, a loss and callbacks.

Each update (see :mod:`mlxseq.training.step`): (1) the learning rate of the step
is set; (2) the compiled step computes the loss ``sum / tokens``, clips the
gradients to a global norm and updates the parameters; (3) everything is
evaluated and the loss read back: a NaN or infinite loss stops training at once,
before anything is saved; (4) every ``eval_every`` steps the task's ``validate``
callback scores the model (in eval mode, with MLX's random key put back
afterwards, so validating never changes the training numbers), ``last/`` and
``best/`` are written and a resume checkpoint is saved.

A run stopped at any step and resumed (same ``output_dir``) ends with the same
parameters, bit for bit, as a run that was never stopped: the checkpoint holds
the parameters, the optimizer state, the random key, the batch position and
the metric trackers, and the learning rate is a function of the step.

Ctrl-C finishes the current step, saves a resume checkpoint and raises
:class:`TrainingInterrupted` (a KeyboardInterrupt); a second Ctrl-C interrupts at once
(and still saves, unless it cut an update in half).

Data parallel (``world``, :mod:`mlxseq.training.distributed`): every rank walks the
same global batches and trains on its shard of each; the step all-reduces, so all
ranks hold the same parameters. Rank 0 alone writes (every file goes through one
:class:`RunFolder`), logs, validates and reads the resume checkpoint, and broadcasts
what the others need: the parameters and random key at the start, the checkpoint
when resuming, the metrics after validating. Ctrl-C on any rank stops all of them
after the same step.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_unflatten

from mlxseq.training.args import TrainingArgs
from mlxseq.training.distributed import World
from mlxseq.training.interrupts import interrupt_flag
from mlxseq.training.progress import TOKENS, Log, LossUnits, Progress, TrainingWindow, stderr_log
from mlxseq.training.resume import ResumeError, load_rank_arrays, set_leaves
from mlxseq.training.run_folder import RunFolder
from mlxseq.training.schedule import Plateau, Tracker, learning_rate_schedule
from mlxseq.training.step import LossFn, TrainStep, random_key, set_random_key

Validate = Callable[[nn.Module], dict]
"""``validate(model) -> metrics``: numbers (loss, ppl, bleu...) and strings (signatures)."""
SaveModel = Callable[[Path, nn.Module, dict], None]
"""``save_model(folder, model, summary)`` writes a model folder; ``summary`` has step, epoch, metrics, best."""


class ResumableBatches(Protocol):
    """What the loop iterates: ``for batch in it`` yields the rest of the current epoch.

    A batch is a tuple of arrays for ``loss_fn``. ``state_dict()`` taken after a batch
    was used resumes with the batch after it (as :class:`mlxseq.data.BatchSampler`).
    """

    epoch: int

    def __iter__(self) -> Iterator[tuple]: ...

    def __len__(self) -> int: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what was kept."""


class TrainingDivergedError(TrainingError):
    """The loss became NaN or infinite; nothing after the last checkpoint was saved."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C: a resume checkpoint was saved (when the state allowed) before stopping."""


@dataclass
class TrainingResult:
    step: int  # updates done, in all runs of this output_dir
    epoch: int  # the epoch the batch iterator is in
    stopped: str  # max_steps, max_epochs or early_stopping
    best: dict  # {"metric", "value", "step"} of the best validation (value None without one)
    metrics: dict = field(default_factory=dict)  # the last validation's metrics
    output_dir: Path = Path(".")
    rank: int = 0  # this process's rank in data-parallel training (only rank 0 writes)


def make_optimizer(args: TrainingArgs) -> optim.Optimizer:
    """Adam or AdamW with PyTorch's bias correction; the loop sets the learning rate each step."""
    betas = [float(b) for b in args.betas]
    if args.optimizer == "adamw":
        return optim.AdamW(args.lr, betas=betas, eps=args.eps, weight_decay=args.weight_decay, bias_correction=True)
    return optim.Adam(args.lr, betas=betas, eps=args.eps, bias_correction=True)


def total_steps(args: TrainingArgs, batches_per_epoch: int) -> int:
    """The step training ends at: ``max_steps``, or ``max_epochs`` epochs, whichever comes first."""
    limits = [args.max_steps] if args.max_steps else []
    if args.max_epochs:
        limits.append(args.max_epochs * batches_per_epoch)
    return min(limits)


def train(
    model: nn.Module,
    batches: ResumableBatches,
    loss_fn: LossFn,
    args: TrainingArgs,
    output_dir,
    *,
    validate: Validate | None = None,
    save_model: SaveModel | None = None,
    resume: bool | None = None,
    progress: bool | None = None,
    log: Log | None = stderr_log,
    on_step: Callable[[int, float], None] | None = None,
    world: World | None = None,
    units: LossUnits = TOKENS,
) -> TrainingResult:
    """Train ``model`` until ``args`` says stop; checkpoints and metrics go to ``output_dir``.

    Args:
        model: trained in place (left in train mode).
        batches: a :class:`ResumableBatches`; each batch is passed to ``loss_fn``.
        loss_fn: ``loss_fn(model, batch) -> (summed loss, number of tokens)``; the
            objective is their ratio.
        args: the :class:`TrainingArgs`.
        output_dir: the run folder (:mod:`mlxseq.training.run_folder`).
        validate: ``validate(model) -> metrics``; must include ``args.metric``.
        save_model: writes a model folder for ``last/`` and ``best/``; none are written without it.
        resume: True continues the checkpoint in ``output_dir`` (error without one);
            False starts afresh (error if there is one); None continues one if present.
        progress: the progress bar; None shows it when stderr is a terminal.
        log: receives messages; None is silent.
        on_step: ``on_step(step, loss)`` after every update (for tests and monitoring).
        world: this process's rank among data-parallel processes
            (:func:`mlxseq.training.distributed.init_world`); None trains alone. Every rank
            passes the same model, batches and arguments; rank 0's ``output_dir`` is the run.
        units: what the loss counts (tokens, examples, values), for the log, the bar and the curves.
    """
    world = world or World()
    if len(batches) == 0:
        raise TrainingError("the batch iterator has no batches: there is nothing to train on")
    run = RunFolder(output_dir, primary=world.primary)
    with run.locked():
        run.recover()
        if not world.primary:
            log, progress = None, False
        optimizer = make_optimizer(args)
        optimizer.init(model.trainable_parameters())
        model.train()
        loop = _Loop(model, batches, loss_fn, args, run, optimizer, validate, save_model, log, on_step, world)
        loop.units = units
        loop.check_ranks_agree()
        if world.broadcast_json(resolve_resume(run, resume) if world.primary else None):
            loop.restore()
        else:
            run.keep_metrics_until(0)  # records of an earlier attempt that never saved a checkpoint
            loop.start_from_rank_0()
        return loop.run(progress)


def resolve_resume(run: RunFolder, resume: bool | None) -> bool:
    """Whether to continue the checkpoint in ``run``; ResumeError when ``resume`` cannot be honoured."""
    found = run.has_checkpoint()
    if resume is True and not found:
        raise ResumeError(f"{run.resume_dir}: no resume checkpoint to continue from")
    if resume is False and found:
        raise ResumeError(
            f"{run.path} already holds a run with a resume checkpoint; continue it (--resume), "
            "or choose another output_dir (or delete this one) to start afresh"
        )
    return found


class _Loop:
    """The mutable state of one ``train`` call; see the module docstring for the order of things."""

    units: LossUnits = TOKENS

    def __init__(self, model, batches, loss_fn, args, run, optimizer, validate, save_model, log, on_step, world):
        self.model, self.batches, self.args, self.folder, self.optimizer = model, batches, args, run, optimizer
        self.validate, self.save_model, self.log, self.on_step, self.world = validate, save_model, log, on_step, world
        self.total = total_steps(args, len(batches))
        self.schedule = learning_rate_schedule(args, self.total)
        self.best, self.plateau = Tracker(args.lower_is_better), Plateau(args)
        self.step, self.elapsed0, self.lr, self.loss = 0, 0.0, 0.0, math.nan
        self.saved_step = self.validated_step = self.last_written = None
        self.records: list[dict] = []
        self.metrics: dict = {}
        self.window = TrainingWindow()
        self.consistent = True  # False while an update is half done
        self.progress: Progress | None = None
        self.train_step = TrainStep(
            model, optimizer, loss_fn, args.clip_norm, args.compile, log=self.message, group=world.group
        )

    def message(self, text: str) -> None:
        if self.progress is not None:
            self.progress.message(text)
        elif self.log is not None:
            self.log(text)

    def elapsed(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t0

    # --- resume ------------------------------------------------------------------------

    def check_ranks_agree(self) -> None:
        """Every rank must see the same parameters' shapes and the same batches (data, tokenizer, settings)."""
        shapes = [[k, list(v.shape), str(v.dtype)] for k, v in tree_flatten(self.model.trainable_parameters())]
        self.world.check_same("the model's parameters", shapes)
        self.world.check_same("the training batches", [len(self.batches), self.batches.state_dict()])

    def start_from_rank_0(self) -> None:
        """Every rank starts with rank 0's parameters and random key."""
        if self.world.distributed:
            self.model.update(self.world.broadcast_arrays(self.model.trainable_parameters()))
            set_random_key(self.world.broadcast_json(random_key()))

    def restore(self) -> None:
        state = self.folder.load_checkpoint(self.model, self.optimizer) if self.world.primary else None
        if self.world.distributed:  # the others have no checkpoint (it may be on another host): rank 0 sends it
            state = self.world.broadcast_json(state)
            self.model.update(self.world.broadcast_arrays(self.model.trainable_parameters()))
            set_leaves(self.optimizer.state, dict(tree_flatten(self.world.broadcast_arrays(self.optimizer.state))))
            saved = load_rank_arrays(self.folder.resume_dir, state) if self.world.primary else None
            mine, kept = self.world.scatter_arrays(saved, self.rank_state())
            self.model.update(tree_unflatten(list(mine.items())))
            if kept and self.rank_state():
                self.message(f"the checkpoint has no state for rank(s) {kept} (another number of processes): they start it afresh")
        try:
            self.batches.load_state_dict(state["batches"])
        except ValueError as error:
            raise ResumeError(f"{self.folder.resume_dir}: the saved batch position does not fit this data: {error}") from None
        set_random_key(state["random_key"])
        self.best.load_state_dict(state["trackers"]["best"])
        self.plateau.load_state_dict(state["trackers"]["plateau"])
        self.validated_step = state["trackers"]["validated_step"]
        self.step, self.elapsed0, self.saved_step = int(state["step"]), float(state["elapsed"]), int(state["step"])
        self.records = self.folder.keep_metrics_until(self.step)
        self.folder.drop_checkpoints_after(self.step)
        self.message(f"resuming from step {self.step} (epoch {state['epoch']}) in {self.folder.resume_dir}")

    def rank_state(self) -> dict:
        """The model's arrays that are not trained and may differ between ranks (a carried state)."""
        trained = {key for key, _ in tree_flatten(self.model.trainable_parameters())}
        return {key: value for key, value in tree_flatten(self.model.parameters()) if key not in trained}

    @contextmanager
    def writing(self, what: str) -> Iterator[None]:
        """Turn a failed write (a full disk: OSError, or MLX's RuntimeError) into one TrainingError.

        Every write is atomic, so what the folder held before stays whole.
        """
        try:
            yield
        except (OSError, RuntimeError) as error:
            reason = (getattr(error, "strerror", None) or str(error)).strip().splitlines()[0]
            kept = (f"its resume checkpoint of step {self.saved_step} is whole"
                    if self.saved_step is not None else "no resume checkpoint had been saved yet")
            raise TrainingError(
                f"could not write {what} in {self.folder.path} ({reason}); is the disk full? {kept}: "
                "free space and run the same command to resume") from None

    def save(self) -> None:
        if self.saved_step == self.step:
            return
        ranks = self.world.gather_arrays(self.rank_state()) if self.world.distributed else None
        trackers = {
            "best": self.best.state_dict(), "plateau": self.plateau.state_dict(), "validated_step": self.validated_step
        }
        with self.writing("the resume checkpoint"):
            self.folder.save_checkpoint(self.model, self.optimizer, {
                "step": self.step, "epoch": self.batches.epoch, "batches": self.batches.state_dict(),
                "random_key": random_key(), "trackers": trackers, "elapsed": round(self.elapsed(), 3),
            }, ranks)
        self.saved_step = self.step
        if self.args.keep_checkpoints and self.save_model is not None:
            summary = self.model_summary()
            with self.writing(f"checkpoint step-{self.step:08d}"):
                self.folder.write_checkpoint(
                    self.step, lambda folder: self.save_model(folder, self.model, summary), self.args.keep_checkpoints
                )

    # --- the loop ----------------------------------------------------------------------

    def run(self, progress: bool | None) -> TrainingResult:
        self.t0 = time.perf_counter()
        stopped = None
        with Progress(self.total, self.step, progress, self.log, self.units) as self.progress, interrupt_flag() as interrupted:
            try:
                while stopped is None:
                    stopped = self.limit_reached()
                    for batch in [] if stopped else self.batches:
                        self.update(batch)
                        stopped = self.after_update(interrupted)
                        if stopped:
                            break
                self.finish(stopped)
            except KeyboardInterrupt:
                if not self.consistent:
                    raise
                self.save()
                raise TrainingInterrupted(
                    f"interrupted at step {self.step}; the resume checkpoint in {self.folder.resume_dir} is saved: "
                    "run the same command again to continue"
                ) from None
        best = {"metric": self.args.metric, "value": self.best.best, "step": self.best.best_step}
        return TrainingResult(
            self.step, self.batches.epoch, stopped, best, self.metrics, self.folder.path, self.world.rank
        )

    def limit_reached(self) -> str | None:
        if self.args.max_steps and self.step >= self.args.max_steps:
            return "max_steps"
        if self.args.max_epochs and self.batches.epoch >= self.args.max_epochs:
            return "max_epochs"
        return None

    def update(self, batch) -> None:
        self.consistent = False
        self.lr = self.schedule(self.step + 1) * self.plateau.scale
        self.optimizer.learning_rate = self.lr
        start = time.perf_counter()
        loss, count, norm = self.train_step(self.world.shard(batch, getattr(self.batches, "whole_arrays", ())))
        mx.eval(loss, count, norm, self.model.parameters(), self.optimizer.state)
        self.step += 1
        value = loss.item()  # a sync each step: the price of stopping at the first bad loss
        if not math.isfinite(value):
            kept = (
                f"the resume checkpoint of step {self.saved_step} in {self.folder.resume_dir} is intact"
                if self.saved_step is not None else "no checkpoint had been saved yet"
            )
            raise TrainingDivergedError(
                f"training diverged: the loss is {value} at step {self.step} (epoch {self.batches.epoch}); "
                f"nothing was saved after it, {kept}. Lower training.lr or training.clip_norm, then resume"
            )
        self.consistent, self.loss = True, value
        self.window.add(value, count.item(), norm.item(), time.perf_counter() - start)
        self.progress.step(self.step, value, self.window.tokens_per_s(), self.lr)

    def after_update(self, interrupted) -> str | None:
        args, step = self.args, self.step
        if step % args.log_every == 0:
            self.log_window()
        if self.on_step is not None:
            self.on_step(step, self.loss)
        if args.eval_every and step % args.eval_every == 0:
            self.evaluate()
            if args.patience and self.validate is not None and self.best.stale >= args.patience:
                return "early_stopping"
        elif args.save_every and step % args.save_every == 0:
            self.save()
        if self.world.any(interrupted()):
            raise KeyboardInterrupt
        return self.limit_reached()

    def log_window(self) -> None:
        if self.window.steps == 0:
            return
        record = self.window.record(self.step, self.batches.epoch, self.lr, self.elapsed(), self.units)
        with self.writing("metrics.jsonl"):
            self.folder.append_metrics(record)
        self.records.append(record)
        self.progress.window(record)
        self.window = TrainingWindow()

    def evaluate(self) -> None:
        """Validate (if there is a callback), write last/ and best/, save a resume checkpoint."""
        improved = False
        if self.validate is not None:
            improved = self.run_validation()
        if self.args.keep_last:
            self.write_model("last")
        if improved and self.args.keep_best:
            self.write_model("best")
        if self.validate is not None:
            with self.writing("curves.png"):
                self.folder.write_curves(self.records, title=str(self.folder.path.name), units=self.units)
        self.save()

    def run_validation(self) -> bool:
        key = random_key()
        self.model.eval()
        start = time.perf_counter()
        try:
            metrics = dict(self.validate(self.model)) if self.world.primary else None
        finally:
            self.model.train()
            set_random_key(key)  # validation must not move the training's random stream
        metrics = self.world.broadcast_json(metrics)  # rank 0 validates for all
        value = metrics.get(self.args.metric)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            numbers = sorted(k for k, v in metrics.items() if isinstance(v, (int, float)))
            raise TrainingError(f"training.metric {self.args.metric!r} is not a validation metric; got {numbers}")
        improved = self.best.update(float(value), self.step)
        if self.plateau.update(float(value), self.step):
            self.message(f"{self.args.metric} stalled: learning rate scaled by {self.plateau.scale:g}")
        self.metrics, self.validated_step = metrics, self.step
        record = {"kind": "validation", "step": self.step, "epoch": self.batches.epoch, **metrics,
                  "seconds": round(time.perf_counter() - start, 3), "elapsed": round(self.elapsed(), 3)}
        with self.writing("metrics.jsonl"):
            self.folder.append_metrics(record)
        self.records.append(record)
        scores = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)))
        self.message(
            f"validation at step {self.step}: {scores}  "
            f"(best {self.args.metric} {self.best.best:.4g} at step {self.best.best_step})"
        )
        return improved

    def write_model(self, name: str) -> None:
        if self.save_model is None or (name == "last" and self.last_written == self.step):
            return
        summary = self.model_summary()
        with self.writing(f"model folder {name}/"):
            self.folder.write_model(name, lambda folder: self.save_model(folder, self.model, summary))
        if name == "last":
            self.last_written = self.step

    def model_summary(self) -> dict:
        """What a written model folder's card reports: where training stood and the scores."""
        best = {"metric": self.args.metric, "value": self.best.best, "step": self.best.best_step}
        return {"step": self.step, "epoch": self.batches.epoch, "metrics": self.metrics, "best": best}

    def finish(self, stopped: str) -> None:
        self.log_window()
        if self.validated_step != self.step:
            self.evaluate()
        else:
            self.save()
        self.message(f"stopped at step {self.step} ({stopped}); run folder {self.folder.path}")
