"""``TrainingArgs``: the ``training`` section of a config. Every training default lives here."""

from dataclasses import dataclass
from typing import Literal

DECAYS = ("none", "inverse_sqrt", "cosine", "linear", "reduce_on_plateau")
LOWER_IS_BETTER = ("loss", "ppl", "bits", "mse", "mae", "wer", "cer")  # metrics where smaller is better (metric_mode auto)


@dataclass
class TrainingArgs:
    optimizer: Literal["adam", "adamw"] = "adam"  # adam, or adamw (decoupled weight decay); both bias-corrected
    lr: float = 1e-3  # peak learning rate, reached after warmup
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's decay rates of the gradient moments
    eps: float = 1e-8  # Adam's epsilon
    weight_decay: float = 0.0  # adamw's decoupled weight decay (adam has none)
    warmup_steps: int = 0  # linear warmup from 0 to lr over this many updates
    # After warmup: none (constant), inverse_sqrt (lr * sqrt(warmup / step)), cosine or linear
    # (to min_lr at the last step), reduce_on_plateau (times plateau_factor when the metric stalls).
    decay: Literal["none", "inverse_sqrt", "cosine", "linear", "reduce_on_plateau"] = "none"
    min_lr: float = 0.0  # where cosine and linear end; the floor of reduce_on_plateau
    plateau_factor: float = 0.5  # reduce_on_plateau: multiply the lr by this
    plateau_patience: int = 1  # reduce_on_plateau: stalled validations tolerated; the next one cuts the lr
    clip_norm: float = 1.0  # scale gradients down to this global L2 norm; 0 = no clipping
    max_steps: int = 0  # stop after this many updates; 0 = no limit (max_epochs decides)
    max_epochs: int = 0  # stop after this many passes over the training data; 0 = no limit
    batch_tokens: int = 4096  # batch budget: sentences x padded length of the longer side
    max_batch_size: int = 0  # at most this many sentences per batch; 0 = only the token budget
    label_smoothing: float = 0.1  # of the training loss (validation reports the plain loss)
    eval_every: int = 1000  # validate every N updates, and at the end; 0 = only at the end
    save_every: int = 0  # resume checkpoint every N updates; 0 = at each validation (and at the end)
    log_every: int = 50  # append averaged training metrics to metrics.jsonl every N updates
    metric: str = "loss"  # validation metric for best/, early stopping and reduce_on_plateau (loss, ppl, bleu, chrf)
    metric_mode: Literal["auto", "min", "max"] = "auto"  # auto: min for loss, ppl, bits, mse and mae, max for others
    patience: int = 0  # stop after this many validations without improvement; 0 = never stop early
    seed: int = 0  # model initialisation, batch order and dropout
    keep_best: bool = True  # write best/ (the model of the best validation metric)
    keep_last: bool = True  # write last/ (the latest model) at each validation and at the end
    keep_checkpoints: int = 0  # also keep the model folders of the last N saves in checkpoints/ (for mlxseq average)
    # mx.compile: auto (the whole step if the model can be traced, else the update only),
    # step, update, or eager (nothing compiled; for debugging).
    compile: Literal["auto", "step", "update", "eager"] = "auto"
    # Fine-tuning: start from this model folder's weights, keeping its tokenizer (a path, a Hub id,
    # or a bundled model's name such as multi30k-de-en); the optimizer and schedule are this run's.
    init_from: str = ""
    freeze: tuple[str, ...] = ()  # module paths kept fixed while fine-tuning, e.g. encoder or embedding
    # Training techniques (the tasks that have them say so; classification has both):
    adversarial: float = 0.0  # also fit embeddings moved uphill by this L2 norm (mlxseq.training.adversarial); 0 = off
    adversarial_per_token: bool = False  # the radius is adversarial * sqrt(length): that much per token (RMS)
    teachers: tuple[str, ...] = ()  # model folders (paths or Hub ids) whose mean probabilities are distilled
    teacher_weight: float = 0.5  # w: target = (1 - w) * label + w * the teachers' probabilities

    def __post_init__(self):
        checks = [
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
            (all(0 <= b < 1 for b in self.betas), f"betas must lie in [0, 1), got {list(self.betas)}"),
            (self.eps > 0, f"eps must be positive, got {self.eps}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (
                self.weight_decay == 0 or self.optimizer == "adamw",
                f"weight_decay={self.weight_decay} needs optimizer: adamw (adam has no weight decay)",
            ),
            (self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}"),
            (0 <= self.min_lr <= self.lr, f"min_lr must lie in [0, lr={self.lr}], got {self.min_lr}"),
            (0 < self.plateau_factor < 1, f"plateau_factor must lie in (0, 1), got {self.plateau_factor}"),
            (self.plateau_patience >= 0, f"plateau_patience must be >= 0, got {self.plateau_patience}"),
            (self.clip_norm >= 0, f"clip_norm must be >= 0 (0 turns clipping off), got {self.clip_norm}"),
            (self.max_steps >= 0 and self.max_epochs >= 0, "max_steps and max_epochs must be >= 0"),
            (self.max_steps > 0 or self.max_epochs > 0, "set max_steps or max_epochs (or both): training needs an end"),
            (self.keep_checkpoints >= 0, f"keep_checkpoints must be >= 0, got {self.keep_checkpoints}"),
            (self.batch_tokens >= 1, f"batch_tokens must be positive, got {self.batch_tokens}"),
            (self.max_batch_size >= 0, f"max_batch_size must be >= 0, got {self.max_batch_size}"),
            (0 <= self.label_smoothing < 1, f"label_smoothing must lie in [0, 1), got {self.label_smoothing}"),
            (min(self.eval_every, self.save_every) >= 0, "eval_every and save_every must be >= 0"),
            (self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}"),
            (self.patience >= 0, f"patience must be >= 0, got {self.patience}"),
            (not self.freeze or bool(self.init_from), "freeze needs init_from (a trained model to keep parts of)"),
            (self.adversarial >= 0, f"adversarial must be >= 0, got {self.adversarial}"),
            (0 <= self.teacher_weight <= 1, f"teacher_weight must be in [0, 1], got {self.teacher_weight}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def lower_is_better(self) -> bool:
        """Whether a smaller ``metric`` is better."""
        if self.metric_mode == "auto":
            return self.metric in LOWER_IS_BETTER
        return self.metric_mode == "min"
