"""The cross-encoder served through ONNX Runtime on CPU: ``OnnxCrossScorer`` (export, variants, card: ``onnx.py``).

The export is ``onnx.py``'s (``sigmoid(logit)`` of a one-logit sequence classifier, traced once
per model version, cached beside it); this module only serves it. What a re-ranked query costs
is one transformer pass per (query, candidate) pair, paid per token, padded ones included, so
the scorer pads each run only to its own longest pair (pairs ordered by length), and serves the
int8 variant where its gate passed (``learn/rerank_gate.py``).
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from shopsearch.encoders.onnx import (INT8_RECIPE, VARIANTS, _padded, _session, _tokenizer, ensure_export,
                                      export_dir, int8_recipe, quantise_int8, read_card, serving_variant)
from shopsearch.errors import EncoderError

log = logging.getLogger(__name__)

PAIRS_PER_RUN = 8  # the most pairs of one ONNX run, ordered by length (measured: docs/ARCHITECTURE.md)


class OnnxCrossScorer:
    """A one-logit cross-encoder served through ONNX Runtime: ``score(query, texts)`` sigmoid scores.

    The pairs of one call are tokenised once, ordered by length and run at most ``pairs_per_run``
    at a time (in runs of even size), each run padded only to its own longest pair: a query's candidates differ in length
    (Home Depot: 13 to 61 tokens a pair), and a transformer pays for every padded token.
    ``variant`` is the one wanted; ``int8`` serves only where its card says the gate passed
    (:func:`serving_variant`; the gate: ``learn/rerank_gate.py``).
    """

    def __init__(self, path: str | os.PathLike, models_root: str | os.PathLike, label: str, batch_size: int = 32,
                 max_length: int = 128, threads: int = 0, variant: str = "fp32",
                 pairs_per_run: int = PAIRS_PER_RUN):
        self.path, self.batch_size, self.threads = Path(path), batch_size, threads
        self.pairs_per_run = max(1, min(pairs_per_run, batch_size))
        self.export_dir = export_dir(self.path, label, models_root)
        self.meta, self.exported = ensure_export(self.path, self.export_dir, "cross-encoder", max_length)
        self.card = read_card(self.path, self.export_dir)
        self.recipe = INT8_RECIPE["cross-encoder"]
        self.variant = serving_variant(variant, self.card, self.recipe)
        if variant == "int8" and self.variant != "int8":
            log.warning("%s: int8 cross-encoder not served (its gate has not passed: run shopsearch models onnx "
                        "--part cross-encoder); serving fp32", self.export_dir.name)
        if self.variant == "int8" and int8_recipe(self.export_dir) != self.recipe:
            quantise_int8(self.export_dir, self.recipe)  # its gate passed on this export: the same quantisation again
        self.session = _session(self.export_dir / f"{self.variant}.onnx", threads)
        self.tokenizer = _tokenizer(self.export_dir, int(self.meta["max_length"]))

    def trial(self, variant: str) -> "OnnxCrossScorer":
        """This scorer running ``variant`` whatever its card says: for the gate and the benchmark, never for serving."""
        if variant not in VARIANTS:
            raise EncoderError(f"unknown ONNX variant {variant!r}; expected one of {', '.join(VARIANTS)}")
        if variant == "int8":
            quantise_int8(self.export_dir, self.recipe)
        other = copy.copy(self)
        other.variant = variant
        other.session = _session(self.export_dir / f"{variant}.onnx", self.threads)
        return other

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        """Sigmoid scores of ``(query, text)`` for each text, in the texts' order."""
        if not texts:
            return []
        encodings = self.tokenizer.encode_batch([(query, t) for t in texts])
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        out = np.zeros(len(texts), dtype=np.float64)
        runs = -(-len(order) // self.pairs_per_run)  # as few runs as allowed, of even sizes (10 pairs: 5 + 5)
        for idx in np.array_split(order, runs):
            out[idx] = self.session.run(None, _padded([encodings[i] for i in idx], self.meta["inputs"]))[0]
        return out.tolist()
