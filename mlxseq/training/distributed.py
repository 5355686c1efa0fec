"""Data-parallel training with MLX's distributed engine: the group, shards of a batch, rank-0 broadcasts.

mlxseq writes no communication of its own: processes are started by ``mlx.launch``
(or ``mpirun``, or a scheduler that sets the same variables) and talk through
``mx.distributed`` (ring over TCP by default; MPI, NCCL or JACCL where installed).

Every rank iterates the same global batches (the data position is global: one
``state_dict`` describes all ranks) and trains on its rows of each one
(:meth:`World.shard`). Within a length-bucketed batch every row has the same
padded length, which is what a recurrent scan costs, so equal rows are equal work.
The training step (:mod:`mlxseq.training.step`) all-reduces the summed loss, the
token count and the gradients of the summed loss, then divides: the update equals
the single-process update of the whole batch, whatever rows each rank held
(a rank with no rows adds zeros).

Rank 0 is the primary: it alone writes the run folder and shows progress, runs
validation and reads a resume checkpoint; what the others need from it (metrics,
the checkpoint's parameters, optimizer state, counters) is broadcast.

Start-up: MLX's ring ``init`` waits forever for a peer that never connects.
:func:`init_world` puts a deadline on it and names the rank and address that
did not answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any, Mapping

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

STARTUP_TIMEOUT = 120.0  # seconds a rank waits for its peers at start-up
HARD_STOP_GRACE = 15.0  # after the deadline, a process still stuck in MLX's init is killed
RING_CONNECT_SECONDS = 31  # MLX's ring retries a refused connection 5 times: 1+2+4+8+16 s


class DistributedError(RuntimeError):
    """Distributed start-up or set-up failed; the message names the rank and host concerned."""


def launched_backend(environ: Mapping[str, str] = os.environ) -> str | None:
    """The backend a launcher set this process up for, from its environment; None when not launched."""
    if environ.get("MLX_RANK") is not None:
        if environ.get("MLX_HOSTFILE"):
            return "ring"
        if environ.get("MLX_JACCL_COORDINATOR") or environ.get("MLX_IBV_DEVICES"):
            return "jaccl"
        if environ.get("MLX_WORLD_SIZE") or environ.get("NCCL_HOST_IP"):
            return "nccl"
    if environ.get("OMPI_COMM_WORLD_SIZE") or environ.get("PMI_SIZE"):
        return "mpi"
    return None


def ring_hosts(environ: Mapping[str, str] = os.environ) -> list[list[str]]:
    """The ``ip:port`` addresses of each rank in the ring's hostfile (``MLX_HOSTFILE``); [] if unreadable."""
    try:
        with open(environ["MLX_HOSTFILE"], encoding="utf-8") as handle:
            text = handle.read().strip()
        hosts = json.loads(text) if text else []
        return [[str(a) for a in h] for h in hosts] if isinstance(hosts, list) else []
    except (KeyError, OSError, ValueError, TypeError):
        return []


@dataclass
class World:
    """This process's place among the ranks; ``World()`` is a single process.

    Attributes:
        group: the ``mx.distributed.Group`` (None for a single process).
        rank, size: this process's rank and the number of processes.
        backend: ``ring``, ``mpi``, ``nccl``, ``jaccl``, or ``none``.
    """

    group: Any = None
    rank: int = 0
    size: int = 1
    backend: str = "none"

    @property
    def primary(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def describe(self) -> str:
        return f"rank {self.rank} of {self.size} ({self.backend} backend)"

    # --- the data -------------------------------------------------------------------------

    def rows(self, batch_size: int) -> int:
        """How many of a batch's ``batch_size`` rows this rank trains on (for state kept per row)."""
        start, stop = shard_rows(batch_size, self.rank, self.size)
        return stop - start

    def shard(self, batch: tuple, whole: tuple[int, ...] = ()) -> tuple | None:
        """This rank's rows of ``batch``; None when it gets none (a batch with fewer rows than ranks).

        Arrays whose first axis has the batch's size (that of the first array) are split
        into contiguous, equal runs of rows (the first ``B % size`` ranks get one more);
        the arrays at the positions in ``whole`` (tables that rows index into, such as a
        batch's distinct spellings) and anything else (scalars, flags) go to every rank whole.
        """
        if not self.distributed:
            return batch
        rows = batch[0].shape[0]
        start, stop = shard_rows(rows, self.rank, self.size)
        if start == stop:
            return None
        return tuple(
            a[start:stop] if i not in whole and isinstance(a, mx.array) and a.ndim > 0 and a.shape[0] == rows else a
            for i, a in enumerate(batch)
        )

    # --- collectives (every rank must call them in the same order) --------------------------

    def all_sum(self, x: mx.array) -> mx.array:
        return mx.distributed.all_sum(x, group=self.group) if self.distributed else x

    def barrier(self) -> None:
        """Return when every rank got here."""
        if self.distributed:
            mx.eval(self.all_sum(mx.array(1, dtype=mx.int32)))

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on some rank."""
        return bool(self.all_sum(mx.array(int(bool(flag)), dtype=mx.int32)).item()) if self.distributed else flag

    def broadcast_json(self, value, root: int = 0):
        """Rank ``root``'s ``value`` (anything JSON can carry) on every rank; the others pass anything."""
        if not self.distributed:
            return value
        data = json.dumps(value).encode("utf-8") if self.rank == root else b""
        length = int(self.all_sum(mx.array(len(data), dtype=mx.int32)).item())
        data = data or bytes(length)
        buffer = self.all_sum(mx.array(list(data), dtype=mx.uint8) if length else mx.zeros((0,), mx.uint8))
        return json.loads(bytes(buffer.tolist()).decode("utf-8"))

    def broadcast_arrays(self, tree):
        """Rank 0's arrays of ``tree`` (same structure and shapes on every rank), exactly: the others add zeros."""
        if not self.distributed:
            return tree
        flat = [(k, self.all_sum(v if self.primary else mx.zeros_like(v))) for k, v in tree_flatten(tree)]
        mx.eval([v for _, v in flat])
        return tree_unflatten(flat)

    def gather_arrays(self, arrays: dict) -> list[dict] | None:
        """Every rank's named ``arrays`` (their shapes may differ by rank) on rank 0, by rank; None elsewhere."""
        if not self.distributed:
            return [arrays]
        gathered = [arrays] + [self._receive(root, arrays if self.rank == root else None) for root in range(1, self.size)]
        return gathered if self.primary else None

    def scatter_arrays(self, saved: Mapping[int, dict] | None, arrays: dict) -> tuple[dict, list[int]]:
        """The counterpart of :meth:`gather_arrays`: rank k (k >= 1) gets rank 0's ``saved[k]``.

        ``arrays`` are this rank's own (names and shapes to expect). Returns what this rank
        keeps (its own ``arrays`` where rank 0 has nothing that fits) and, on every rank,
        the ranks that kept their own.
        """
        mine, kept = arrays, []
        for root in range(1, self.size):
            wanted = self.broadcast_json(_spec(arrays) if self.rank == root else None, root)
            have = (saved or {}).get(root) if self.primary else None
            fits = self.broadcast_json(have is not None and _spec(have) == wanted)
            if not fits:
                kept.append(root)
                continue
            received = self._receive(0, have, wanted)
            if self.rank == root:
                mine = received
        return mine, kept

    def _receive(self, root: int, arrays: dict | None, spec: list | None = None) -> dict:
        """Rank ``root``'s ``arrays`` on every rank (the others add zeros)."""
        spec = spec if spec is not None else self.broadcast_json(_spec(arrays) if self.rank == root else None, root)
        received = {
            key: self.all_sum(arrays[key] if self.rank == root else mx.zeros(shape, getattr(mx, dtype)))
            for key, shape, dtype in spec
        }
        mx.eval(list(received.values()))
        return received

    def check_same(self, what: str, value) -> None:
        """DistributedError unless ``value`` (JSON-able) is the same on every rank; names the ranks that differ."""
        if not self.distributed:
            return
        digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode("utf-8")).digest()
        gathered = mx.distributed.all_gather(mx.array(list(digest), dtype=mx.int32), group=self.group)
        rows = gathered.reshape(self.size, len(digest)).tolist()
        differ = [rank for rank, row in enumerate(rows) if row != rows[0]]
        if differ:
            raise DistributedError(
                f"{what} differ between rank 0 and rank{'s' if len(differ) > 1 else ''} "
                f"{', '.join(map(str, differ))}: every host needs the same config, data files and mlxseq version"
            )


def _spec(arrays: dict) -> list:
    return [[key, list(value.shape), str(value.dtype).rsplit(".", 1)[-1]] for key, value in sorted(arrays.items())]


def shard_rows(rows: int, rank: int, size: int) -> tuple[int, int]:
    """``(start, stop)`` of rank's contiguous share of ``rows``; sizes differ by at most one."""
    base, extra = divmod(rows, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


# --- start-up ----------------------------------------------------------------------------------

_current = World()


def current_world() -> World:
    """The World that :func:`init_world` joined last (a single process before that).

    For a task that keeps state per batch row (a language model's carried state): each
    rank holds ``current_world().rows(batch_size)`` rows.
    """
    return _current


def init_world(
    distributed: bool | None = None, timeout: float = STARTUP_TIMEOUT, environ: Mapping[str, str] = os.environ
) -> World:
    """Join the group a launcher set up, within ``timeout`` seconds.

    Args:
        distributed: True requires a launcher's environment (``mlx.launch`` sets it),
            False trains in this process alone, None decides by the environment.
        timeout: seconds to wait for every peer; then DistributedError names the one
            that did not answer (a process stuck inside MLX is killed ``HARD_STOP_GRACE``
            seconds later, with the same message).
    """
    global _current
    _current = _join(distributed, timeout, environ)
    return _current


def _join(distributed: bool | None, timeout: float, environ: Mapping[str, str]) -> World:
    backend = launched_backend(environ)
    if distributed is False or (distributed is None and backend is None):
        return World()
    if backend is None:
        raise DistributedError(
            "distributed training needs processes started by a launcher, e.g. "
            "`mlx.launch --hostfile hosts.json -- mlxseq train CONFIG`; no MLX_RANK/MLX_HOSTFILE "
            "(ring), MLX_JACCL_COORDINATOR (jaccl), MLX_WORLD_SIZE (nccl) or MPI variables are set"
        )
    if backend == "ring" and len(ring_hosts(environ)) < 2:
        return World()  # mlx.launch on one host writes an empty hostfile
    group = _init_group(backend, timeout, environ)
    return World(group, group.rank(), group.size(), backend)


def _init_group(backend: str, timeout: float, environ: Mapping[str, str]):
    """``mx.distributed.init`` with a deadline.

    MLX holds the interpreter while it waits, so no Python thread can step in. In the
    main thread a repeating SIGALRM after the deadline makes the blocking ``accept``
    fail (EINTR), which MLX raises as an error that is turned into the message here.
    A small watchdog process is the backstop for a backend that retries interrupted
    calls: it prints the message and kills this process.
    """
    expired = [False]
    alarm = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    watchdog = _Watchdog(timeout + HARD_STOP_GRACE, _no_answer(backend, timeout, None, environ))
    previous = None
    if alarm:
        def on_alarm(signum, frame):
            expired[0] = True

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout, 1.0)
    try:
        return mx.distributed.init(strict=True, backend=backend)
    except RuntimeError as error:
        raise DistributedError(_no_answer(backend, timeout, (str(error), expired[0]), environ)) from None
    finally:
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        watchdog.stop()


def _no_answer(backend: str, timeout: float, failure: tuple[str, bool] | None, environ: Mapping[str, str]) -> str:
    """What went wrong at start-up, naming this rank and the peer it waited for.

    ``failure`` is MLX's error and whether the deadline had passed; None for the watchdog's message.
    """
    rank = environ.get("MLX_RANK", environ.get("OMPI_COMM_WORLD_RANK", environ.get("PMI_RANK", "?")))
    advice = (
        "is it running, and can this host reach it? Start every rank at once (mlx.launch does), "
        "use IP addresses that the hosts can reach, and check firewalls"
    )
    if backend == "ring":
        hosts = ring_hosts(environ)
        size, r = len(hosts), int(rank)
        left, right = (r - 1) % size, (r + 1) % size
        me = ", ".join(hosts[r])
        # MLX's ring: rank r connects to rank r+1 (giving up after ~31 s) and accepts rank r-1 (forever).
        if failure is not None and "couldn't connect" in failure[0].lower():
            return (
                f"distributed start-up failed: rank {r} of {size} could not connect to rank {right} at "
                f"{', '.join(hosts[right])} ({failure[0]}): {advice}"
            )
        if failure is None or failure[1]:
            return (
                f"distributed start-up timed out after {timeout:g} s: rank {r} of {size} (listening on {me}) "
                f"heard nothing from rank {left} at {', '.join(hosts[left])}: {advice}"
            )
        return f"distributed start-up failed on rank {r} of {size} ({me}): {failure[0]}"
    peer = {
        "jaccl": f"the coordinator (rank 0) at {environ.get('MLX_JACCL_COORDINATOR', '?')}",
        "nccl": f"rank 0 at {environ.get('NCCL_HOST_IP', '?')}:{environ.get('NCCL_PORT', '?')}",
        "mpi": "its MPI peers",
    }.get(backend, "its peers")
    if failure is None or failure[1]:
        return f"distributed start-up timed out after {timeout:g} s: rank {rank} heard nothing from {peer}: {advice}"
    return f"distributed start-up failed on rank {rank} ({backend}): {failure[0]}"


_WATCHDOG = """
import os, select, signal, sys
pid, seconds, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
if not select.select([sys.stdin], [], [], seconds)[0]:
    sys.stderr.write("error: " + message + " (stopped by the start-up watchdog)\\n")
    sys.stderr.flush()
    os.kill(pid, signal.SIGKILL)
"""


class _Watchdog:
    """A process that kills this one after ``seconds`` unless :meth:`stop` (or this process's exit) comes first."""

    def __init__(self, seconds: float, message: str):
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(seconds), message],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self.process.stdin.close()  # end of input: the watchdog exits
        self.process.wait()


def all_sum_tree(tree, group):
    """Sum every array of ``tree`` over the ranks of ``group`` in one message (packed as float32).

    Usable inside ``mx.compile``. Each array comes back in its own shape and dtype;
    integer counts stay exact below 2**24.
    """
    flat = tree_flatten(tree)
    packed = mx.concatenate([mx.asarray(v).astype(mx.float32).reshape(-1) for _, v in flat])
    summed = mx.distributed.all_sum(packed, group=group)
    out, start = [], 0
    for key, value in flat:
        value = mx.asarray(value)
        out.append((key, summed[start : start + value.size].reshape(value.shape).astype(value.dtype)))
        start += value.size
    return tree_unflatten(out)
