"""Tests of mlxseq/training/schedule.py: learning rates by hand, metric trackers, the plateau."""

import math

import pytest

from mlxseq.training.args import TrainingArgs
from mlxseq.training.schedule import Plateau, Tracker, learning_rate_schedule


def rates(total=10, **settings):
    schedule = learning_rate_schedule(TrainingArgs(max_steps=total, lr=1.0, **settings), total)
    return [schedule(k) for k in range(1, total + 1)]


def test_warmup_is_linear_from_zero_and_then_constant():
    assert rates(warmup_steps=4, decay="none") == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1, 1, 1, 1, 1])


def test_inverse_sqrt_continues_from_the_peak():
    assert rates(warmup_steps=4, decay="inverse_sqrt") == pytest.approx(
        [0.25, 0.5, 0.75] + [math.sqrt(4 / k) for k in range(4, 11)]
    )
    assert rates(total=4, decay="inverse_sqrt") == pytest.approx([1, math.sqrt(1 / 2), math.sqrt(1 / 3), 0.5])


def test_cosine_and_linear_reach_min_lr_at_the_last_step():
    cosine = rates(warmup_steps=4, decay="cosine", min_lr=0.1)
    expected = [0.1 + 0.9 * (1 + math.cos(math.pi * (k - 4) / 6)) / 2 for k in range(4, 11)]
    assert cosine == pytest.approx([0.25, 0.5, 0.75] + expected, abs=1e-6)
    assert rates(warmup_steps=0, decay="linear", total=5) == pytest.approx([0.8, 0.6, 0.4, 0.2, 0.0], abs=1e-6)


def test_tracker_follows_the_direction_and_ignores_nan():
    low = Tracker(lower_is_better=True)
    assert [low.update(v, s) for s, v in enumerate([3.0, 2.0, 2.0, float("nan"), 1.5])] == [True, True, False, False, True]
    assert (low.best, low.best_step, low.stale) == (1.5, 4, 0)
    high = Tracker(lower_is_better=False)
    assert [high.update(v, s) for s, v in enumerate([10.0, 12.0, 11.0])] == [True, True, False]
    assert high.stale == 1


def test_plateau_cuts_after_more_than_patience_stalls_and_stops_at_the_floor():
    plateau = Plateau(TrainingArgs(max_steps=1, lr=1.0, min_lr=0.2, decay="reduce_on_plateau",
                                   plateau_factor=0.5, plateau_patience=1, metric="bleu"))
    cuts = [plateau.update(v, s) for s, v in enumerate([10, 9, 9, 9, 9, 9, 9])]
    assert cuts == [False, False, True, False, True, False, True]
    assert plateau.scale == 0.2  # 1 -> 0.5 -> 0.25 -> floor 0.2
    restored = Plateau(TrainingArgs(max_steps=1, decay="reduce_on_plateau"))
    restored.load_state_dict(plateau.state_dict())
    assert (restored.scale, restored.tracker.best, restored.tracker.stale) == (0.2, 10, 0)


def test_plateau_is_inert_for_other_decays():
    plateau = Plateau(TrainingArgs(max_steps=1, decay="cosine"))
    assert not any(plateau.update(v, s) for s, v in enumerate([1, 2, 3, 4, 5]))
    assert plateau.scale == 1.0


def test_metric_direction():
    assert TrainingArgs(max_steps=1, metric="loss").lower_is_better
    assert TrainingArgs(max_steps=1, metric="ppl").lower_is_better
    assert all(TrainingArgs(max_steps=1, metric=m).lower_is_better for m in ("bits", "mse", "mae"))
    assert not TrainingArgs(max_steps=1, metric="accuracy").lower_is_better
    assert not TrainingArgs(max_steps=1, metric="bleu").lower_is_better
    assert TrainingArgs(max_steps=1, metric="ter", metric_mode="min").lower_is_better
