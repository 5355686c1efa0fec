"""The HTTP side of ``mlxseq serve``: the standard library's threading server, JSON in and out.

The standard library's ``http.server`` does the HTTP parsing (as ``mlx_lm.server`` does): no
dependency to install, and a local server for one machine needs no more. Each connection gets
a thread that parses, checks and waits; the models run on the service's one worker thread.
Streamed completions are server-sent events (``data: {...}`` lines, then ``data: [DONE]``).
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files

from mlxseq.serve.service import RequestError, Service

# A body over the limit is still read (and dropped) up to this size before the 413 answer;
# larger ones are cut off unread.
DRAIN_LIMIT = 64 << 20


class Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for the requests in flight
    block_on_close = True

    def __init__(self, address, service: Service, *, quiet: bool = False):
        super().__init__(address, Handler)
        self.service, self.quiet = service, quiet


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    server_version = "mlxseq"

    def log_message(self, format, *args):
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    # --- answers ------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value) -> None:
        self._send(status, json.dumps(value, ensure_ascii=False).encode("utf-8"), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": {"message": message, "code": status}})

    # --- requests -----------------------------------------------------------------------

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/":
            page = files("mlxseq.serve").joinpath("page.html").read_bytes()
            self._send(200, page, "text/html; charset=utf-8")
        elif path == "/health":
            self._json(200, self.server.service.health())
        elif path == "/v1/models":
            self._json(200, self.server.service.list_models())
        else:
            self._error(404, f"no such path {path!r} (GET /, /health, /v1/models)")

    def do_POST(self):
        routes = {"/v1/translate": self.server.service.translate, "/v1/completions": None,
                  "/v1/predict": self.server.service.predict}
        path = self.path.split("?")[0]
        try:
            if path not in routes:
                raise RequestError(404, f"no such path {path!r} (POST {', '.join(routes)})")
            body = self._read_json()
            if path == "/v1/completions":
                if body.get("stream"):
                    self._stream(body)
                    return
                self._json(200, self.server.service.complete(body))
            else:
                self._json(200, routes[path](body))
        except RequestError as error:
            self._error(error.status, error.message)
        except Exception as error:  # a defect: one line to the client and the log, the server goes on
            self.log_message("error: %s", f"{type(error).__name__}: {error}")
            self._error(500, f"internal error ({type(error).__name__}: {str(error)[:200]})")

    def _read_json(self) -> dict:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise RequestError(411, "a JSON body with a Content-Length header is required")
        limit = self.server.service.limits.max_body_bytes
        if int(length) > limit:
            self.close_connection = True
            if int(length) <= DRAIN_LIMIT:  # read and dropped, so that the client reads the answer
                left = int(length)
                while left > 0:
                    chunk = self.rfile.read(min(1 << 16, left))
                    if not chunk:
                        break
                    left -= len(chunk)
            raise RequestError(413, f"the body has {int(length):,} bytes; at most {limit:,}")
        try:
            body = json.loads(self.rfile.read(int(length)) or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RequestError(400, f"the body is not valid JSON ({error})") from None
        if not isinstance(body, dict):
            raise RequestError(400, "the body must be a JSON object")
        return body

    def _stream(self, body: dict) -> None:
        chunks = self.server.service.stream(body)
        first = next(chunks)  # request errors surface here, before any header is sent
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for chunk in _chain(first, chunks):
                self.wfile.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode("utf-8"))
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            chunks.close()  # the client went away: the generation stops


def _chain(first, rest):
    yield first
    yield from rest


def make_server(service: Service, host: str = "127.0.0.1", port: int = 8080, *, quiet: bool = False) -> Server:
    """A server bound to ``host:port`` (port 0: any free port; see ``server.server_address``)."""
    return Server((host, port), service, quiet=quiet)
