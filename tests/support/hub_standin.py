"""A tiny stand-in for the Hugging Face Hub's download API on 127.0.0.1.

Serves the files of local folders as model repos: ``repo_info`` (``/api/models/...``) and
``resolve`` downloads, the two calls ``snapshot_download`` makes; dataset repos' files
(``/datasets/OWNER/NAME/resolve/...``, what ``hf_hub_download(repo_type="dataset")`` asks
for) from the same folders. Use as a context manager; point ``HF_ENDPOINT`` at ``.url``.
"""

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "a" * 40


class HubStandIn:
    def __init__(self, repos: dict):
        """``repos``: repo id -> local folder."""
        self.repos = {repo: Path(folder) for repo, folder in repos.items()}
        self.requests = []
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body=b"", headers=None, head=False):
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _route(self, head):
                path = unquote(urlparse(self.path).path)
                standin.requests.append(path)
                parts = path.strip("/").split("/")
                if parts[0] == "datasets":  # a dataset repo's file: the same resolve route
                    parts = parts[1:]
                if parts[:2] == ["api", "models"] and len(parts) >= 4:
                    repo = "/".join(parts[2:4])
                    folder = standin.repos.get(repo)
                    if folder is None:
                        return self._send(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"}, head)
                    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
                    if len(parts) > 4 and parts[4] == "tree":  # list_repo_tree
                        entries = [
                            {"type": "file", "path": f, "size": (folder / f).stat().st_size,
                             "oid": hashlib.sha1((folder / f).read_bytes()).hexdigest()}
                            for f in files
                        ]
                        return self._send(200, json.dumps(entries).encode(), {"Content-Type": "application/json"}, head)
                    info = {"id": repo, "modelId": repo, "sha": COMMIT, "siblings": [{"rfilename": f} for f in files]}
                    return self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, head)
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo, name = "/".join(parts[:2]), "/".join(parts[4:])
                    folder = standin.repos.get(repo)
                    file = folder / name if folder else None
                    if file is None or not file.is_file():
                        return self._send(404, b"Entry not found", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}, head)
                    body = file.read_bytes()
                    etag = hashlib.sha1(body).hexdigest()
                    headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"', "Content-Type": "application/octet-stream"}
                    return self._send(200, body, headers, head)
                return self._send(404, b"not found", {}, head)

            def do_GET(self):
                self._route(head=False)

            def do_HEAD(self):
                self._route(head=True)

        return Handler
