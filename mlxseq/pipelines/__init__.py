"""Inference on model folders: one pipeline per kind of model, each loaded from a folder
(path or Hub id) and used from Python, the command line and the server. Every pipeline has
``load(path_or_repo)``, ``predict(inputs)`` and ``evaluate(inputs, references)``, besides its own
richer methods (``translate`` with n-best and scores, ``stream``, ``tag``, ``forecast``).

- ``translator``: :class:`Translator` (seq2seq folders), ``mlxseq translate``;
- ``generator``: :class:`Generator` (language models), ``mlxseq generate``;
- ``classifier``: :class:`TextClassifier`, :class:`ClassifierEnsemble`;
- ``tagger``: :class:`SequenceTagger`;
- ``forecaster``: :class:`TimeSeriesForecaster`;
- ``prediction``: ``mlxseq predict`` / ``mlxseq evaluate`` for the last three, found by the
  folder's ``model_type``;
- ``attention_plots``: attention heatmaps of translations.
"""
