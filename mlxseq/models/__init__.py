"""Model types by the ``model_type`` of a folder's ``config.json``.

Each model type lives in a module with a ``ModelArgs`` dataclass and a
``build_model(args) -> mlx.nn.Module`` function.
"""

from importlib import import_module

MODEL_TYPES = {
    "recurrent": "mlxseq.models.recurrent",
    "seq2seq": "mlxseq.models.seq2seq",
    "lm": "mlxseq.models.language_model",
    "classifier": "mlxseq.models.classifier",
    "tagger": "mlxseq.models.tagger",
    "forecaster": "mlxseq.models.forecaster",
    "speech_ctc": "mlxseq.models.speech_ctc",
}


def model_module(model_type: str):
    """The module implementing ``model_type``; ValueError naming the known types otherwise."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown model_type {model_type!r}; known: {', '.join(sorted(MODEL_TYPES))}")
    return import_module(MODEL_TYPES[model_type])
