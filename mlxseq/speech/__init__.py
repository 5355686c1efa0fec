"""Speech recognition pieces: decoding CTC frame scores into label sequences.

The CTC loss itself is :func:`mlxseq.losses.ctc_loss`.
"""

from mlxseq.speech.ctc_decoding import ctc_greedy_decode, ctc_prefix_beam_search

__all__ = ["ctc_greedy_decode", "ctc_prefix_beam_search"]
