"""Write converted translation models as ``model_type: seq2seq`` folders.

Converters produce the seq2seq :class:`~mlxseq.models.seq2seq.ModelArgs`, the weights
under mlxseq's parameter names, and the source and target vocabularies already in
mlxseq's id order (``<pad> <unk> <s> </s>`` at ids 0-3). :func:`remap_rows` moves a
vocabulary-indexed matrix from the original ids to mlxseq's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

# Output bias of a row the original model has no token for: its probability is 0 in
# float32 (exp(-1e9) underflows) without -inf reaching any arithmetic.
ABSENT_LOGIT = -1e9


def remap_rows(matrix: np.ndarray, new_to_old: Sequence[int | None], fill: float = 0.0) -> np.ndarray:
    """``matrix`` with row ``i`` taken from original row ``new_to_old[i]``; ``None`` rows get ``fill``."""
    out = np.full((len(new_to_old),) + matrix.shape[1:], fill, dtype=np.float32)
    kept = [i for i, old in enumerate(new_to_old) if old is not None]
    out[kept] = matrix[[new_to_old[i] for i in kept]]
    return out


def save_seq2seq_folder(out_dir, args, weights: Mapping[str, np.ndarray], source_tokens: Sequence[str],
                        target_tokens: Sequence[str], readme: str) -> Path:
    """Build the model, load ``weights`` strictly, and write model, word tokenizers and README.

    Identical source and target vocabularies are saved once as a joint tokenizer.
    """
    import mlx.core as mx

    from mlxseq.checkpoint import save_model
    from mlxseq.data import TokenizerPair, WordTokenizer
    from mlxseq.models.seq2seq import build_model

    model = build_model(args)
    model.load_weights([(name, mx.array(np.asarray(value, dtype=np.float32))) for name, value in weights.items()])
    model.eval()
    source = WordTokenizer(source_tokens)
    target = source if list(source_tokens) == list(target_tokens) else WordTokenizer(target_tokens)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    TokenizerPair(source, target).save(folder)  # before config.json, which marks a complete folder
    return save_model(folder, model, "seq2seq", args, readme=readme)
