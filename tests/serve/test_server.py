"""``mlxseq serve`` on an ephemeral port of 127.0.0.1: every endpoint against the pipelines'
own answers, batching of concurrent translations, streaming, limits and bad requests."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

import mlxseq
from mlxseq.pipelines.generator import BUNDLED_MODEL as CHAR_MODEL
from mlxseq.pipelines.translator import BUNDLED_MODEL as TRANSLATOR
from mlxseq.serve import Limits, Service, load_models, make_server


@pytest.fixture(scope="module")
def server():
    service = Service(load_models([str(TRANSLATOR), str(CHAR_MODEL)]),
                      Limits(max_texts=8, max_text_chars=300, max_tokens=400, batch_wait=0.05, max_queue=64))
    http = make_server(service, "127.0.0.1", 0, quiet=True)
    thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_address[1]}", service
    http.shutdown()
    http.server_close()
    service.close()


def call(url, path, body=None, *, raw: bytes | None = None, headers=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json",
                                                                     **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_models_and_health(server):
    url, _ = server
    status, models = call(url, "/v1/models")
    assert status == 200
    assert [(m["id"], m["task"], m["endpoint"]) for m in models["data"]] == [
        ("multi30k-de-en", "translation", "/v1/translate"), ("shakespeare-char", "generation", "/v1/completions")]
    assert call(url, "/health") == (200, {"status": "ok", "models": 2, "waiting": 0})


def test_translations_are_the_translators_with_the_settings_used(server):
    url, _ = server
    texts = ["Ein Mann fährt mit dem Fahrrad.", "Zwei Hunde spielen im Schnee."]
    status, answer = call(url, "/v1/translate", {"texts": texts, "beam_size": 3, "n_best": 2})
    assert status == 200, answer
    expected = mlxseq.translate(texts, beam_size=3)
    assert [t["text"] for t in answer["translations"]] == expected
    assert all(len(t["n_best"]) == 2 and t["n_best"][0]["text"] == t["text"] for t in answer["translations"])
    assert answer["settings"].startswith("beam:3|lp:") and answer["model"] == "multi30k-de-en"


def test_a_translation_with_attention_has_a_row_per_output_token(server):
    url, _ = server
    status, answer = call(url, "/v1/translate", {"text": "Ein Hund rennt.", "attention": True})
    assert status == 200, answer
    attention = answer["translations"][0]["attention"]
    assert len(attention["weights"]) == len(attention["target"]) and attention["target"][-1] == "</s>"
    assert all(len(row) == len(attention["source"]) and abs(sum(row) - 1) < 1e-2 for row in attention["weights"])


def test_concurrent_translations_are_batched_and_each_gets_its_own(server):
    url, service = server
    sentences = [f"Ein Mann mit {n} Hunden." for n in ("zwei", "drei", "vier", "fünf", "sechs", "sieben")]
    expected = mlxseq.translate(sentences)
    before = len(service.worker.batches)
    with ThreadPoolExecutor(len(sentences)) as pool:
        answers = list(pool.map(lambda s: call(url, "/v1/translate", {"texts": [s]}), sentences))
    assert [a[1]["translations"][0]["text"] for a in answers] == expected
    batches = service.worker.batches[before:]
    assert sum(batches) == len(sentences) and len(batches) < len(sentences), batches


def test_a_completion_is_the_generators(server):
    url, _ = server
    status, answer = call(url, "/v1/completions", {"prompt": "ROMEO:", "max_tokens": 40, "temperature": 0})
    assert status == 200, answer
    assert answer["object"] == "text_completion" and answer["model"] == "shakespeare-char"
    assert answer["choices"][0]["text"] == mlxseq.generate("ROMEO:", max_tokens=40)
    assert answer["choices"][0]["finish_reason"] == "length" and answer["usage"]["completion_tokens"] == 40
    assert answer["settings"]["temperature"] == 0.0 and answer["settings"]["max_tokens"] == 40


def test_a_streamed_completion_grows_piece_by_piece_and_ends_with_done(server):
    url, _ = server
    request = urllib.request.Request(url + "/v1/completions", data=json.dumps(
        {"prompt": "ROMEO:", "max_tokens": 60, "temperature": 0, "stream": True}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        events = [line[len(b"data: "):] for line in response.read().split(b"\n\n") if line]
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) > 5 and chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert "".join(c["choices"][0]["text"] for c in chunks) == mlxseq.generate("ROMEO:", max_tokens=60)


@pytest.mark.parametrize("path, body, status, message", [
    ("/v1/translate", {"texts": "x" * 301}, 413, "text 1 has 301 characters; at most 300"),
    ("/v1/translate", {"texts": ["a"] * 9}, 413, "9 texts in one request; at most 8"),
    ("/v1/translate", {"texts": [1, 2]}, 400, "field 'texts' must be a list of strings"),
    ("/v1/translate", {"texts": ["a"], "beam_size": 0}, 422, "beam_size must be in [1, 1000], got 0"),
    ("/v1/translate", {"texts": ["a"], "beam_size": "5"}, 400, "field 'beam_size' must be int, got str"),
    ("/v1/translate", {"texts": ["a"], "model": "nope"}, 404, "no model 'nope'; served: multi30k-de-en, shakespeare-char"),
    ("/v1/translate", {"texts": ["a"], "model": "shakespeare-char"}, 400, "does generation, not translation"),
    ("/v1/completions", {"prompt": "a", "max_tokens": 401}, 413, "max_tokens 401; at most 400"),
    ("/v1/completions", {"prompt": "a", "top_p": 0}, 422, "top_p must be in (0, 1], got 0"),
    ("/v1/predict", {"texts": ["a"]}, 404, "no classification or tagging or forecasting model is served"),
    ("/v1/nothing", {}, 404, "no such path '/v1/nothing'"),
])
def test_a_bad_request_gets_a_4xx_with_one_line_and_the_server_goes_on(server, path, body, status, message):
    url, _ = server
    got, answer = call(url, path, body)
    assert got == status and message in answer["error"]["message"], answer
    assert "\n" not in answer["error"]["message"]
    assert call(url, "/health")[0] == 200


def test_bodies_that_are_not_json_or_too_large_are_refused(server):
    url, _ = server
    assert call(url, "/v1/translate", raw=b"{not json")[0] == 400
    assert call(url, "/v1/translate", raw=b"[1, 2]")[1]["error"]["message"] == "the body must be a JSON object"
    status, answer = call(url, "/v1/translate", raw=b"x" * (2 << 20))
    assert status == 413 and "at most 1,048,576" in answer["error"]["message"]
    assert call(url, "/health")[0] == 200


def test_the_page_is_served(server):
    url, _ = server
    with urllib.request.urlopen(url + "/", timeout=30) as response:
        page = response.read().decode()
    assert response.headers["Content-Type"].startswith("text/html") and "/v1/translate" in page


def test_ctrl_c_finishes_the_request_in_flight_then_exits(tmp_path):
    import re
    import signal
    import subprocess
    import sys
    import time

    from tests.convert.checkpoint_builders import REPO_ROOT

    process = subprocess.Popen([sys.executable, "-c", "from mlxseq.cli import app; app()", "serve", "--model",
                                str(CHAR_MODEL), "--port", "0", "--quiet"], stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    try:
        line = process.stderr.readline()
        port = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert port, line
        url = f"http://127.0.0.1:{port[1]}"
        answers = []
        request = threading.Thread(target=lambda: answers.append(call(url, "/v1/completions", {
            "prompt": "ROMEO:", "max_tokens": 400, "temperature": 0})))
        request.start()
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        request.join(timeout=120)
        assert process.wait(timeout=120) == 0
    finally:
        process.kill()
    (status, answer), = answers
    assert status == 200 and len(answer["choices"][0]["text"]) > 300
    assert "stopped" in process.stderr.read()


def test_two_folders_of_the_same_name_are_told_apart_by_their_parent(tmp_path):
    import shutil

    for run in ("a", "b"):
        shutil.copytree(CHAR_MODEL, tmp_path / run / "best")
    models = load_models([str(tmp_path / "a" / "best"), str(tmp_path / "b" / "best")])
    assert [m.id for m in models] == ["a/best", "b/best"]
