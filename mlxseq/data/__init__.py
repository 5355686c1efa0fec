"""Data: corpus readers with file:line errors (parallel and plain text, labelled TSV, CoNLL-U,
CSV time series), tokenizers, a per-feature normaliser, and shape-bounded batching."""

from mlxseq.data.batching import (
    BatchSampler,
    PairBatch,
    StreamBatcher,
    pad_batch,
    pad_frames,
    pad_pairs,
    pair_lengths,
    padded_length,
)
from mlxseq.data.corpus import (
    DataError,
    MissingFileError,
    ParallelCorpus,
    ReadStats,
    read_lines,
    read_stream_lines,
    read_parallel,
    read_text,
)
from mlxseq.data.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    CharTokenizer,
    SentencePieceConfig,
    SentencePieceTokenizer,
    Tokenizer,
    TokenizerPair,
    WordTokenizer,
    load_tokenizer,
    train_sentencepiece_pair,
)
from mlxseq.data.conllu import Sentence, format_conllu, read_conllu
from mlxseq.data.frames import FRAME_SUFFIXES, read_frames, standardise
from mlxseq.data.labelled import HEADER_OPTIONS, LabelledCorpus, read_labelled
from mlxseq.data.nested_spans import SpanTable, nested_spans
from mlxseq.data.spelling import CHARS_NAME, batch_spellings, read_chars, spell
from mlxseq.data.timeseries import Normaliser, TimeSeries, read_timeseries

__all__ = [
    "DataError", "MissingFileError", "ParallelCorpus", "ReadStats", "read_parallel", "read_lines", "read_stream_lines", "read_text",
    "Tokenizer", "SentencePieceConfig", "SentencePieceTokenizer", "CharTokenizer", "WordTokenizer",
    "TokenizerPair", "load_tokenizer", "train_sentencepiece_pair",
    "PAD_ID", "UNK_ID", "BOS_ID", "EOS_ID", "SPECIAL_TOKENS",
    "BatchSampler", "StreamBatcher", "PairBatch", "pad_batch", "pad_frames", "pad_pairs", "pair_lengths", "padded_length",
    "LabelledCorpus", "read_labelled", "HEADER_OPTIONS", "SpanTable", "nested_spans", "CHARS_NAME", "spell", "batch_spellings", "read_chars", "Sentence", "read_conllu", "format_conllu",
    "TimeSeries", "read_timeseries", "Normaliser", "read_frames", "standardise", "FRAME_SUFFIXES",
]
