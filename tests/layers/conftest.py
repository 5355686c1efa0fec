"""Both recurrence paths: modules that use ``recurrence_path`` run every test on the native
primitive (when built) and on the MLX graph. Gradients always come from the MLX graph."""

import pytest

from mlxseq.system import native


@pytest.fixture(params=["native", "graph"])
def recurrence_path(request):
    if request.param == "native":
        if not native.available():
            pytest.skip(f"native recurrence unavailable: {native.describe()}")
        yield "native"
    else:
        with native.disabled():
            yield "graph"
