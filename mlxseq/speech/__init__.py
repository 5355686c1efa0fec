"""Speech recognition pieces: the audio front end and decoding CTC frame scores.

- :mod:`mlxseq.speech.features`: WAV reading, resampling, log-mel spectrograms (MLX),
  per-utterance normalisation, SpecAugment masking.
- :mod:`mlxseq.speech.ctc_decoding`: greedy and prefix beam search (with an LM hook).

The CTC loss itself is :func:`mlxseq.losses.ctc_loss`.
"""

from mlxseq.speech.ctc_decoding import ctc_greedy_decode, ctc_prefix_beam_search

__all__ = ["ctc_greedy_decode", "ctc_prefix_beam_search"]
