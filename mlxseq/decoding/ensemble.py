"""Several models decoding as one: at each step the mean of their log-probabilities.

:class:`Ensemble` is a :class:`~mlxseq.decoding.search.StepModel` over members that share a
target vocabulary (OpenNMT-py's ensemble decoding): ``encode`` runs every member's encoder,
the state holds every member's state, and ``step`` returns

    log p(y) = 1/M * sum_m log p_m(y)            (B, V), the searches then normalise it

so greedy search, beam search and sampling work on it unchanged. ``state["attention"]`` is
the members' mean attention (for ``replace_unk`` and heatmaps).
"""

from __future__ import annotations

import mlx.core as mx

from mlxseq.decoding.beams import expand_beams


class Ensemble:
    def __init__(self, members: list):
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two models")
        self.members = list(members)
        self.args = members[0].args  # special ids and sizes the searches read: the members agree on them

    def encode(self, src: mx.array, lengths: mx.array) -> list:
        return [member.encode(src, lengths) for member in self.members]

    def init_state(self, encoded: list) -> dict:
        states = [member.init_state(e) for member, e in zip(self.members, encoded)]
        return {"members": states, "attention": _mean_attention(states)}

    def expand_beams(self, state: dict, K: int) -> dict:
        """Each member's state for K beams of each source (its own ``expand_beams`` where it has one)."""
        members = [expand_beams(member, s, K) for member, s in zip(self.members, state["members"])]
        return {"members": members, "attention": mx.repeat(state["attention"], K, axis=0)}

    def step(self, tokens: mx.array, state: dict):
        log_probs, states = [], []
        for member, member_state in zip(self.members, state["members"]):
            logits, new = member.step(tokens, member_state)
            log_probs.append(logits.astype(mx.float32) - mx.logsumexp(logits.astype(mx.float32), axis=-1, keepdims=True))
            states.append(new)
        return sum(log_probs) / len(log_probs), {"members": states, "attention": _mean_attention(states)}

    def eval(self):
        for member in self.members:
            member.eval()
        return self


def _mean_attention(states: list) -> mx.array:
    """The mean of the members' attention weights (B, S), over the shortest source axis they share."""
    weights = [s["attention"] for s in states if "attention" in s]
    width = min(w.shape[-1] for w in weights)
    return sum(w[..., :width] for w in weights) / len(weights)
