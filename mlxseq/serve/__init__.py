"""``mlxseq serve``: model folders behind a local HTTP endpoint, with a web page.

    POST /v1/translate     {"texts": [...], "beam_size", "n_best", "length_penalty", "attention"}
    POST /v1/completions   OpenAI's completions: {"prompt", "max_tokens", "temperature", "top_p",
                           "top_k", "min_p", "repetition_penalty", "seed", "stop", "n", "stream"}
    POST /v1/predict       classifier and tagger {"texts": [...]}; forecaster {"csv": "..."}
    GET  /v1/models, /health, / (the page: translate with attention, stream a generation)

Modules: ``models`` (folders -> pipelines by ``model_type``), ``worker`` (the one thread that
runs the models; concurrent translations batched), ``service`` (checks, limits, answers),
``http`` (the standard library's threading server).
"""

from __future__ import annotations

import signal
import threading

from mlxseq.serve.http import Server, make_server
from mlxseq.serve.models import ServedModel, load_models
from mlxseq.serve.service import Limits, RequestError, Service

__all__ = ["serve", "make_server", "Server", "Service", "Limits", "RequestError", "ServedModel", "load_models"]


def serve(models: list[str | None], host: str = "127.0.0.1", port: int = 8080, limits: Limits = Limits(), *,
          quiet: bool = False, on_ready=None) -> None:
    """Serve ``models`` (folders or Hub ids) until Ctrl-C or SIGTERM, then finish the requests in flight."""
    service = Service(load_models(models), limits)
    server = make_server(service, host, port, quiet=quiet)
    if on_ready is not None:
        on_ready(server)
    stop = threading.Event()

    def request_stop(signum, frame):
        stop.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)} \
        if threading.current_thread() is threading.main_thread() else {}
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    try:
        while not stop.wait(0.5):  # short waits: signal handlers run between them
            pass
    finally:
        server.shutdown()  # no new connections
        server.server_close()  # waits for the requests in flight
        service.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
