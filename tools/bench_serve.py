"""Load test of ``mlxseq serve``: N concurrent clients on 127.0.0.1 for a bounded time.

The server (``mlxseq serve``, the bundled translator) runs in a process of its own; each client
thread sends one-sentence ``POST /v1/translate`` requests (greedy or beam, as asked) back to
back. Reported: requests per second and latency p50 and p99, with batching on (requests
arriving within ``--batch-wait-ms`` are translated together) and off (one text at a time).

    python tools/bench_serve.py --clients 8 --seconds 30 --beam-size 5
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

import mlxseq  # before mlx.core: it loads OpenBLAS for MLX
import mlx.core as mx  # noqa: E402

from mlxseq.serve import Limits  # noqa: E402

SENTENCES = [
    "Ein Mann fährt mit dem Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest ein Buch im Park.",
    "Kinder spielen Fußball auf einer Wiese.", "Ein Mann in einem roten Hemd steht vor einem Gebäude.",
    "Eine Gruppe von Menschen sitzt an einem Tisch.", "Ein kleines Mädchen isst ein Eis.",
    "Ein Hund rennt am Strand entlang.", "Zwei Männer arbeiten an einem Auto.", "Eine Frau singt auf einer Bühne.",
    "Ein Junge springt in einen See.", "Leute gehen eine belebte Straße entlang.",
]


def run(clients: int, seconds: float, beam_size: int, batching: bool, batch_wait_ms: float) -> dict:
    """One load test against a server in a process of its own (the clients' threads do not share its GIL)."""
    command = [sys.executable, "-c", "from mlxseq.cli import app; app()", "serve", "--port", "0", "--quiet",
               "--max-queue", str(4 * clients), "--batch-wait-ms", str(batch_wait_ms if batching else 0),
               "--max-batch-texts", "256" if batching else "1"]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        port = re.search(r"http://127\.0\.0\.1:(\d+)/", server.stderr.readline())[1]
        url = f"http://127.0.0.1:{port}/v1/translate"
        for sentence in SENTENCES:  # warm-up: the first calls compile
            _post(url, [sentence], beam_size)
        latencies: list[float] = []
        lock, stop_at = threading.Lock(), time.monotonic() + seconds

        def client(k: int):
            n = k
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                _post(url, [SENTENCES[n % len(SENTENCES)]], beam_size)
                with lock:
                    latencies.append(time.perf_counter() - started)
                n += clients

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    latencies.sort()
    return {"batching": batching, "requests": len(latencies), "requests_per_s": len(latencies) / elapsed,
            "p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))]}


def _post(url: str, texts: list[str], beam_size: int) -> dict:
    body = json.dumps({"texts": texts, "beam_size": beam_size}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--batch-wait-ms", type=float, default=Limits.batch_wait * 1000)
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    results = [run(args.clients, args.seconds, args.beam_size, batching, args.batch_wait_ms) for batching in (False, True)]
    print(f"{args.clients} clients, {args.seconds:g} s each, beam {args.beam_size}, bundled translator; "
          f"mlxseq {mlxseq.__version__}, MLX {mx.__version__}, {platform.processor() or platform.machine()}")
    print("| batching | requests/s | p50 ms | p99 ms |")
    print("| --- | ---: | ---: | ---: |")
    for r in results:
        print(f"| {'on' if r['batching'] else 'off'} | {r['requests_per_s']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} |")
    print(f"batching gain: {results[1]['requests_per_s'] / results[0]['requests_per_s']:.2f}x requests/s")
    if args.output:
        with open(args.output, "w") as out:
            json.dump({"settings": vars(args), "results": results}, out, indent=2)


if __name__ == "__main__":
    main()
