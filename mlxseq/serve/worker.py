"""One thread that runs every model computation of a server, batching translations.

HTTP handler threads never touch a model: they put a :class:`Job` in the queue and wait for
its result (or read its stream). The worker takes jobs in arrival order. A translation job
waits up to ``batch_wait`` seconds for other translation jobs of the same model and settings;
their texts are then translated as one request, which the translator sorts by length into
batches, and each job gets its own slice of the results.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable


class QueueFull(RuntimeError):
    """More jobs are waiting than the server takes."""


@dataclass
class Job:
    run: Callable[[], Any]  # the computation; its value is the job's result
    batch_key: tuple | None = None  # translations with equal keys are translated together
    texts: list[str] = field(default_factory=list)  # a translation job's texts
    future: Future = field(default_factory=Future)


class Worker:
    """Runs jobs one after another on a thread of its own (see the module docstring).

    Args:
        max_queue: jobs waiting at most; one more is refused with :class:`QueueFull`.
        batch_wait: seconds a translation waits for others to join its batch.
        max_batch_texts: texts translated together at most.
        translate_many: ``(batch_key, texts) -> results``, one per text, for batched jobs.
    """

    def __init__(self, translate_many: Callable[[tuple, list[str]], list], *, max_queue: int = 256,
                 batch_wait: float = 0.005, max_batch_texts: int = 256):
        self.translate_many = translate_many
        self.jobs: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self.batch_wait, self.max_batch_texts = batch_wait, max_batch_texts
        self.batches: list[int] = []  # texts of each batch run (for the load test and the tests)
        self._held: list[Job] = []  # jobs taken from the queue while gathering a batch, not of it
        self._thread = threading.Thread(target=self._loop, name="mlxseq-worker", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> Future:
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise QueueFull(f"{self.jobs.maxsize} requests are waiting; try again shortly") from None
        return job.future

    def stop(self) -> None:
        """Finish the jobs already queued, then end the thread."""
        self.jobs.put(None)
        self._thread.join()

    def _next(self, timeout: float | None = None) -> Job | None:
        if self._held:
            return self._held.pop(0)
        return self.jobs.get(timeout=timeout) if timeout is not None else self.jobs.get()

    def _loop(self) -> None:
        import mlx.core as mx

        # MLX keeps streams per thread: this thread gets its own on the default device, and
        # destroys it before ending (a stream outliving its thread aborts the process at exit).
        with mx.stream(mx.new_stream(mx.default_device())):
            self._run_jobs()
        mx.synchronize()
        if hasattr(mx, "clear_streams"):
            mx.clear_streams()

    def _run_jobs(self) -> None:
        while True:
            job = self._next()
            if job is None:
                if self._held:  # a stop arrived while gathering: finish what was taken first
                    self.jobs.put(None)
                    continue
                return
            if job.batch_key is None:
                self._run(job)
            else:
                self._run_batch(self._gather(job))

    def _gather(self, first: Job) -> list[Job]:
        """``first`` and the jobs of the same batch key that arrive within ``batch_wait``."""
        batch, texts = [first], len(first.texts)
        deadline = time.monotonic() + self.batch_wait
        others: list[Job] = []
        while texts < self.max_batch_texts:
            left = deadline - time.monotonic()
            try:
                job = self.jobs.get(timeout=max(left, 0.0)) if left > 0 else self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None and job.batch_key == first.batch_key and texts + len(job.texts) <= self.max_batch_texts:
                batch.append(job)
                texts += len(job.texts)
            else:
                others.append(job)
                if job is None:
                    break
        self._held = others + self._held
        return batch

    def _run(self, job: Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            job.future.set_result(job.run())
        except BaseException as error:  # the handler reports it; the worker goes on
            job.future.set_exception(error)

    def _run_batch(self, batch: list[Job]) -> None:
        batch = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not batch:
            return
        texts = [text for job in batch for text in job.texts]
        self.batches.append(len(texts))
        try:
            results = self.translate_many(batch[0].batch_key, texts)
        except BaseException as error:
            for job in batch:
                job.future.set_exception(error)
            return
        start = 0
        for job in batch:
            job.future.set_result(results[start : start + len(job.texts)])
            start += len(job.texts)
