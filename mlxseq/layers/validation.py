"""Checks of the arguments of a recurrent call, with errors that say what was expected."""

import mlx.core as mx
import numpy as np


def check_input(x, input_size):
    """Return ``(x as (B, T, D), batched)`` or raise ValueError."""
    if not isinstance(x, mx.array):
        if type(x).__name__ == "PackedSequence":
            raise ValueError(
                "input is a torch PackedSequence; pass the padded batch as an mlx.core.array (B, T, D) and the "
                "sequence lengths as lengths=: the layer then gives what pack_padded_sequence + pad_packed_sequence give")
        raise ValueError(f"input must be an mlx.core.array, got {type(x).__name__}")
    if x.ndim not in (2, 3):
        raise ValueError(
            f"input must have shape (B, T, D) or unbatched (T, D) with D={input_size}, got shape {tuple(x.shape)}"
        )
    if x.shape[-1] != input_size:
        raise ValueError(f"input must have D={input_size} features in its last axis, got shape {tuple(x.shape)}")
    if x.shape[-2] == 0:
        raise ValueError(f"input must have at least one time step, got shape {tuple(x.shape)}")
    if not mx.issubdtype(x.dtype, mx.floating):
        raise ValueError(f"input must be a floating-point array, got dtype {x.dtype}")
    if x.ndim == 2:
        return x[None], False
    return x, True


def check_lengths(lengths, batch, steps):
    """Return ``lengths`` as an int32 ``(B,)`` array with values in [1, T], or raise ValueError."""
    if isinstance(lengths, mx.array):
        if not mx.issubdtype(lengths.dtype, mx.integer):
            raise ValueError(f"lengths must be integers, got dtype {lengths.dtype}")
        if tuple(lengths.shape) != (batch,):
            raise ValueError(f"lengths must have shape (B,) = ({batch},), got shape {tuple(lengths.shape)}")
        try:
            values = np.array(lengths)
        except ValueError:
            # Traced inside mx.compile (or another transformation): the values cannot be
            # read without evaluating the graph; shape and dtype are checked above.
            return lengths.astype(mx.int32)
    else:
        values = np.asarray(lengths)
        if values.dtype == object or not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"lengths must be integers, got {values.dtype} values")
    if values.shape != (batch,):
        raise ValueError(f"lengths must have shape (B,) = ({batch},), got shape {tuple(values.shape)}")
    if values.size and (values.min() < 1 or values.max() > steps):
        bad = values[(values < 1) | (values > steps)][0]
        raise ValueError(f"lengths must lie in [1, T={steps}], got {int(bad)}")
    return mx.array(values.astype(np.int32))


def check_state(states, shapes, batched):
    """Validate initial states against their expected batched ``shapes``.

    Returns the states with a batch axis (or None when not given).
    """
    if states is None:
        return None
    names = ("h_0", "c_0")
    checked = []
    for name, state, shape in zip(names, states, shapes):
        expected = shape if batched else (shape[0], shape[2])
        if not isinstance(state, mx.array):
            raise ValueError(f"initial state {name} must be an mlx.core.array of shape {expected}, got {type(state).__name__}")
        if tuple(state.shape) != expected:
            raise ValueError(f"initial state {name} must have shape {expected}, got {tuple(state.shape)}")
        checked.append(state if batched else state[:, None])
    return tuple(checked)
