"""The batches a task hands the training loop (a :class:`mlxseq.training.loop.ResumableBatches`).

A task's batches draw their order from a sampler (:class:`mlxseq.data.BatchSampler`,
:class:`mlxseq.data.StreamBatcher`) that knows the epoch, the batches per epoch and
where it stands; :class:`SamplerBatches` passes those through, so a task writes only
``__iter__``: the arrays of each batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class SamplerBatches(ABC):
    """Batches in the order of ``sampler``: epoch, length and resume state are the sampler's.

    Subclasses define ``__iter__``, reading ``self.sampler``, and set ``whole_arrays``: the
    positions in each batch of arrays that are not one row per example (tables the rows index
    into), which data-parallel training gives every rank whole instead of splitting by rows.
    """

    whole_arrays: tuple[int, ...] = ()

    def __init__(self, sampler):
        self.sampler = sampler

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def __len__(self) -> int:
        return len(self.sampler)

    @abstractmethod
    def __iter__(self):
        """Yield the rest of the current epoch's batches, each a tuple of arrays for the task's loss."""

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)
