"""``mlxseq train CONFIG`` and ``mlxseq.train(CONFIG)``: a config file to a trained run folder, in one call.

Public API::

    train_from_config(path, overrides=(), *, resume=None, quiet=False) -> TrainingResult
    train(model, batches, loss_fn, args, output_dir, ...)    # the generic loop (mlxseq.training)
    USER_ERRORS                                               # what the CLI reports in one line

The config's task (:mod:`mlxseq.tasks`) turns the config into a model, batches,
a loss, a validation callback and a model-folder writer; the generic loop
(:mod:`mlxseq.training`) trains. The run folder gets the resolved config as
``config.yaml``; resuming with changed settings is allowed and each change is logged.

Under ``mlx.launch`` (or with ``distributed=True``) every process runs this same
call: rank 0 prepares the task first (so that on a shared disk the others reuse
its tokenizer), then the others; rank 0 alone writes the run folder and logs.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Callable, Iterable

import mlx.core as mx
import yaml

from mlxseq.checkpoint import ModelFolderError
from mlxseq.config import ConfigError, changed_keys, config_to_dict, dump_config, load_config
from mlxseq.data import DataError
from mlxseq.runs.init_from import model_config_from, seed_tokenizer, start_from, starting_folder
from mlxseq.tasks import task_module
from mlxseq.training import ResumeError, TrainingArgs, TrainingError, TrainingResult, train
from mlxseq.training.distributed import STARTUP_TIMEOUT, DistributedError, init_world
from mlxseq.training.loop import resolve_resume
from mlxseq.training.progress import stderr_log
from mlxseq.training.run_folder import RunFolder, RunFolderBusyError

USER_ERRORS = (ConfigError, DataError, ModelFolderError, ResumeError, TrainingError, DistributedError,
               RunFolderBusyError)
CONFIG_COPY = "config.yaml"

__all__ = ["train_from_config", "train", "TrainingArgs", "TrainingResult", "USER_ERRORS"]


def train_from_config(
    path,
    overrides: Iterable[str] = (),
    *,
    resume: bool | None = None,
    quiet: bool = False,
    progress: bool | None = None,
    on_step: Callable[[int, float], None] | None = None,
    distributed: bool | None = None,
    startup_timeout: float | None = None,
) -> TrainingResult:
    """Train what the config at ``path`` describes (with ``key.sub=value`` overrides).

    Args:
        path: a YAML or JSON config (:mod:`mlxseq.config`).
        overrides: ``"training.lr=2e-3"`` and the like, applied in order.
        resume: True continues the run in ``output_dir`` (error without a checkpoint), False
            starts one (error if ``output_dir`` holds one), None continues one if present.
        quiet: no progress bar and no messages.
        progress: the progress bar; None shows it when stderr is a terminal.
        on_step: ``on_step(step, loss)`` after every update.
        distributed: data-parallel over the processes ``mlx.launch`` started: True requires
            them, False trains alone, None decides by the launcher's environment variables.
        startup_timeout: seconds to wait for every process to join (None: ``STARTUP_TIMEOUT``
            of :mod:`mlxseq.training.distributed`); then an error names the host that did not answer.

    Raises:
        ConfigError: a bad config (and the other ``USER_ERRORS``: bad data, an unusable checkpoint or
            model folder, a busy run folder, a distributed start that failed).
        TrainingInterrupted: Ctrl-C (a KeyboardInterrupt), after the checkpoint is saved.
    """
    overrides = list(overrides)
    config = load_config(path, overrides)
    world = init_world(distributed, STARTUP_TIMEOUT if startup_timeout is None else startup_timeout)
    log = None if quiet or not world.primary else stderr_log
    for note in config.notes:  # keys read from where earlier versions had them
        (log or stderr_log)(note)
    if log is not None and world.distributed:
        log(f"data parallel over {world.size} processes ({world.backend} backend); rank 0 writes {config.output_dir}")
    run = RunFolder(config.output_dir, primary=world.primary)
    with run.locked():  # one run per folder, from the first file written to the last
        run.recover()
        resuming = world.broadcast_json(resolve_resume(run, resume) if world.primary else None)
        start = starting_folder(config.training.init_from) if config.training.init_from else None
        if start is not None:
            config.model = model_config_from(start, config)
            if world.primary:
                seed_tokenizer(run.path, start, resuming=resuming)
        previous = run.path / CONFIG_COPY
        if resuming and previous.is_file() and log is not None:
            changes = changed_keys(yaml.safe_load(previous.read_text(encoding="utf-8")) or {}, config_to_dict(config))
            for change in changes:
                log(f"resuming with a changed setting: {change}")
        command = shlex.join(["mlxseq", "train", str(path), *(f"--set={o}" for o in overrides)])
        mx.random.seed(config.training.seed)  # model initialisation; a resumed run loads its weights instead
        task = task_module(config.task)
        if not world.primary:
            world.barrier()  # rank 0 prepares first: it writes the run's tokenizer, which the others may reuse
        parts = task.prepare(config, run.path, resuming=resuming, command=command, log=log)
        if world.primary:
            world.barrier()
        if start is not None:  # a resumed run has its own weights; what stays fixed is still fixed
            start_from(parts.model, start, config.training.freeze, load=not resuming)
            if log is not None:
                frozen = f", {', '.join(config.training.freeze)} frozen" if config.training.freeze else ""
                log(f"fine-tuning {start} ({config.model.model_type}, its tokenizer{frozen})")
        run.write_text(CONFIG_COPY, dump_config(config))
        if log is not None:
            log(parts.description)
        return train(
            parts.model, parts.batches, parts.loss, config.training, Path(config.output_dir),
            validate=parts.validate, save_model=parts.save_model, resume=resuming,
            progress=False if quiet else progress, log=log, on_step=on_step, world=world, units=parts.units,
        )
