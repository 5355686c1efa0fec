"""The Hub front matter every task's model card starts with."""

from types import SimpleNamespace

import numpy as np
import yaml

from mlxseq.tasks.model_card import card_heading


def test_cards_start_with_hub_front_matter_holding_the_validation_metrics():
    config = SimpleNamespace(output_dir="runs/de-en", task="translation")
    summary = {"step": 100, "epoch": 2, "metrics": {"bleu": np.float64(36.12341), "loss": 1.5, "decoding": "beam 5"}}
    lines = card_heading(config, "seq2seq translation model", summary, "translation",
                         ["data/train.de.gz", ["data/train.en.gz"], "data/val.de.gz", None])
    end = lines.index("---", 1)
    assert lines[0] == "---" and lines[end + 2] == "# de-en: seq2seq translation model"
    header = yaml.safe_load("\n".join(lines[1:end]))
    assert header["library_name"] == "mlxseq" and header["pipeline_tag"] == "translation"
    assert header["tags"] == ["mlxseq", "mlx", "recurrent", "translation"]
    assert header["datasets"] == ["train.de.gz", "train.en.gz", "val.de.gz"]
    result = header["model-index"][0]["results"][0]
    assert header["model-index"][0]["name"] == "de-en" and result["task"] == {"type": "translation"}
    assert result["metrics"] == [{"type": "bleu", "value": 36.1234}, {"type": "loss", "value": 1.5}]


def test_a_card_without_validation_has_no_model_index():
    config = SimpleNamespace(output_dir="runs/lm", task="lm")
    lines = card_heading(config, "recurrent language model", {"step": 1, "epoch": 0}, "text-generation", ["t.txt"])
    header = yaml.safe_load("\n".join(lines[1:lines.index("---", 1)]))
    assert "model-index" not in header and header["datasets"] == ["t.txt"]
