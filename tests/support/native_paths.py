"""Running a test on the native primitive and on the MLX graph, checking that the primitive ran."""

from contextlib import contextmanager

import pytest

from mlxseq.system import native


@contextmanager
def on_path(path: str, monkeypatch, function: str):
    """``path`` "graph": native switched off; "native": ``native.<function>`` must be called in the block."""
    if path == "graph":
        with native.disabled():
            yield
        return
    if not native.available():
        pytest.skip(f"native primitives unavailable: {native.describe()}")
    calls, run = [], getattr(native, function)
    monkeypatch.setattr(native, function, lambda *args: calls.append(1) or run(*args))
    yield
    assert calls, f"the native primitive (native.{function}) was not called"
