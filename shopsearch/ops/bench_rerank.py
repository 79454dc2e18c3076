"""``shopsearch bench rerank``: nDCG@10 and cost of ``hybrid-rerank`` against ``rerank_depth``, in one run.

Each judged query (validation judgments: never the queries the cross-encoder learnt from) is
searched with ``hybrid`` and with ``hybrid-rerank`` at every depth, once per ONNX variant of the
cross-encoder (``fp32``, ``int8``: ``query.rerank.variant_on_trial``, whatever the card says),
taking turns query by query (``evaluation.run.evaluate`` with one entry per variant and depth),
so drift on a shared machine hits every row alike. On the torch back-end the variant rows are
all the torch scorer. Printed per depth: nDCG@10, p50 / p95 ms per query, the added cost over ``hybrid``,
and how much of the first page the re-ranker changed (share of the top 10 not in hybrid's).
The recommended depth is the smallest whose nDCG@10 is within ``tolerance`` (0.002) of the best.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Sequence

import numpy as np

from shopsearch.cluster import connect
from shopsearch.encoders.onnx import VARIANTS
from shopsearch.evaluation.run import evaluate, load_judgments
from shopsearch.query.rerank import OnnxReranker, reranker_for, variant_on_trial
from shopsearch.query.searcher import SearchRequest, Searcher
from shopsearch.settings import Settings


def smallest_good_depth(ndcg: dict[int, float], tolerance: float = 0.002) -> int:
    """The smallest depth whose nDCG@10 is within ``tolerance`` of the best depth's (pure).

    >>> smallest_good_depth({5: 0.380, 10: 0.3885, 20: 0.389, 50: 0.3895})
    10
    """
    best = max(ndcg.values())
    return min(d for d, v in ndcg.items() if v >= best - tolerance)


def bench_rerank(settings: Settings, catalogue: str, judgments: str, depths: list[int],
                 limit_queries: int | None = None, tolerance: float = 0.002, echo=print,
                 variants: Sequence[str] = VARIANTS) -> dict:
    """nDCG@10, latency and first-page change of hybrid-rerank per ONNX variant and depth, beside hybrid, in one run."""
    client = connect(settings, timeout=120)
    plain = settings.replace(result_cache_seconds=0)
    searchers = {"hybrid": (Searcher(client, plain), "hybrid", None)}
    searchers |= {f"{v}@{d}": (Searcher(client, plain.replace(rerank_depth=d)), "hybrid-rerank", v)
                  for v in variants for d in depths}

    def search(q: str, name: str, size: int = 100) -> list[str]:
        searcher, strategy, variant = searchers[name]
        with variant_on_trial(variant) if variant else nullcontext():
            return [h["id"] for h in searcher.search(catalogue, SearchRequest(q=q, size=size, strategy=strategy))["hits"]]

    for name in searchers:  # load the models (both variants) and the live index outside the timing
        search("warm up", name, 10)
    result = evaluate(load_judgments(judgments), list(searchers), search, limit_queries=limit_queries)
    rows = _rows(result, list(searchers))
    chosen = {v: smallest_good_depth({d: rows[f"{v}@{d}"]["ndcg@10"] for d in depths}, tolerance) for v in variants}
    reranker = reranker_for(plain, searchers["hybrid"][0].live(catalogue).meta)
    echo(f"{len(result.queries)} queries of {judgments}; re-ranker {reranker.version} ({reranker.backend}"
         f"{', serving ' + reranker.variant if isinstance(reranker, OnnxReranker) else ''})")
    echo("| ranking | nDCG@10 | p50 ms | p95 ms | added p50 ms vs hybrid | first page changed |")
    echo("|---|---|---|---|---|---|")
    for name, r in rows.items():
        echo(f"| {name} | {r['ndcg@10']} | {r['p50_ms']} | {r['p95_ms']} | {r['added_p50_ms']} | {r['first_page_changed']} |")
    for v, d in chosen.items():
        echo(f"{v}: smallest depth within {tolerance} of its best: {d}")
    return {"catalogue": catalogue, "queries": len(result.queries), "judgments": judgments,
            "backend": settings.inference_backend, "reranker": reranker.version, "rows": rows,
            "recommended_depth": chosen}


def _rows(result, names: list[str]) -> dict[str, dict]:
    base_p50 = float(np.percentile(result.latency_ms["hybrid"], 50))
    rows = {}
    for name in names:
        changed = [len(set(top[:10]) - set(base[:10])) / max(1, len(top[:10]))
                   for top, base in zip(result.top[name], result.top["hybrid"])]
        p50 = float(np.percentile(result.latency_ms[name], 50))
        rows[name] = {"ndcg@10": round(result.mean(name, "ndcg@10"), 4), "p50_ms": round(p50, 1),
                      "p95_ms": round(float(np.percentile(result.latency_ms[name], 95)), 1),
                      "added_p50_ms": round(p50 - base_p50, 1), "first_page_changed": round(float(np.mean(changed)), 3)}
    return rows
