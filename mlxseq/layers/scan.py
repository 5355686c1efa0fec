"""The time loop of one layer and direction, with a hand-written backward pass.

``scan(math, xp, h0, extra0, w_hh, b_hh, w_hr, mask, reverse)`` runs

    for t in 0..T-1 (or T-1..0 when reverse):
        hh  = h @ W_hh^T (+ b_hh)                    # (B, G)  one matmul per step
        y   = gates(xp[t], hh, h, extra)             # (B, H)  one fused kernel
        h'  = y @ W_hr^T  if projected else y        # (B, P)
        h, extra = h', extra'  where mask[t]; else kept

with the input projections ``xp`` for all steps computed beforehand in one
matmul. The backward pass (``mx.custom_function``) walks the steps in the other
direction with one fused kernel and one matmul per step, and forms the weight
gradients afterwards as single matmuls over all steps:
``dW_hh = sum_t dhh_t^T h_{t-1}``, as cuDNN does. Autodiff through the unrolled
loop would do a small weight-gradient matmul at every step instead.

Masking (variable lengths): ``mask[t, b]`` is ``t < length[b]``. Stepping forward,
a masked step keeps the state, so the final state is the one at each
sequence's last valid element; stepping backward (``reverse``), the state
stays at its initial value through the padding and starts at the last valid
element. Outputs at masked steps are 0, as after ``pad_packed_sequence``.

Memory is linear in T: what the backward pass needs leaves the forward as one
stacked ``(T, B, ...)`` array per component (a custom function's outputs each
hold the list of their siblings, so O(T) outputs would cost O(T^2)). A call
that is not traced by a transformation (inference; :func:`is_traced`) keeps
nothing for a backward pass and evaluates long sequences ``EVAL_CHUNK`` steps
at a time, so its graph never holds more than a chunk.
"""

from functools import lru_cache

import mlx.core as mx

from mlxseq.layers.gates import GateMath
from mlxseq.layers.quantized import is_quantized, product
from mlxseq.system import native


# Untraced (inference) scans longer than this evaluate their steps chunk by chunk,
# so the graph held at once is at most this many steps, whatever the length.
EVAL_CHUNK = 256


@lru_cache(maxsize=None)
def _compiled(fn):
    return mx.compile(fn)


_probe_calls = 0


def _count_call(x):
    global _probe_calls
    _probe_calls += 1
    return x


_probe = mx.compile(_count_call)


def is_traced(x: mx.array) -> bool:
    """Whether ``x`` is traced by a transformation (``mx.grad``, ``mx.vjp``, ``mx.compile``, ...),
    where evaluating it is impossible or would cut the graph; also True when compilation is off.

    ``mx.compile`` runs a function's Python body again whenever its inputs are
    tracers, and never once it has traced it for their shape and dtype: a
    compiled function that counts its calls tells (two graph nodes, never evaluated).
    """
    probe_input = x.reshape(-1)[:1]
    before = _probe_calls
    _probe(probe_input)
    if _probe_calls == before:
        return False
    before = _probe_calls
    _probe(probe_input)  # the first call for a dtype traces it; the second one tells
    return _probe_calls != before


def _merge(m, new, old):
    return mx.where(m, new, old)


def _masked_out(m, new):
    return mx.where(m, new, 0.0)


def _split_grad(m, d_out, d_carry):
    # out_t = m * h_new and h_t = m ? h_new : h_{t-1}
    d_new = mx.where(m, d_out + d_carry, 0.0)
    d_keep = mx.where(m, 0.0, d_carry)
    return d_new, d_keep


def _split_extra_grad(m, d_carry):
    return mx.where(m, d_carry, 0.0), mx.where(m, 0.0, d_carry)


class _Layout:
    """Positions of the optional arguments of a scan's custom function."""

    def __init__(self, num_extra, has_bias_hh, projected, num_params, masked):
        self.num_extra = num_extra
        i = 2 + num_extra
        self.w_hh = i
        self.b_hh = i + 1 if has_bias_hh else None
        i += 1 + has_bias_hh
        self.w_hr = i if projected else None
        i += projected
        self.params = slice(i, i + num_params)
        i += num_params
        self.mask = i if masked else None
        self.num_args = i + masked


@lru_cache(maxsize=None)
def _scan_function(math: GateMath, has_bias_hh: bool, projected: bool, masked: bool, reverse: bool):
    """Build (once per configuration) the custom function for one scan."""
    layout = _Layout(math.num_extra, has_bias_hh, projected, math.num_params, masked)
    gates_fwd = _compiled(math.forward) if math.forward else None
    gates_bwd = _compiled(math.backward) if math.backward else None
    merge = _compiled(_merge)
    masked_out = _compiled(_masked_out)
    split_grad = _compiled(_split_grad)
    split_extra_grad = _compiled(_split_extra_grad)
    ne = math.num_extra
    num_saved = 2 + 2 * ne + math.num_saved

    def steps(T):
        return range(T - 1, -1, -1) if reverse else range(T)

    def stack_in_time_order(values):
        # A reverse scan stacks its steps in the order they ran, then reverses the stack: a
        # transformation walks the graph from a node's first input on, and from the last step
        # made it went down all T steps at once (the gradient of a 10,000-step bidirectional
        # LSTM overflowed the C++ stack); from the first one made it goes one step at a time.
        return mx.stack(values[::-1])[::-1] if reverse else mx.stack(values)

    def forward(*args):
        xp, h = args[0], args[1]
        extra = tuple(args[2 : 2 + ne])
        w_hh_t = args[layout.w_hh].T
        b_hh = args[layout.b_hh] if has_bias_hh else None
        w_hr_t = args[layout.w_hr].T if projected else None
        params = args[layout.params]
        mask = args[layout.mask] if masked else None
        T = xp.shape[0]
        # Only a traced call can be differentiated: an untraced one (inference) keeps
        # nothing for the backward pass and evaluates long sequences chunk by chunk.
        traced = is_traced(xp)
        evaluate_chunks = not traced and T > EVAL_CHUNK
        outs = [None] * T
        # What the backward step at t needs, one list per component indexed by t:
        # the step's states h_{t-1}, extra_{t-1}, its new extra states, y_t and
        # what its gates kept. Each list leaves as one stacked (T, B, ...) array:
        # a custom function with O(T) outputs costs O(T^2) memory, since MLX keeps
        # each output's list of siblings.
        saved = [[None] * T for _ in range(num_saved if traced else 0)]
        blocks = {}  # first time index -> evaluated (chunk, B, P) outputs (untraced long scans)
        for k, t in enumerate(steps(T)):
            if math.step_forward is not None:
                y, extra_new, step_saved = math.step_forward(xp[t], h, w_hh_t)
            elif math.fused_input:
                y, extra_new, step_saved = gates_fwd(product(h, w_hh_t, add=xp[t]), None, h, *extra, *params)
            else:
                hh = product(h, w_hh_t, add=b_hh)  # (B, G)
                y, extra_new, step_saved = gates_fwd(xp[t], hh, h, *extra, *params)
            h_new = product(y, w_hr_t) if projected else y
            for component, value in zip(saved, (h, *extra, *extra_new, y, *step_saved)):
                component[t] = value
            if masked:
                m = mask[t]
                outs[t] = masked_out(m, h_new)
                h = merge(m, h_new, h)
                extra = tuple(merge(m, e_new, e) for e_new, e in zip(extra_new, extra))
            else:
                outs[t] = h = h_new
                extra = extra_new
            if evaluate_chunks and (k + 1) % EVAL_CHUNK == 0:
                # The chunk's outputs become one evaluated (chunk, B, P) block in time order.
                done = sorted(steps(T)[k + 1 - EVAL_CHUNK : k + 1])
                block = mx.stack([outs[i] for i in done])
                mx.eval(block, h, *extra)
                blocks[done[0]] = block
                for i in done:
                    outs[i] = None
        if not traced:
            rest = [i for i in range(T) if outs[i] is not None]
            if rest:
                blocks[rest[0]] = mx.stack([outs[i] for i in rest])
            ordered = [blocks[start] for start in sorted(blocks)]
            output = mx.concatenate(ordered) if len(ordered) > 1 else ordered[0]
            empty = mx.zeros((0,), dtype=xp.dtype)
            return (output, h, *extra, *(empty for _ in range(num_saved)))
        return (stack_in_time_order(outs), h, *extra, *(stack_in_time_order(component) for component in saved))

    def backward(primals, cotangents, outputs):
        xp = primals[0]
        w_hh = primals[layout.w_hh]
        w_hr = primals[layout.w_hr] if projected else None
        params = tuple(primals[layout.params])
        mask = primals[layout.mask] if masked else None
        T = xp.shape[0]
        d_out = cotangents[0]
        dh = cotangents[1]
        d_extra = tuple(cotangents[2 : 2 + ne])
        saved = outputs[2 + ne :]  # (T, B, ...) each, in the order forward stacked them
        d_xh, d_hh, d_hnew = [None] * T, [None] * T, [None] * T
        for t in reversed(steps(T)):
            h_prev = saved[0][t]
            extra_prev = tuple(s[t] for s in saved[1 : 1 + ne])
            extra_new = tuple(s[t] for s in saved[1 + ne : 1 + 2 * ne])
            step_saved = tuple(s[t] for s in saved[2 + 2 * ne :])
            if masked:
                m = mask[t]
                d_new, dh_keep = split_grad(m, d_out[t], dh)
                pairs = [split_extra_grad(m, d) for d in d_extra]
                d_extra_new = tuple(p[0] for p in pairs)
                d_extra_keep = tuple(p[1] for p in pairs)
            else:
                d_new = d_out[t] + dh
                d_extra_new = d_extra
            dy = d_new @ w_hr if projected else d_new
            if math.step_backward is not None:
                dxh, dh = math.step_backward(dy, h_prev, step_saved, w_hh)
                dhh, d_extra_prev = dxh, ()
            else:
                dxh, dhh, dh_direct, d_extra_prev = gates_bwd(
                    dy, d_extra_new, h_prev, extra_prev, extra_new, step_saved, params)
                dhh = dxh if dhh is None else dhh
                dh = dhh @ w_hh
                if dh_direct is not None:
                    dh = dh + dh_direct
            if masked:
                dh = dh + dh_keep
                d_extra_prev = tuple(a + b for a, b in zip(d_extra_prev, d_extra_keep))
            d_extra = d_extra_prev
            d_xh[t], d_hh[t], d_hnew[t] = dxh, dhh, d_new

        grads = [None] * layout.num_args
        grads[0] = mx.stack(d_xh)  # (T, B, G)
        grads[1] = dh
        grads[2 : 2 + ne] = d_extra
        B = xp.shape[1]
        dhh_all = grads[0] if math.fused_input or math.step_backward else mx.stack(d_hh)
        if math.weight_hh_grad is not None:
            grads[layout.w_hh] = math.weight_hh_grad(dhh_all, saved[0], saved[2 + 2 * ne :])
        dhh_all = dhh_all.reshape(T * B, -1)  # (T*B, G)
        if math.weight_hh_grad is None:
            grads[layout.w_hh] = dhh_all.T @ saved[0].reshape(T * B, -1)  # h_{t-1} of every step
        if math.num_params:
            grads[layout.params] = math.params_grad(
                grads[0], saved[1 : 1 + ne], saved[1 + ne : 1 + 2 * ne], params)
        if has_bias_hh:
            grads[layout.b_hh] = dhh_all.sum(axis=0)
        if projected:
            d_hnew_all = mx.stack(d_hnew).reshape(T * B, -1)  # (T*B, P)
            grads[layout.w_hr] = d_hnew_all.T @ saved[1 + 2 * ne].reshape(T * B, -1)  # y_t
        if masked:
            grads[layout.mask] = mx.zeros_like(mask)
        return tuple(grads)

    fn = mx.custom_function(forward)
    fn.vjp(backward)
    return fn, layout, forward


def scan(math, xp, h0, extra0, w_hh, b_hh=None, w_hr=None, mask=None, reverse=False, params=()):
    """Run one layer-direction over time.

    Args:
        math: the cell's :class:`GateMath`.
        xp: input projections ``(T, B, G)``, time-major, biases included
            (for GRU only ``b_ih``; pass ``b_hh`` separately).
        h0: initial hidden state ``(B, P)``; extra0: tuple of other initial
            states, LSTM ``(c0,)`` of shape ``(B, H)``.
        w_hh: ``(G, P)``; b_hh: ``(G,)`` for GRU; w_hr: ``(P, H)`` projection.
        mask: ``(T, B, 1)`` booleans, ``t < length``; None when all valid.
        reverse: walk from the last step to the first.
        params: the cell's other weights (``math.num_params`` arrays: LSTM peepholes ``(3H,)``).

    Returns:
        ``(outputs (T, B, P), h_T (B, P), extra_T)``.

    A float32 scan of a standard cell on the CPU runs as one native primitive (and its
    gradient as another) when mlxseq's extension is built (:mod:`mlxseq.system.native`).
    ``w_hh`` and ``w_hr`` may be :class:`~mlxseq.layers.quantized.QuantizedMatrix`: each step's
    products are then ``mx.quantized_matmul``, and the steps run as plain MLX operations (a
    custom function takes arrays only), which ``mx.compile`` traces and autodiff differentiates
    with respect to the inputs and states (the quantized matrices are constants, not parameters).
    """
    quantized = is_quantized(w_hh, w_hr)
    if not quantized and native.can_run(math, xp, params):
        return native.recurrence(math, xp, h0, extra0, w_hh, b_hh, w_hr, mask, reverse, is_traced(xp))
    fn, _, forward = _scan_function(math, b_hh is not None, w_hr is not None, mask is not None, reverse)
    args = [xp, h0, *extra0, w_hh]
    if b_hh is not None:
        args.append(b_hh)
    if w_hr is not None:
        args.append(w_hr)
    args.extend(params)
    if mask is not None:
        args.append(mask)
    results = forward(*args) if quantized else fn(*args)  # a custom function takes arrays only
    ne = math.num_extra
    return results[0], results[1], tuple(results[2 : 2 + ne])


def _scale_gate_rows(w, scale):
    """Multiply each gate's block of rows of ``w`` (G, ...) by its factor."""
    gates = len(scale)
    if is_quantized(w):
        return w.scale_rows(mx.repeat(mx.array(scale), w.shape[0] // gates))
    factors = mx.array(scale, dtype=w.dtype).reshape((gates,) + (1,) * w.ndim)
    return (w.reshape((gates, -1) + w.shape[1:]) * factors).reshape(w.shape)


def fold_input_weights(math, w_ih, w_hh, b_ih=None, b_hh=None, scale_gates=True):
    """``(w_ih, bias, w_hh, b_hh)`` as the scan computes with them: rows scaled by the cell's
    ``gate_scale`` (unless ``scale_gates`` is False: the native cells scale themselves), the
    biases folded into one input bias except GRU's ``b_hh`` (None where absent)."""
    if math.gate_scale and scale_gates:
        w_ih, w_hh = _scale_gate_rows(w_ih, math.gate_scale), _scale_gate_rows(w_hh, math.gate_scale)
        if b_ih is not None:
            b_ih, b_hh = _scale_gate_rows(b_ih, math.gate_scale), _scale_gate_rows(b_hh, math.gate_scale)
    if b_ih is None or math.bias_hh_in_step:
        return w_ih, b_ih, w_hh, b_hh
    return w_ih, b_ih + b_hh, w_hh, None


def project_inputs(math, x, w_ih, w_hh, b_ih=None, b_hh=None):
    """Input projections of all steps at once, in the form :func:`scan` takes.

    Args:
        x: inputs ``(..., D)``, any leading axes (time-major ``(T, B, D)`` for layers).

    Returns:
        ``(xp (..., G), w_hh, b_hh)``: the biases folded into ``xp`` except
        GRU's ``b_hh``, and rows scaled by the cell's ``gate_scale``.
    """
    w_ih, bias, w_hh, b_hh = fold_input_weights(math, w_ih, w_hh, b_ih, b_hh)
    # every step's input projection in one matmul; the bias rides in its accumulator
    return product(x, w_ih.T, add=bias), w_hh, b_hh  # (..., G)


def layer_scan(math, x, w_ih, w_hh, b_ih, b_hh, h0, extra0, w_hr=None, mask=None, reverse=False, params=()):
    """:func:`project_inputs` then :func:`scan` over ``x (T, B, D)``; returns what :func:`scan` does.

    Where the native recurrence runs, the projections are made inside it a chunk of steps at a
    time (and their gradients likewise): no ``(T, B, G)`` array of them is ever held.
    """
    if native.can_run(math, x, params) and not is_quantized(w_ih, w_hh, w_hr):
        # the weights as stored: no scaled copies of them (nor of their gradients) in the graph
        w_ih, bias, w_hh, b_hh = fold_input_weights(math, w_ih, w_hh, b_ih, b_hh, scale_gates=False)
        inputs = (x, w_hh, w_ih, h0, *extra0, bias, b_hh, w_hr)  # a gradient may be asked of any of them
        traced = any(is_traced(a) for a in inputs if a is not None)
        return native.recurrence(math, x, h0, extra0, w_hh, b_hh, w_hr, mask, reverse, traced, w_ih=w_ih, bias=bias)
    xp, w_hh, b_hh = project_inputs(math, x, w_ih, w_hh, b_ih, b_hh)  # xp (T, B, G)
    return scan(math, xp, h0, extra0, w_hh, b_hh, w_hr, mask, reverse, params)
