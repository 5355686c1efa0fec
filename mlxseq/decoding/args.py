"""Decoding settings of translation, stated once: :class:`DecodingArgs`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlxseq._version import __version__

MAX_BEAM_SIZE = 1000
MAX_BATCH_SIZE = 10_000
MAX_LENGTH_RATIO = 100.0
MAX_OUTPUT_TOKENS = 100_000


@dataclass
class DecodingArgs:
    """How a translation model decodes: every entry point (``mlxseq translate``/``evaluate``,
    :class:`mlxseq.Translator`, validation during training) builds these, and states no default
    of its own. :meth:`signature` names the settings used, as sacrebleu's signatures do."""

    beam_size: int = 5  # 1 means greedy search
    length_penalty: float = 0.6  # alpha; 0 ranks by the raw sum of log-probabilities
    length_penalty_kind: str = "gnmt"  # "gnmt": ((5 + len) / 6) ** alpha; "average": len ** alpha
    max_length_ratio: float = 2.0  # output tokens at most ratio * source tokens + offset
    max_length_offset: int = 10
    n_best: int = 1  # hypotheses returned per input
    batch_size: int = 32  # sentences per batch
    max_input_tokens: int = 250  # longer inputs are an error (the model never saw such lengths)
    allow_unk: bool = False  # let the model produce <unk>
    max_length: int = 0  # a fixed limit of output tokens instead of the ratio and offset; 0: none
    # "mlxseq" or "opennmt": OpenNMT-py's beam search and length penalty, nothing banned
    # (for models converted from OpenNMT-py; see mlxseq.decoding.opennmt_search)
    search: str = "mlxseq"
    # let the model produce <unk> and write the most attended source word in its place
    # (OpenNMT-py's -replace_unk); word-level tokenizers only
    replace_unk: bool = False

    def __post_init__(self):
        # Upper bounds keep a mistyped option from allocating without limit: a beam of
        # b over a batch of n holds n * b * vocabulary scores at every step.
        if not 1 <= self.beam_size <= MAX_BEAM_SIZE:
            raise ValueError(f"beam_size must be in [1, {MAX_BEAM_SIZE}], got {self.beam_size}")
        if not 1 <= self.n_best <= self.beam_size:
            raise ValueError(f"n_best must be in [1, beam_size={self.beam_size}], got {self.n_best}")
        if not 0 < self.max_length_ratio <= MAX_LENGTH_RATIO:
            raise ValueError(f"max_length_ratio must be in (0, {MAX_LENGTH_RATIO}], got {self.max_length_ratio}")
        if not 0 <= self.max_length_offset <= MAX_OUTPUT_TOKENS:
            raise ValueError(f"max_length_offset must be in [0, {MAX_OUTPUT_TOKENS}], got {self.max_length_offset}")
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be in [1, {MAX_BATCH_SIZE}], got {self.batch_size}")
        if self.search not in ("mlxseq", "opennmt"):
            raise ValueError(f"search must be 'mlxseq' or 'opennmt', got {self.search!r}")
        if not 0 <= self.max_length <= MAX_OUTPUT_TOKENS:
            raise ValueError(f"max_length must be in [0, {MAX_OUTPUT_TOKENS}], got {self.max_length}")
        if not math.isfinite(self.length_penalty):
            raise ValueError(f"length_penalty must be a finite number, got {self.length_penalty}")
        if self.length_penalty_kind not in ("gnmt", "average"):
            raise ValueError(f"length_penalty_kind must be 'gnmt' or 'average', got {self.length_penalty_kind!r}")

    def signature(self) -> str:
        """The settings that decide the output, e.g.
        ``beam:5|lp:0.6(gnmt)|max:2.0x+10|search:mlxseq|unk:no|mlxseq:0.1.0``."""
        search = "greedy" if self.beam_size == 1 else f"beam:{self.beam_size}|lp:{self.length_penalty:g}({self.length_penalty_kind})"
        limit = f"max:{self.max_length}" if self.max_length else f"max:{self.max_length_ratio:g}x+{self.max_length_offset}"
        unk = "replace" if self.replace_unk else "yes" if self.allow_unk else "no"
        return f"{search}|{limit}|search:{self.search}|unk:{unk}|mlxseq:{__version__}"
