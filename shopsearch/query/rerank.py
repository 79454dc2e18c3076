"""Cross-encoder re-ranking: the top candidates of a search re-ordered by a trained cross-encoder.

A bi-encoder compares a query vector with item vectors computed apart; a cross-encoder reads the
query and the item text together (one transformer pass per pair), so it sees which words of the
query the title answers, at the cost of one forward pass per candidate at query time. So it only
re-orders the ``top_n`` fused candidates; the rest keep their order after them.

The model is a directory written by ``shopsearch.learn.train.train_cross_encoder`` (a one-logit
sequence-classification model) and is loaded with ``sentence_transformers.CrossEncoder``: scores
are sigmoid probabilities in [0, 1]. CUDA with half precision when asked for (or ``auto`` and
present), CPU otherwise. One forward pass at a time per loaded model (a lock), as with the text
encoders, so a threaded server can share one instance.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from shopsearch.encoders.text import fingerprint, choose_device
from shopsearch.errors import SearchError
from shopsearch.settings import Settings


class CrossEncoderReranker:
    """A trained cross-encoder that re-orders the head of a ranked list.

    ``version`` names the exact weights (directory name and a hash of its files), for responses
    and caches.
    """

    def __init__(self, path: str | Path, device: str = "auto", batch_size: int = 32, max_length: int = 128):
        from sentence_transformers import CrossEncoder  # why: heavy (torch); only hybrid-rerank needs it
        self.path = Path(path)
        if not (self.path / "config.json").exists():
            raise FileNotFoundError(f"{self.path} is not a cross-encoder directory (no config.json)")
        self.device = choose_device(device)
        self.batch_size = batch_size
        self.model = CrossEncoder(str(self.path), device=self.device, max_length=max_length)
        if self.device == "cuda":
            self.model.half()
        self.version = f"{self.path.parent.name if self.path.name == 'cross-encoder' else self.path.name}@{fingerprint(self.path)}"
        self._lock = threading.Lock()

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        """Cross-encoder scores of ``(query, text)`` for each text, in [0, 1]."""
        if not texts:
            return []
        with self._lock:
            out = self.model.predict([(query, t) for t in texts], batch_size=self.batch_size,
                                     show_progress_bar=False, convert_to_numpy=True)
        return [float(s) for s in out]

    def rerank(self, query: str, candidates: Sequence[tuple[str, float]], texts: dict[str, str],
               top_n: int) -> list[tuple[str, float]]:
        """The first ``top_n`` candidates re-ordered by cross-encoder score (their new score), the rest after them unchanged.

        Candidates of the head without a text cannot be judged: they follow the scored ones, in
        their original order and with their original score.
        """
        head, tail = list(candidates[:max(0, top_n)]), list(candidates[max(0, top_n):])
        judged = [(d, s) for d, s in head if texts.get(d)]
        unjudged = [(d, s) for d, s in head if not texts.get(d)]
        scores = self.score(query, [texts[d] for d, _ in judged])
        # sorted() is stable: equal scores keep the fused order
        reranked = sorted(((d, s) for (d, _), s in zip(judged, scores)), key=lambda ds: -ds[1])
        return reranked + unjudged + tail


@lru_cache(maxsize=4)
def cached_reranker(path: str, device: str = "auto") -> CrossEncoderReranker:
    """One loaded re-ranker per (path, device) per process."""
    return CrossEncoderReranker(path, device)


def reranker_for(settings: Settings, meta: dict) -> CrossEncoderReranker:
    """The cross-encoder for an index: ``rerank_model``, else the one trained with its model (beside it)."""
    path = settings.rerank_model
    if not path and meta.get("model"):
        beside = Path(meta["model"]).parent / "cross-encoder"
        path = str(beside) if beside.is_dir() else ""
    if not path:
        raise SearchError(f"no re-ranker for model {meta.get('model_version')}: train one (shopsearch finetune) "
                          "or set rerank_model", 409, "no_reranker", field="strategy")
    try:
        return cached_reranker(path, settings.device)
    except (OSError, ValueError) as e:
        raise SearchError(f"re-ranker {path} cannot be loaded: {e}", 409, "no_reranker") from None
