"""Small hostile or odd files that ask for huge work or memory: each ends in one clear error, bounded.

Every file is loaded in a subprocess capped at 1.5 GiB of address space and a
time limit, so a regression fails the test instead of the machine. The
generators are in tests/convert/hostile_files.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.convert import hostile_files
from tests.convert.checkpoint_builders import REPO_ROOT

MEMORY_LIMIT = 3 << 29  # 1.5 GiB of address space
TIME_LIMIT = 60  # seconds, generous on a loaded machine; each case takes well under 5 s alone

_LOAD = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]), int(sys.argv[2])))
from mlxseq.convert import CheckpointError, load_torch_checkpoint
start = time.perf_counter()
try:
    load_torch_checkpoint(sys.argv[1])
    outcome = ["loaded", ""]
except CheckpointError as error:
    outcome = ["refused", str(error)]
print(json.dumps(outcome + [time.perf_counter() - start]))
"""

_CONVERT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]), int(sys.argv[2])))
from mlxseq.cli import app
sys.argv = ["mlxseq", "convert", sys.argv[1], sys.argv[3]]
app()
"""


def _run(script: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script, *arguments], capture_output=True, text=True,
                          timeout=TIME_LIMIT, cwd=REPO_ROOT, check=False)


def load_capped(path) -> tuple[str, str, float]:
    done = _run(_LOAD, str(path), str(MEMORY_LIMIT))
    assert done.returncode == 0, done.stderr[-3000:]
    return tuple(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("make, message", [
    (hostile_files.dag_as_dict_key, "nests tuples"),
    (hostile_files.dag_into_frozenset, "nests tuples"),
    (hostile_files.list_dag_into_str, "builtins.str"),
    (hostile_files.many_views_of_one_storage, "more memory than the file"),
    (hostile_files.stride_zero_tensors, "more memory than the file"),
    (hostile_files.deflate_bomb, "inflates"),
])
def test_a_small_file_cannot_ask_for_huge_work_or_memory(tmp_path, make, message):
    outcome, text, seconds = load_capped(make(tmp_path))
    assert outcome == "refused" and message in text, text
    assert str(tmp_path) in text  # names the file
    assert seconds < 20, seconds


@pytest.mark.parametrize("make, message", [
    (hostile_files.deep_dicts, "nested more than"),
    (hostile_files.cyclic_dict, "holds itself"),
    (hostile_files.list_dag_checkpoint, "more than 100,000 nested containers"),
])
def test_odd_nesting_ends_in_one_line_from_convert(tmp_path, make, message):
    done = _run(_CONVERT, str(make(tmp_path)), str(MEMORY_LIMIT), str(tmp_path / "out"))
    assert done.returncode == 1, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr[-3000:]
