"""Inference on model folders: one pipeline per kind of model, each loaded from a folder
(path or Hub id) and used from Python, the command line and the server.

- ``translator``: :class:`Translator` (seq2seq folders), ``mlxseq translate``;
- ``generator``: :class:`Generator` (language models), ``mlxseq generate``;
- ``classifier``: :class:`TextClassifier`, :class:`ClassifierEnsemble`;
- ``tagger``: :class:`SequenceTagger`;
- ``forecaster``: :class:`TimeSeriesForecaster`;
- ``prediction``: ``mlxseq predict`` / ``mlxseq evaluate`` for the last three, found by the
  folder's ``model_type``;
- ``attention_plots``: attention heatmaps of translations.
"""
