"""What each endpoint does with a JSON request, apart from HTTP: checks, limits, the worker.

Every answer names the model and the settings used. A request a model cannot serve, or over a
limit, is a :class:`RequestError` with a status and a one-line reason; nothing a request holds
can stop the server.
"""

from __future__ import annotations

import dataclasses
import math
import queue
import tempfile
import threading
import time
import uuid
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from mlxseq.serve.models import ServedModel
from mlxseq.serve.worker import Job, QueueFull, Worker


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Limits:
    """What one request may ask; over a limit is a 4xx with the limit named."""

    max_body_bytes: int = 1 << 20  # request bodies
    max_texts: int = 64  # texts in one request
    max_text_chars: int = 2000  # characters of one text or prompt
    max_tokens: int = 2048  # tokens one completion may generate
    max_queue: int = 256  # requests waiting for the model; more get 503
    timeout: float = 60.0  # seconds a request may wait and run; then 504
    batch_wait: float = 0.005  # seconds a translation waits for others to join its batch
    max_batch_texts: int = 256  # texts translated together at most


def _get(body: dict, name: str, kind, default=None, *, required: bool = False):
    if name not in body or body[name] is None:
        if required:
            raise RequestError(400, f"missing field {name!r}")
        return default
    value = body[name]
    numbers = (int, float) if kind is float else (kind,)
    if isinstance(value, bool) and kind is not bool or not isinstance(value, numbers):
        raise RequestError(400, f"field {name!r} must be {kind.__name__}, got {type(value).__name__}")
    if kind is float and not math.isfinite(value):
        raise RequestError(400, f"field {name!r} must be a finite number")
    return float(value) if kind is float else value


class Service:
    """The served models, their worker and the request handlers (see the module docstring)."""

    def __init__(self, models: list[ServedModel], limits: Limits = Limits()):
        self.models = {m.id: m for m in models}
        self.limits = limits
        self.worker = Worker(self._translate_many, max_queue=limits.max_queue, batch_wait=limits.batch_wait,
                             max_batch_texts=limits.max_batch_texts)

    def close(self) -> None:
        self.worker.stop()

    # --- shared -------------------------------------------------------------------------

    def model(self, body: dict, task: str | tuple) -> ServedModel:
        tasks = (task,) if isinstance(task, str) else task
        name = _get(body, "model", str)
        if name is None:
            found = [m for m in self.models.values() if m.task in tasks]
            if not found:
                raise RequestError(404, f"no {' or '.join(tasks)} model is served")
            return found[0]
        if name not in self.models:
            raise RequestError(404, f"no model {name!r}; served: {', '.join(self.models)}")
        if self.models[name].task not in tasks:
            raise RequestError(400, f"model {name!r} does {self.models[name].task}, not {' or '.join(tasks)}")
        return self.models[name]

    def texts(self, body: dict) -> list[str]:
        texts = body.get("texts", body.get("text"))
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise RequestError(400, "field 'texts' must be a list of strings (or 'text' one string)")
        if len(texts) > self.limits.max_texts:
            raise RequestError(413, f"{len(texts)} texts in one request; at most {self.limits.max_texts}")
        for i, text in enumerate(texts):
            if len(text) > self.limits.max_text_chars:
                raise RequestError(413, f"text {i + 1} has {len(text)} characters; at most {self.limits.max_text_chars}")
        return texts

    def wait(self, job: Job):
        try:
            future = self.worker.submit(job)
        except QueueFull as error:
            raise RequestError(503, str(error)) from None
        try:
            return future.result(timeout=self.limits.timeout)
        except FutureTimeout:
            future.cancel()
            raise RequestError(504, f"the request took more than {self.limits.timeout:g} s") from None
        except ValueError as error:  # the pipeline's own checks (input too long, bad option)
            raise RequestError(422, str(error)) from None

    def health(self) -> dict:
        return {"status": "ok", "models": len(self.models), "waiting": self.worker.jobs.qsize()}

    def list_models(self) -> dict:
        return {"object": "list", "data": [m.describe() for m in self.models.values()]}

    # --- translation ----------------------------------------------------------------------

    def translate(self, body: dict) -> dict:
        served = self.model(body, "translation")
        texts = self.texts(body)
        translator = served.pipeline
        given = {name: _get(body, name, kind) for name, kind in (
            ("beam_size", int), ("n_best", int), ("length_penalty", float), ("max_length_ratio", float))}
        try:
            options = translator.options(**given)
        except (TypeError, ValueError) as error:
            raise RequestError(422, str(error)) from None
        with_attention = bool(_get(body, "attention", bool, False))
        if with_attention:
            found = self.wait(Job(lambda: [self._with_attention(translator, text, hyps) for text, hyps in
                                           zip(texts, translator.translate(texts, options))]))
        else:
            key = (served.id, dataclasses.astuple(options))
            found = [{"hypotheses": hyps} for hyps in self.wait(Job(lambda: None, batch_key=key, texts=texts))]
        translations = []
        for item in found:
            hyps = item.pop("hypotheses")
            entry = {"text": hyps[0].text, "score": hyps[0].score, **item}
            if options.n_best > 1:
                entry["n_best"] = [{"text": h.text, "score": h.score} for h in hyps]
            translations.append(entry)
        return {"model": served.id, "translations": translations, "settings": options.signature()}

    def _translate_many(self, key: tuple, texts: list[str]) -> list:
        translator = self.models[key[0]].pipeline
        options = type(translator.options())(*key[1])
        return translator.translate(texts, options)

    @staticmethod
    def _with_attention(translator, text, hyps) -> dict:
        weights, source, target = translator.attention_map(text, hyps[0])
        return {"hypotheses": hyps, "attention": {"source": source, "target": target,
                                                  "weights": [[round(float(w), 4) for w in row] for row in weights]}}

    # --- generation (OpenAI's /v1/completions) ------------------------------------------

    def _generation_options(self, body: dict):
        from mlxseq.pipelines.generator import GenerationOptions

        defaults = GenerationOptions()
        stop = body.get("stop")
        stop = [stop] if isinstance(stop, str) else stop
        if stop is not None and (not isinstance(stop, list) or not all(isinstance(s, str) for s in stop)):
            raise RequestError(400, "field 'stop' must be a string or a list of strings")
        max_tokens = _get(body, "max_tokens", int, defaults.max_tokens)
        if not 0 <= max_tokens <= self.limits.max_tokens:
            raise RequestError(413, f"max_tokens {max_tokens}; at most {self.limits.max_tokens}")
        try:
            return GenerationOptions(
                max_tokens=max_tokens, temp=_get(body, "temperature", float, defaults.temp),
                top_p=_get(body, "top_p", float, defaults.top_p), top_k=_get(body, "top_k", int, defaults.top_k),
                min_p=_get(body, "min_p", float, defaults.min_p),
                repetition_penalty=_get(body, "repetition_penalty", float, defaults.repetition_penalty),
                seed=_get(body, "seed", int, defaults.seed), num_samples=_get(body, "n", int, defaults.num_samples),
                stop=tuple(stop or ()))
        except ValueError as error:
            raise RequestError(422, str(error)) from None

    @staticmethod
    def _settings(options) -> dict:
        return {"max_tokens": options.max_tokens, "temperature": options.temp, "top_p": options.top_p,
                "top_k": options.top_k, "min_p": options.min_p, "repetition_penalty": options.repetition_penalty,
                "seed": options.seed, "stop": list(options.stop), "n": options.num_samples}

    def _prompt(self, body: dict) -> str:
        prompt = _get(body, "prompt", str, "")
        if len(prompt) > self.limits.max_text_chars:
            raise RequestError(413, f"the prompt has {len(prompt)} characters; at most {self.limits.max_text_chars}")
        return prompt

    def complete(self, body: dict) -> dict:
        served = self.model(body, "generation")
        prompt, options = self._prompt(body), self._generation_options(body)
        generator = served.pipeline
        texts = self.wait(Job(lambda: generator.generate(prompt, options)))
        used = [len(generator.tokenizer.encode(text)) for text in texts]
        return {
            "id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
            "model": served.id,
            "choices": [{"index": i, "text": text, "logprobs": None,
                         "finish_reason": "length" if n >= options.max_tokens else "stop"}
                        for i, (text, n) in enumerate(zip(texts, used))],
            "usage": {"prompt_tokens": len(generator.tokenizer.encode(prompt)), "completion_tokens": sum(used),
                      "total_tokens": len(generator.tokenizer.encode(prompt)) + sum(used)},
            "settings": self._settings(options),
        }

    def stream(self, body: dict) -> Iterator[dict]:
        """The pieces of one completion as OpenAI's streamed chunks, the last with its finish reason."""
        served = self.model(body, "generation")
        prompt, options = self._prompt(body), self._generation_options(body)
        if options.num_samples != 1:
            raise RequestError(422, "a streamed completion has one sample (n=1)")
        pieces: queue.Queue = queue.Queue()
        stopped = threading.Event()
        generator = served.pipeline

        def run():
            count = 0
            for piece in generator.stream(prompt, options):
                if stopped.is_set():  # the client went away
                    break
                count += len(generator.tokenizer.encode(piece))
                pieces.put(piece)
            pieces.put(None)
            return count

        try:
            future = self.worker.submit(Job(run))
        except QueueFull as error:
            raise RequestError(503, str(error)) from None
        ident, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        deadline = time.monotonic() + self.limits.timeout

        def chunk(text, finish):
            return {"id": ident, "object": "text_completion", "created": created, "model": served.id,
                    "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
                    "settings": self._settings(options)}

        try:
            while True:
                try:
                    piece = pieces.get(timeout=max(deadline - time.monotonic(), 0.001))
                except queue.Empty:
                    future.cancel()
                    yield chunk("", "timeout")
                    return
                if piece is None:
                    break
                yield chunk(piece, None)
            count = future.result(timeout=self.limits.timeout)
            yield chunk("", "length" if count >= options.max_tokens else "stop")
        finally:
            stopped.set()

    # --- classification, tagging, forecasting ----------------------------------------------

    def predict(self, body: dict) -> dict:
        served = self.model(body, ("classification", "tagging", "forecasting"))
        pipeline = served.pipeline
        if served.task == "forecasting":
            csv = _get(body, "csv", str, required=True)
            if len(csv) > self.limits.max_body_bytes:
                raise RequestError(413, "the series is too long")
            dates, values = self.wait(Job(lambda: _forecast(pipeline, csv)))
            return {"model": served.id, "columns": pipeline.settings.columns, "dates": list(dates),
                    "values": [[float(v) for v in row] for row in values],
                    "settings": f"horizon {len(dates)} after the series' last row"}
        texts = self.texts(body)
        if served.task == "classification":
            threshold = _get(body, "threshold", float, 0.5)
            found = self.wait(Job(lambda: pipeline.predict(texts, 64, threshold)))
            return {"model": served.id, "predictions": [
                {"labels": p.labels, "probability": p.probability, "text": t} for p, t in zip(found, texts)],
                "settings": f"threshold {threshold}" if pipeline.multi_label else "argmax"}
        sentences = [t.split() for t in texts]
        tags = self.wait(Job(lambda: pipeline.tag(sentences, 64)))
        return {"model": served.id, "predictions": [{"words": w, "tags": list(t)} for w, t in zip(sentences, tags)],
                "settings": "words split on whitespace"}


def _forecast(forecaster, csv: str):
    from mlxseq.data import read_timeseries

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "series.csv"
        path.write_text(csv, encoding="utf-8")
        series = read_timeseries(str(path), forecaster.settings.date_column, forecaster.settings.columns)
        return forecaster.forecast(series)
