"""The cross-encoder's quantisation gate: an int8 re-ranker serves only if it costs at most 0.002 nDCG@10.

Dynamic int8 quantisation (``encoders/onnx.py``) about halves the cross-encoder's cost per pair
but moves its scores a little (on Home Depot pairs by 0.007 on average, at most about 0.03 of a
[0, 1] score). Whether that moves rankings is measured the way relevance always is here: the
``eval search`` runner over validation judgments (never the queries the cross-encoder or its
settings were tuned on), strategy ``hybrid-rerank`` through the production
:class:`~shopsearch.query.searcher.Searcher` on the live index, query by query once with the fp32
and once with the int8 scorer (``query.rerank.variant_on_trial``; everything else identical).
int8 passes when it loses at most :data:`~shopsearch.encoders.onnx.INT8_MAX_NDCG_LOSS`. The
decision and its figures go on the cross-encoder's card: ``model.json``'s ``onnx.cross-encoder``
entry for a registry model, ``card.json`` beside the export otherwise; the scorer reads it before
it serves int8 (``onnx.serving_variant``, setting ``rerank_variant``).
"""

from __future__ import annotations

import numpy as np

from shopsearch.encoders.onnx import INT8_MAX_NDCG_LOSS, card_path, write_card
from shopsearch.errors import InputError
from shopsearch.evaluation.run import evaluate
from shopsearch.learn.onnx_gate import variant_gate
from shopsearch.learn.registry import ModelRegistry, now_iso
from shopsearch.query.rerank import OnnxReranker, cached_reranker, reranker_for, variant_on_trial
from shopsearch.query.searcher import Searcher, SearchRequest
from shopsearch.settings import Settings

STRATEGY = "hybrid-rerank"


def gate_rerank_int8(client, settings: Settings, catalogue: str, judgments, judgments_name: str,
                     limit_queries: int | None = None, max_loss: float = INT8_MAX_NDCG_LOSS, echo=print) -> dict:
    """Measure the int8 against the fp32 cross-encoder on ``catalogue``'s live index and record the card; returns it.

    int8 passes when its nDCG@10 is at most ``max_loss`` below fp32's (``hybrid-rerank`` at ``rerank_depth``).
    """
    searcher = Searcher(client, settings.replace(result_cache_seconds=0, inference_backend="onnx"))
    live = searcher.live(catalogue)
    reranker = reranker_for(searcher.settings, live.meta)
    if not isinstance(reranker, OnnxReranker):
        raise InputError(f"the re-ranker of {live.index} does not run on ONNX Runtime: no int8 variant to gate")
    runs = {"fp32": f"{STRATEGY}@fp32", "int8": f"{STRATEGY}@int8"}
    for variant in runs:  # quantise (once) and load both outside the timing
        reranker.trial(variant)

    def search(q: str, run: str) -> list[str]:
        with variant_on_trial(run.rsplit("@", 1)[1]):
            return [h["id"] for h in searcher.search(catalogue, SearchRequest(q=q, size=100, strategy=STRATEGY))["hits"]]

    # the two variants take turns query by query, so drift on a shared machine hits both alike
    result = evaluate(judgments, list(runs.values()), search, limit_queries=limit_queries)
    scores = {v: {STRATEGY: round(result.mean(name, "ndcg@10"), 6)} for v, name in runs.items()}
    p50 = {v: round(float(np.percentile(result.latency_ms[name], 50)), 1) for v, name in runs.items()}
    decision = variant_gate(scores["fp32"], scores["int8"], max_loss)
    card = {"serving": "int8" if decision["passed"] else "fp32", "export": str(reranker.scorer.export_dir),
            "version": reranker.version, "recipe": reranker.scorer.recipe,
            "gate": decision | {"ndcg@10": scores, "p50_ms": p50, "queries": len(result.queries),
                                "judgments": judgments_name, "index": live.index, "strategy": STRATEGY,
                                "rerank_depth": settings.rerank_depth, "at": now_iso()}}
    for v in runs:
        echo(f"{v}: nDCG@10 {scores[v][STRATEGY]}, p50 {p50[v]} ms on {len(result.queries)} queries")
    path, part = card_path(reranker.path, reranker.scorer.export_dir)
    if part:
        ModelRegistry(path.parent.parent).record_onnx(path.parent.name, part, card)
    else:
        write_card(reranker.scorer.export_dir, card)
    cached_reranker.cache_clear()  # this process's next re-ranker reads the new card
    echo(f"int8 cross-encoder {'passes' if decision['passed'] else 'fails'} (loss {decision['worst_loss']}, "
         f"at most {decision['max_loss']}): {card['serving']} serves; card: {path}")
    return card
