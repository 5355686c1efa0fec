"""Global attention over an encoder's memory: dot, general (Luong) and additive (Bahdanau).

Scores for a query ``q`` (B, Tq, Dq) against memory ``m`` (B, S, Dm):

    dot:       q . m_s                                  (Dq == Dm)
    general:   q . (W m_s)                              W: (Dq, Dm)
    additive:  v . tanh(W_q q + W_k m_s)                W_q: (A, Dq), W_k: (A, Dm), v: (A,)

(additive is Bahdanau et al.'s score; Luong et al. call it "concat" and OpenNMT-py
"mlp"). The memory-side part of each score is computed once per source by
:meth:`Attention.project_keys`, not at every decoder step. Scores at padded memory
positions are -inf before the softmax, so attention never looks at padding.
"""

import mlx.core as mx
import mlx.nn as nn

from mlxseq.layers.activations import tanh

KINDS = ("dot", "general", "additive")
ALIASES = {"bahdanau": "additive", "mlp": "additive", "concat": "additive", "luong": "general"}


class Attention(nn.Module):
    """Global attention.

    Args:
        query_size (int): Dq.
        memory_size (int): Dm.
        kind (str): ``"dot"``, ``"general"`` or ``"additive"`` (aliases: ``"bahdanau"``,
            ``"mlp"``, ``"concat"`` for additive; ``"luong"`` for general).
        attention_size (int): A, for additive; default Dq.
    """

    def __init__(self, query_size: int, memory_size: int, kind: str = "general", attention_size: int | None = None):
        super().__init__()
        kind = ALIASES.get(kind, kind)
        if kind not in KINDS:
            raise ValueError(f"attention kind must be one of {KINDS + tuple(ALIASES)}, got {kind!r}")
        if kind == "dot" and query_size != memory_size:
            raise ValueError(f"dot attention needs query_size == memory_size, got {query_size} and {memory_size}")
        self.kind = kind
        if kind == "general":
            self.linear_in = nn.Linear(memory_size, query_size, bias=False)
        elif kind == "additive":
            size = attention_size or query_size
            self.query_proj = nn.Linear(query_size, size, bias=True)
            self.key_proj = nn.Linear(memory_size, size, bias=False)
            self.v = nn.Linear(size, 1, bias=False)

    def project_keys(self, memory: mx.array) -> mx.array:
        """The memory-side part of the scores, once per source: (B, S, Dq or A)."""
        if self.kind == "general":
            return self.linear_in(memory)
        if self.kind == "additive":
            return self.key_proj(memory)
        return memory

    def __call__(self, query: mx.array, keys: mx.array, memory: mx.array, mask: mx.array):
        """Attend.

        Args:
            query: (B, Tq, Dq).
            keys: ``project_keys(memory)``.
            memory: (B, S, Dm) the values.
            mask: (B, S) booleans, True at valid memory positions.

        Returns:
            ``(context (B, Tq, Dm), weights (B, Tq, S))``.
        """
        if self.kind == "additive":
            hidden = tanh(self.query_proj(query)[:, :, None, :] + keys[:, None, :, :])  # (B, Tq, S, A)
            scores = self.v(hidden).squeeze(-1)  # (B, Tq, S)
        else:
            scores = query @ keys.transpose(0, 2, 1)  # (B, Tq, S)
        scores = mx.where(mask[:, None, :], scores, -mx.inf)
        weights = mx.softmax(scores, axis=-1, precise=True)
        return weights @ memory, weights
