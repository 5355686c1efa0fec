"""What the benchmark scripts share: the timing of a function and the run of a worker process.

Each library under test runs in a process of its own (torch and MLX do not share
threads, and each gets the BLAS it would get as installed): a script starts itself
again as a worker, which prints its result as JSON on its last line.
"""

import json
import statistics
import subprocess
import sys
import time


def median_time(fn, runs: int, warmup: int = 1) -> float:
    """The median wall time of ``runs`` calls of ``fn()``, after ``warmup`` untimed ones (compiling, allocating)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_worker(script: str, arguments: list[str], what: str, *, env: dict | None = None,
               timeout: float | None = None) -> dict:
    """The JSON that ``python script *arguments`` prints last; exits naming ``what`` and its errors if it fails."""
    done = subprocess.run([sys.executable, script, *arguments], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def add_worker_options(parser) -> None:
    """The hidden options a script passes to itself when it starts a worker (see :func:`answer_as_worker`)."""
    import argparse

    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)


def answer_as_worker(options, workers: dict) -> bool:
    """In a worker process (``--worker NAME --spec JSON``): print ``workers[NAME](spec)`` as JSON; True.
    In the parent: False."""
    if not options.worker:
        return False
    print(json.dumps(workers[options.worker](json.loads(options.spec))))
    return True
