"""Decoding: turning a model's next-token scores into sequences.

Modules:

- ``search``: greedy decoding and sampling over any :class:`StepModel` (``init_state`` + ``step``);
- ``beams``: beam search over the same, with GNMT or average length penalties;
- ``opennmt_search``: OpenNMT-py's beam search, for checkpoints converted from it;
- ``args``: :class:`DecodingArgs`, translation's decoding settings with their defaults and signature;
- ``sampling``: samplers (temperature, top-k, top-p, min-p) and logits processors
  (repetition penalty), as in mlx-lm.

A new decoding method goes in its own module here and takes a :class:`StepModel`.
"""

from mlxseq.decoding.args import DecodingArgs
from mlxseq.decoding.beams import beam_search, expand_beams
from mlxseq.decoding.opennmt_search import opennmt_beam_search
from mlxseq.decoding.sampling import make_repetition_penalty, make_sampler
from mlxseq.decoding.search import (GenerationStep, Hypothesis, StepModel, generate_steps, greedy_decode,
                                    length_penalty_divisor, sample)

__all__ = ["DecodingArgs", "StepModel", "Hypothesis", "GenerationStep", "greedy_decode", "sample", "beam_search",
           "expand_beams", "generate_steps", "length_penalty_divisor", "opennmt_beam_search", "make_sampler",
           "make_repetition_penalty"]
