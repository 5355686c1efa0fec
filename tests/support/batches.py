"""Pinning whether decoding shrinks its batches (it does on the CPU only), for tests of either way."""

import mlxseq.decoding.beams
import mlxseq.decoding.opennmt_search
import mlxseq.decoding.search


def batches_shrink(monkeypatch, on: bool) -> None:
    """Make rows and sources that are done leave the model's batch (on) or stay (off), on any device."""
    for module in (mlxseq.decoding.search, mlxseq.decoding.beams, mlxseq.decoding.opennmt_search):
        monkeypatch.setattr(module, "shrinks_batches", lambda: on)
