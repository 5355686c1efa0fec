"""mlxseq/system/native.py: the native recurrence against the MLX graph it replaces for
inference, the cases it leaves to the graph, and how `mlxseq info` reports the path.
(The layers' parity with torch runs on both paths: tests/layers/conftest.py.)"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

import mlxseq
from mlxseq.layers.gates import GATE_MATH
from mlxseq.system import native

needs_native = pytest.mark.skipif(not native.available(), reason=f"native recurrence unavailable: {native.describe()}")


def _count_native_calls(monkeypatch) -> list:
    """The ``differentiable`` flag of every native recurrence call from now on."""
    calls, run = [], native.recurrence

    def counted(*args, **kwargs):
        calls.append(args[9])  # differentiable
        return run(*args, **kwargs)

    monkeypatch.setattr(native, "recurrence", counted)
    return calls


def _split_steps() -> int:
    """How many steps so far had their gate loops split among the threads (csrc/parallel.h)."""
    return native._state["module"].split_steps()


def _scans_in_shares() -> int:
    """How many forward scans so far ran their rows in shares, a thread each over all steps."""
    return native._state["module"].scans_in_shares()


def _rows_split_here() -> bool:
    """Whether wide steps split their rows here: products on oneDNN, whose OpenMP threads they use."""
    return "oneDNN" in native.describe() and native._state["module"].openmp_threads() > 1


def _in_shares_here(batch: int) -> bool:
    """Whether a wide scan of ``batch`` rows runs in shares here: 8 rows a thread at least."""
    return _rows_split_here() and batch >= 8 * native._state["module"].openmp_threads()


def _both_paths(layer, x, lengths=None, state=None):
    out, final = layer(x, state, lengths=lengths)
    with native.disabled():
        ref_out, ref_final = layer(x, state, lengths=lengths)
    return (out, *final), (ref_out, *ref_final)


# The native primitive projects inputs (and forms their gradients) about 1,024 rows at a time:
# batches of 150 and 200 split these sequences into several chunks. Their layers are wide enough
# (batch x gate values >= 16,384 per step) for their rows to run in shares, a thread each over all
# steps, where the products run on oneDNN; the batches of 3 and 4 keep them in one thread.
@needs_native
@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu", "gru", "lstm", "lstm_proj"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("batch", [4, 150])
def test_deep_bidirectional_layers_give_the_graphs_numbers(kind, masked, batch, monkeypatch):
    mx.random.seed(3)
    cls, kwargs = {"rnn_tanh": (mlxseq.RNN, {}), "rnn_relu": (mlxseq.RNN, {"nonlinearity": "relu"}),
                   "gru": (mlxseq.GRU, {}), "lstm": (mlxseq.LSTM, {}),
                   "lstm_proj": (mlxseq.LSTM, {"proj_size": 5})}[kind]
    layer = cls(7, 12 if batch < 100 else 128, num_layers=2, bidirectional=True, **kwargs)
    layer.eval()
    x = mx.random.normal((batch, 37, 7))
    lengths = mx.concatenate([mx.array([37, 1, 20, 36]), mx.random.randint(1, 38, (batch - 4,))]) if masked else None
    calls, splits, shared = _count_native_calls(monkeypatch), _split_steps(), _scans_in_shares()
    got, expected = _both_paths(layer, x, lengths)
    assert calls == [False] * 4  # each layer-direction ran natively once (the graph run made no call), untraced
    for a, b in zip(got, expected):
        assert a.shape == b.shape
        np.testing.assert_allclose(np.array(a), np.array(b), atol=2e-6, rtol=1e-5)
    assert (_split_steps() > splits) == (batch > 100 and _rows_split_here())  # counted once evaluated
    assert _scans_in_shares() - shared == (4 if batch > 100 and _in_shares_here(batch) else 0)
    if masked:  # outputs past each length are 0, as after pad_packed_sequence
        assert float(mx.abs(got[0][1, 1:]).max()) == 0.0


@needs_native
@pytest.mark.parametrize("kind", ["gru", "lstm", "lstm_proj"])
def test_too_few_rows_to_share_split_each_steps_loops(kind):
    # 12 rows are too few for a share each on 2 cores (8 rows a thread at least), yet wide enough (12 x
    # 1,536 gate values) for each step's loops to split among the threads, its products splitting their columns.
    mx.random.seed(8)
    cls, kwargs = {"gru": (mlxseq.GRU, {}), "lstm": (mlxseq.LSTM, {}), "lstm_proj": (mlxseq.LSTM, {"proj_size": 64})}[kind]
    layer = cls(5, 512, bidirectional=True, **kwargs)
    x, lengths = mx.random.normal((12, 9, 5)), mx.random.randint(1, 10, (12,))
    splits, shared = _split_steps(), _scans_in_shares()
    got, expected = _both_paths(layer, x, lengths)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(np.array(a), np.array(b), atol=2e-6, rtol=1e-5)
    assert _scans_in_shares() == shared
    assert (_split_steps() > splits) == _rows_split_here()


@needs_native
def test_scans_of_under_four_steps_keep_their_loops_in_one_thread():
    # Their products stay on sgemm, whose calls leave the OpenMP threads asleep: waking them at
    # each step of a decoder's one-step scans cost more than the loops.
    layer = mlxseq.LSTM(7, 128)
    for steps in (1, 3):
        splits = _split_steps()
        got, expected = _both_paths(layer, mx.random.normal((150, steps, 7)))
        np.testing.assert_allclose(np.array(got[0]), np.array(expected[0]), atol=2e-6, rtol=1e-5)
        assert _split_steps() == splits, steps
    _both_paths(layer, mx.random.normal((150, 4, 7)))[0][0].tolist()
    assert _split_steps() > splits or not _rows_split_here()  # from 4 steps on they split


@needs_native
@pytest.mark.parametrize("cls", [mlxseq.LSTM, mlxseq.GRU])
def test_initial_states_of_rows_run_in_shares(cls):
    # 40 rows of a wide layer run in shares where oneDNN takes the products: each share starts from its own rows
    mx.random.seed(9)
    layer = cls(8, 256, num_layers=2)
    x = mx.random.normal((40, 11, 8))
    state = tuple(mx.random.normal((2, 40, 256)) for _ in range(2 if cls is mlxseq.LSTM else 1))
    state = state if cls is mlxseq.LSTM else state[0]
    shared = _scans_in_shares()
    got, expected = _both_paths(layer, x, state=state)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(np.array(a), np.array(b), atol=2e-6, rtol=1e-5)
    assert _scans_in_shares() - shared == (2 if _in_shares_here(40) else 0)
    # and the backward pass from what the shares kept
    weights = mx.random.normal((40, 11, 256))

    def loss(params, state):
        layer.update(params)
        out, final = layer(x, state)
        return (out * weights).sum() + sum((f * f).sum() for f in final)

    grad = mx.grad(loss, argnums=(0, 1))
    got = grad(layer.trainable_parameters(), state)
    with native.disabled():
        expected = grad(layer.trainable_parameters(), state)
    pairs = [*zip(dict(mlxseq_tree(got[0])).values(), dict(mlxseq_tree(expected[0])).values())]
    pairs += list(zip(got[1], expected[1])) if cls is mlxseq.LSTM else [(got[1], expected[1])]
    for a, b in pairs:
        b = np.array(b)
        np.testing.assert_allclose(np.array(a), b, atol=max(1e-5, 1e-6 * float(np.abs(b).max())), rtol=1e-4)


@needs_native
@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_a_scan_of_given_projections_in_shares_and_its_gradients(name):
    # scan() takes projections xp (T, B, G) made elsewhere: the primitive copies each share's rows of them
    from mlxseq.layers.scan import scan

    mx.random.seed(10)
    math, H, B, T = GATE_MATH[name], 160, 36, 9  # 36 x 480 gate values a step at least: wide enough
    G = H * (4 if name == "lstm" else 3)
    xp, h0, w_hh = mx.random.normal((T, B, G)), mx.random.normal((B, H)), 0.1 * mx.random.normal((G, H))
    extra0 = (mx.random.normal((B, H)),) if name == "lstm" else ()
    b_hh = mx.random.normal((G,)) if name == "gru" else None
    mask = (mx.arange(T)[:, None] < mx.random.randint(1, T + 1, (B,))[None, :])[..., None]
    weights = mx.random.normal((T, B, H))

    def loss(xp, h0, w_hh):
        out, h_n, extra = scan(math, xp, h0, extra0, w_hh, b_hh, mask=mask, reverse=True)
        return (out * weights).sum() + (h_n * h_n).sum() + sum((e * e).sum() for e in extra)

    grad = mx.value_and_grad(loss, argnums=(0, 1, 2))
    shared = _scans_in_shares()
    got = grad(xp, h0, w_hh)
    mx.eval(got)
    assert _scans_in_shares() - shared == (1 if _in_shares_here(B) else 0)
    with native.disabled():
        expected = grad(xp, h0, w_hh)
    np.testing.assert_allclose(float(got[0]), float(expected[0]), rtol=1e-5)
    for a, b in zip(got[1], expected[1]):
        b = np.array(b)
        np.testing.assert_allclose(np.array(a), b, atol=max(1e-5, 1e-6 * float(np.abs(b).max())), rtol=1e-4)


@needs_native
@pytest.mark.parametrize("cls", [mlxseq.LSTM, mlxseq.GRU])
def test_shares_of_a_layer_with_wide_inputs_and_their_gradients(cls):
    mx.random.seed(11)
    layer = cls(800, 160, bidirectional=True)
    x, lengths = mx.random.normal((40, 23, 800)), mx.random.randint(1, 24, (40,))
    weights = mx.random.normal((40, 23, 320))

    def loss(params, x):
        layer.update(params)
        out, final = layer(x, lengths=lengths)
        return (out * weights).sum() + sum((f * f).sum() for f in final)

    shared = _scans_in_shares()
    got, expected = _both_paths(layer, x, lengths)
    for a, b in zip(got, expected):  # sums of 960 products in another order
        np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-5, rtol=1e-5)
    assert _scans_in_shares() - shared == (2 if _in_shares_here(40) else 0)
    grad = mx.grad(loss, argnums=(0, 1))
    got = grad(layer.trainable_parameters(), x)
    with native.disabled():
        expected = grad(layer.trainable_parameters(), x)
    pairs = [*zip(dict(mlxseq_tree(got[0])).values(), dict(mlxseq_tree(expected[0])).values()), (got[1], expected[1])]
    for a, b in pairs:
        b = np.array(b)
        np.testing.assert_allclose(np.array(a), b, atol=max(1e-5, 1e-6 * float(np.abs(b).max())), rtol=1e-4)


@needs_native
def test_initial_states_and_a_long_sequence():
    mx.random.seed(4)
    layer = mlxseq.LSTM(8, 16)
    x = mx.random.normal((2, 3000, 8))
    state = (mx.random.normal((1, 2, 16)), mx.random.normal((1, 2, 16)))
    got, expected = _both_paths(layer, x, state=state)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-5)


# What a training step holds at its peak, in (T, B, H) arrays: what the backward pass reads beside the
# output (LSTM c_t and z_t: 5; GRU r, z, n and W_hn h + b_hn: 4; RNN nothing), the output itself, and
# about three more (the time-major copy of x, the output's cotangent, dx). Keeping h_{t-1} as well
# made it 10.2, 9.1 and 6.1 (the RNN also kept y_t, its output again).
@needs_native
@pytest.mark.parametrize("kind,kept", [("lstm", 5), ("gru", 4), ("rnn", 0)])
def test_a_training_step_holds_what_its_backward_pass_reads_once(kind, kept):
    T, B, H = 400, 16, 128
    layer = {"lstm": mlxseq.LSTM, "gru": mlxseq.GRU, "rnn": mlxseq.RNN}[kind](H, H)
    x = mx.random.normal((B, T, H))
    mx.eval(layer.parameters(), x)

    def total(params):
        layer.update(params)
        return layer(x)[0].sum()

    gradients = mx.grad(total)
    mx.eval(gradients(layer.parameters()))
    mx.clear_cache()
    before = mx.get_active_memory()
    mx.reset_peak_memory()
    mx.eval(gradients(layer.parameters()))
    arrays = (mx.get_peak_memory() - before) / (T * B * H * 4)
    assert arrays <= kept + 1 + 3.5, f"a {kind} training step peaked at {arrays:.2f} (T, B, H) arrays"


@needs_native
@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu", "gru", "lstm", "lstm_proj"])
@pytest.mark.parametrize("batch", [3, 200])
def test_gradients_of_every_parameter_match_the_graphs(kind, batch, monkeypatch):
    mx.random.seed(5)
    cls, kwargs = {"rnn_tanh": (mlxseq.RNN, {}), "rnn_relu": (mlxseq.RNN, {"nonlinearity": "relu"}),
                   "gru": (mlxseq.GRU, {}), "lstm": (mlxseq.LSTM, {}),
                   "lstm_proj": (mlxseq.LSTM, {"proj_size": 5})}[kind]
    hidden = 9 if batch < 100 else 96
    layer = cls(6, hidden, num_layers=2, bidirectional=True, **kwargs)
    T = 13
    x = mx.random.normal((batch, T, 6))
    lengths = mx.concatenate([mx.array([T, 4, 7]), mx.random.randint(1, T + 1, (batch - 3,))])
    weights = mx.random.normal((batch, T, 2 * (5 if kind == "lstm_proj" else hidden)))

    def loss(params, x):
        layer.update(params)
        out, final = layer(x, lengths=lengths)
        return (out * weights).sum() + sum((f * f).sum() for f in final)

    grad = mx.grad(loss, argnums=(0, 1))
    calls, splits = _count_native_calls(monkeypatch), _split_steps()
    got = grad(layer.trainable_parameters(), x)
    assert calls == [True] * 4  # the native primitive, keeping what its backward pass reads
    with native.disabled():
        expected = grad(layer.trainable_parameters(), x)
    flat_got, flat_expected = dict(mlxseq_tree(got[0])), dict(mlxseq_tree(expected[0]))
    assert flat_got.keys() == flat_expected.keys() and len(flat_got) >= 8
    for name, value in [*flat_got.items(), ("x", got[1])]:
        reference = np.array(flat_expected[name] if name != "x" else expected[1])
        # sums over batch * T terms, in another order: float32 rounding relative to the largest
        atol = max(1e-5, 1e-6 * float(np.abs(reference).max()))
        np.testing.assert_allclose(np.array(value), reference, atol=atol, rtol=1e-4, err_msg=name)
    assert (_split_steps() > splits) == (batch > 100 and _rows_split_here())  # counted once evaluated


@needs_native
def test_training_continued_on_the_other_path_stays_within_float32_rounding():
    import mlx.nn as nn
    import mlx.optimizers as optim
    from mlx.utils import tree_flatten, tree_unflatten

    mx.random.seed(6)
    model = mlxseq.LSTM(5, 8, num_layers=2, bidirectional=True)
    x, target = mx.random.normal((4, 9, 5)), mx.random.normal((4, 9, 16))
    loss_and_grad = nn.value_and_grad(model, lambda x: ((model(x)[0] - target) ** 2).mean())

    def train(steps, optimizer):
        for _ in range(steps):
            loss, grads = loss_and_grad(x)
            optimizer.update(model, grads)
            mx.eval(model.parameters(), optimizer.state)
        return loss.item()

    optimizer = optim.Adam(learning_rate=1e-2)
    with native.disabled():
        train(5, optimizer)  # the first half on the MLX graph
    saved_params, saved_state = tree_flatten(model.parameters()), tree_flatten(optimizer.state)
    finals = {}
    for path in ("native", "graph"):
        model.load_weights(saved_params)
        optimizer = optim.Adam(learning_rate=1e-2)
        optimizer.init(model.trainable_parameters())
        optimizer.state = tree_unflatten(saved_state)
        if path == "graph":
            with native.disabled():
                train(20, optimizer)
        else:
            train(20, optimizer)
        finals[path] = dict(tree_flatten(model.parameters()))
    for name, value in finals["native"].items():
        np.testing.assert_allclose(np.array(value), np.array(finals["graph"][name]), atol=2e-5, err_msg=name)


def mlxseq_tree(params):
    from mlx.utils import tree_flatten

    return tree_flatten(params)  # [(dotted name, array)]


def test_what_the_native_path_takes_and_what_it_leaves_to_the_graph():
    xp = mx.zeros((3, 2, 8))
    with native.disabled():
        assert not native.can_run(GATE_MATH["lstm"], xp, ())
    if not native.available():
        pytest.skip(f"native recurrence unavailable: {native.describe()}")
    assert native.can_run(GATE_MATH["lstm"], xp, ()) and native.can_run(GATE_MATH["gru"], xp, ())
    assert not native.can_run(GATE_MATH["lstm_peephole"], xp, (mx.zeros(6),))  # cell variants: the graph
    assert not native.can_run(GATE_MATH["gru_reset_before"], xp, ())
    assert not native.can_run(GATE_MATH["lstm"], xp.astype(mx.float16), ())
    layer = mlxseq.GRU(4, 6)  # gradients pass through the graph's hand-written backward
    x = mx.random.normal((2, 5, 4))
    grad = mx.grad(lambda x: layer(x)[0].sum())(x)
    with native.disabled():
        expected = mx.grad(lambda x: layer(x)[0].sum())(x)
    np.testing.assert_allclose(np.array(grad), np.array(expected), atol=1e-6)


def test_info_names_the_path_and_mlxseq_native_0_switches_it_off():
    code = "import mlxseq; from mlxseq.system import native; print(native.describe())"
    env = {**os.environ, "MLXSEQ_NATIVE": "0"}
    off = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert off.stdout.strip() == "MLX graph (MLXSEQ_NATIVE=0)"
    if native.available():  # a mistyped BLAS choice is named, not ignored
        env = {**os.environ, "MLXSEQ_NATIVE_BLAS": "mkll"}
        typo = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert typo.stdout.strip() == ("MLX graph (MLXSEQ_NATIVE_BLAS must be one of default, onednn, blas, mkl, "
                                       "got 'mkll')")
    line = native.describe()
    assert line.startswith("native on CPU") if native.available() else line.startswith("MLX graph (")


PRODUCTS_SCRIPT = """
import sys
import mlxseq, mlx.core as mx, numpy as np
from mlx.utils import tree_flatten
mx.random.seed(8)
arrays = {}
for kind, cls, kwargs in [("gru", mlxseq.GRU, {}), ("lstm_proj", mlxseq.LSTM, {"proj_size": 5}),
                          ("rnn", mlxseq.RNN, {})]:
    layer = cls(6, 9, num_layers=2, bidirectional=True, **kwargs)
    for steps, batch in [(2, 3), (13, 3), (13, 1)]:  # few steps: plain weights; more: packed once per scan
        x = mx.random.normal((batch, steps, 6))
        def loss(params):
            layer.update(params)
            out, final = layer(x)
            return (out * out).sum() + sum((f * f).sum() for f in final)
        value, grads = mx.value_and_grad(loss)(layer.trainable_parameters())
        arrays[f"{kind}/{steps}/{batch}/loss"] = np.array(value)
        arrays[f"{kind}/{steps}/{batch}/out"] = np.array(layer(x)[0])
        for name, g in tree_flatten(grads):
            arrays[f"{kind}/{steps}/{batch}/{name}"] = np.array(g)
from mlxseq.system import native
np.savez(sys.argv[1], **arrays, onednn_products=np.array(native._state["module"].onednn_products()))
"""


@needs_native
def test_onednn_and_cblas_products_give_the_same_numbers(tmp_path):
    if "oneDNN" not in native.describe():
        pytest.skip(f"oneDNN is not in use here: {native.describe()}")
    results = {}
    for choice in ("onednn", "blas"):
        env = {**os.environ, "MLXSEQ_NATIVE_BLAS": choice}
        code = "import mlxseq; from mlxseq.system import native; print(native.describe())"
        line = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert ("oneDNN" in line.stdout) == (choice == "onednn"), line.stdout + line.stderr
        out = tmp_path / f"{choice}.npz"
        done = subprocess.run([sys.executable, "-c", PRODUCTS_SCRIPT, str(out)], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        results[choice] = dict(np.load(out))
    # oneDNN took the products of the scans of 13 steps, none with MLXSEQ_NATIVE_BLAS=blas
    assert results["onednn"].pop("onednn_products") > 0 and results["blas"].pop("onednn_products") == 0
    assert results["onednn"].keys() == results["blas"].keys() and len(results["blas"]) > 50
    for name, value in results["onednn"].items():
        np.testing.assert_allclose(value, results["blas"][name], atol=2e-5, rtol=1e-4, err_msg=name)


def test_without_a_compiler_the_install_goes_on_without_the_extension(tmp_path):
    repo = Path(__file__).parents[2]
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed here")
    env = {**os.environ, "CXX": str(tmp_path / "no-compiler")}
    done = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp_path / "lib"),
                           "--build-temp", str(tmp_path / "temp")], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "the native recurrence was not built; the pure-MLX path will be used" in done.stderr
    assert not list((tmp_path / "lib").rglob("_native*"))
