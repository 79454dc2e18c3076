"""Cross-encoder re-ranking: the top candidates of a search re-ordered by a trained cross-encoder.

A bi-encoder compares a query vector with item vectors computed apart; a cross-encoder reads the
query and the item text together (one transformer pass per pair), so it sees which words of the
query the title answers, at the cost of one forward pass per candidate at query time. So it only
re-orders the ``top_n`` fused candidates; the rest keep their order after them.

The model is a directory written by ``shopsearch.learn.train.train_cross_encoder`` (a one-logit
sequence-classification model); scores are sigmoid probabilities in [0, 1]. Two back-ends give the
same scores (within 1e-4), chosen by ``inference_backend``:

* ONNX Runtime on CPU (``auto`` without CUDA, or ``onnx``): the model exported once to
  ``sigmoid(logit)`` and cached beside it (``encoders/onnx.py``: ``<version>/onnx/cross-encoder@<fingerprint>/``
  for a registry model), the session shared by all threads;
* torch through ``sentence_transformers.CrossEncoder`` (``torch``, or ``auto`` on CUDA, with half
  precision there), for training and GPUs; one forward pass at a time per loaded model (a lock),
  as with the text encoders, so a threaded server can share one instance.

On ONNX, ``rerank_variant`` ``int8`` (dynamic quantisation, about half the cost of fp32) serves
only where the cross-encoder's card says its gate passed (``learn/rerank_gate.py``: no more than
0.002 nDCG@10 lost on validation judgments); otherwise fp32 serves. :func:`variant_on_trial`
runs a variant whatever its card says, for the gate and the benchmark only.
"""

from __future__ import annotations

import copy
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from shopsearch.encoders.model_files import fingerprint
from shopsearch.encoders.onnx_cross import OnnxCrossScorer
from shopsearch.encoders.text import choose_backend, choose_device
from shopsearch.errors import EncoderError, SearchError
from shopsearch.settings import Settings


def _label(path: Path) -> str:
    return path.parent.name if path.name == "cross-encoder" else path.name


def _check(path: Path) -> None:
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path} is not a cross-encoder directory (no config.json)")


class CrossEncoderReranker:
    """A trained cross-encoder that re-orders the head of a ranked list (torch, sentence-transformers).

    ``version`` names the exact weights (directory name and a hash of its files), for responses
    and caches.
    """

    backend = "torch"

    def __init__(self, path: str | Path, device: str = "auto", batch_size: int = 32, max_length: int = 128):
        from sentence_transformers import CrossEncoder  # why: heavy (torch); only hybrid-rerank needs it
        self.path = Path(path)
        _check(self.path)
        self.device = choose_device(device)
        self.batch_size = batch_size
        self.model = CrossEncoder(str(self.path), device=self.device, max_length=max_length)
        if self.device == "cuda":
            self.model.half()
        self.version = f"{_label(self.path)}@{fingerprint(self.path)}"
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


class OnnxReranker(CrossEncoderReranker):
    """The same re-ranker served through ONNX Runtime on CPU (exported once, cached beside the weights)."""

    backend = "onnx"

    def __init__(self, path: str | Path, models_root: str | Path, batch_size: int = 32, max_length: int = 128,
                 threads: int = 0, variant: str = "fp32"):
        self.path, self.device, self.batch_size = Path(path), "cpu", batch_size
        _check(self.path)
        self.version = f"{_label(self.path)}@{fingerprint(self.path)}"
        self.scorer = OnnxCrossScorer(self.path, models_root, _label(self.path), batch_size, max_length, threads,
                                      variant)
        self._trials: dict[str, OnnxReranker] = {}

    @property
    def variant(self) -> str:
        """The ONNX variant serving (``fp32`` or ``int8``)."""
        return self.scorer.variant

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        """Cross-encoder scores of ``(query, text)`` for each text, in [0, 1] (fp32: the torch back-end's, within 1e-4)."""
        return self.scorer.score(query, list(texts)) if texts else []

    def trial(self, variant: str) -> "OnnxReranker":
        """This re-ranker running ``variant`` whatever its card says (made once): the gate's and the benchmark's."""
        if variant not in self._trials:
            other = copy.copy(self)
            other.scorer, other._trials = self.scorer.trial(variant), {}
            self._trials[variant] = other
        return self._trials[variant]


_ON_TRIAL: ContextVar[str | None] = ContextVar("rerank_variant_on_trial", default=None)


@contextmanager
def variant_on_trial(variant: str):
    """Within the block, :func:`reranker_for` gives ONNX re-rankers running ``variant`` whatever
    their card says (this thread or task only): how the gate compares fp32 with int8 through the
    production pipeline. Never used for serving."""
    token = _ON_TRIAL.set(variant)
    try:
        yield
    finally:
        _ON_TRIAL.reset(token)


@lru_cache(maxsize=4)
def cached_reranker(path: str, device: str = "auto", backend: str = "auto", models_root: str = "",
                    threads: int = 0, variant: str = "fp32") -> CrossEncoderReranker:
    """One loaded re-ranker per (path, device, backend, variant) per process (``backend``: ``choose_backend``)."""
    dev = choose_device(device)
    if choose_backend(backend, dev, queries=True) == "onnx":
        return OnnxReranker(path, models_root or Path(path).parent, threads=threads, variant=variant)
    return CrossEncoderReranker(path, dev)


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
        reranker = cached_reranker(path, settings.device, settings.inference_backend, str(settings.models_path),
                                   settings.inference_threads, settings.rerank_variant)
        trial = _ON_TRIAL.get()
        return reranker.trial(trial) if trial and isinstance(reranker, OnnxReranker) else reranker
    except (OSError, ValueError, EncoderError) as e:
        raise SearchError(f"re-ranker {path} cannot be loaded: {e}", 409, "no_reranker") from None
