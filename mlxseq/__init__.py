"""mlxseq: recurrent sequence models on MLX, with PyTorch's parameters and numbers.

Public API::

    mlxseq.RNN, mlxseq.GRU, mlxseq.LSTM                # layers (mlxseq.layers)
    mlxseq.RNNCell, mlxseq.GRUCell, mlxseq.LSTMCell    # single steps
    mlxseq.load(path_or_repo_id)                      # a model folder (mlxseq.checkpoint)
    mlxseq.convert.load_torch_checkpoint(path)        # PyTorch files without torch
    mlxseq.load_torch_weights(module, path_or_state)  # a whole torch model's weights onto an MLX model
    mlxseq.data                                       # corpora, tokenizers, length-bucketed batches
    mlxseq.greedy_decode, beam_search, sample, make_sampler   # decoding over StepModel.step
    mlxseq.translate(texts, model=...), mlxseq.Translator     # seq2seq translation
    mlxseq.generate(prompt, model=...), mlxseq.Generator      # language-model text generation
    mlxseq.train("config.yaml", overrides=["training.lr=2e-3"])  # a run folder (mlxseq.training)
    mlxseq.TextClassifier, SequenceTagger, TimeSeriesForecaster  # classifier, tagger, forecaster folders
    mlxseq.FrameClassifier, FrameTagger                      # the same over feature vectors (audio, arrays)
    mlxseq.ClassifierEnsemble.load([folder, ...])             # classifiers averaged
    mlxseq.predict(model, texts), mlxseq.evaluate(model, data)   # what mlxseq predict / evaluate print
"""

# The optimized BLAS must be in place before anything imports mlx.core.
from mlxseq.system import blas as _blas

_blas.preload()

from mlxseq._version import __version__  # noqa: E402
from mlxseq import data  # noqa: E402
from mlxseq.checkpoint import load  # noqa: E402
from mlxseq.decoding.beams import beam_search  # noqa: E402
from mlxseq.decoding.search import Hypothesis, StepModel, generate_steps, greedy_decode, sample  # noqa: E402
from mlxseq.layers import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell  # noqa: E402
from mlxseq.decoding.sampling import make_repetition_penalty, make_sampler  # noqa: E402
from mlxseq.pipelines.generator import Generator, generate  # noqa: E402
from mlxseq.runs.from_config import train_from_config as train  # noqa: E402
from mlxseq.pipelines.translator import Translator, translate  # noqa: E402
from mlxseq.pipelines.classifier import ClassifierEnsemble, TextClassifier  # noqa: E402
from mlxseq.pipelines.tagger import SequenceTagger  # noqa: E402
from mlxseq.pipelines.frame_classifier import FrameClassifier  # noqa: E402
from mlxseq.pipelines.frame_tagger import FrameTagger  # noqa: E402
from mlxseq.pipelines.forecaster import TimeSeriesForecaster  # noqa: E402
from mlxseq.pipelines.transcriber import Transcriber  # noqa: E402
from mlxseq.pipelines.prediction import evaluate, predict  # noqa: E402
from mlxseq.training.averaging import average_folders  # noqa: E402
from mlxseq.convert.module_weights import load_torch_weights  # noqa: E402

__all__ = [
    "__version__",
    "data",
    "RNN",
    "GRU",
    "LSTM",
    "RNNCell",
    "GRUCell",
    "LSTMCell",
    "load",
    "load_torch_weights",
    "Transcriber",
    "average_folders",
    "StepModel",
    "Hypothesis",
    "greedy_decode",
    "beam_search",
    "sample",
    "generate_steps",
    "make_sampler",
    "make_repetition_penalty",
    "Translator",
    "translate",
    "Generator",
    "generate",
    "train",
    "TextClassifier",
    "ClassifierEnsemble",
    "SequenceTagger",
    "FrameClassifier",
    "FrameTagger",
    "TimeSeriesForecaster",
    "predict",
    "evaluate",
]
