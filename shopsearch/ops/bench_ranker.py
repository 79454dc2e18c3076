"""``shopsearch bench ranker``: what strategy ``learned`` costs over ``hybrid``, measured side by side in one run.

For each real query (Home Depot judgments and WANDS, the ``bench query`` set, a fixed sample),
in this process and on one thread:

* ``features_ms`` and ``predict_ms``: the ``LearnedRank`` stage's own work on that query's
  candidates (building the feature table; one ``predict`` over all of them, by the ranker's
  ``backend``: its compiled machine code where it could be compiled);
* ``predict_lightgbm_ms``: LightGBM's own C predict on the same matrix, called right after
  (``lightgbm_over_served_predict_p50``: what compiling the trees buys);
* ``hybrid_ms`` and ``learned_ms``: the whole search of each strategy through the ``Searcher``
  (result cache off), alternated query by query so that load drifts hit both alike;
  ``learned_minus_hybrid_ms``: the two on the same query, subtracted (its p50 is the "at most
  2 ms more than hybrid" figure; it holds the stage and the named clauses' work in OpenSearch).

The stage's own cost is the part the ranker's code controls; the end-to-end difference also
holds the machine's noise, which the pairing by query and the ratio from one run keep fair.
The words cache (``features.words``: a product's title tokenised once per process) starts empty
and its hit rate over the run is printed, since a long-running proxy has it warm.
"""

from __future__ import annotations

import time
from typing import Callable

from shopsearch.cluster import connect
from shopsearch.errors import Missing
from shopsearch.evaluation.metrics import percentile
from shopsearch.learn.ranker import before_ranker
from shopsearch.ops.bench_query import load_queries
from shopsearch.query import features as feature_module
from shopsearch.query.learned import c_predict, table_of
from shopsearch.query.searcher import Searcher, SearchRequest
from shopsearch.query.stages import Search
from shopsearch.settings import Settings


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def bench_ranker(settings: Settings, catalogue: str, queries: int = 300, echo: Callable[[str], None] = print) -> dict:
    """Per-query costs of the ranker stage and of the two strategies; p50 / p95 and the ratios."""
    searcher = Searcher(connect(settings, timeout=120), settings.replace(result_cache_seconds=0))
    live = searcher.live(catalogue)
    ranker, note = searcher.rankers.for_index(live)
    if ranker is None:
        raise Missing(f"{live.index} serves no ranker ({note}): train one with `shopsearch train`")
    steps, texts = before_ranker(searcher.settings), load_queries(settings)[:queries]
    lightgbm_predict = c_predict(ranker.booster) or (lambda x: ranker.booster.predict(x, num_threads=1))
    times: dict[str, list[float]] = {k: [] for k in ("features_ms", "predict_ms", "predict_lightgbm_ms", "stage_ms",
                                                     "hybrid_ms", "learned_ms", "learned_minus_hybrid_ms")}
    candidates = []
    for q in texts[:5]:  # warm up: encoder, caches of the cluster
        searcher.search(catalogue, SearchRequest(q=q, strategy="learned"))
    feature_module.words.cache_clear()
    for q in texts:
        done = steps.run(Search(req=SearchRequest(q=q, strategy="learned"), live=live, searcher=searcher,
                                depth=settings.candidate_depth, weight=settings.vector_weight))
        if len(done.answer.ranked) < 2:
            continue
        t = time.perf_counter()
        table = table_of(done)
        x = table.select(ranker.features)
        features = _ms(t)
        t = time.perf_counter()
        ranker.predict(x)
        predict = _ms(t)
        t = time.perf_counter()
        lightgbm_predict(x)
        times["predict_lightgbm_ms"].append(_ms(t))
        times["features_ms"].append(features)
        times["predict_ms"].append(predict)
        times["stage_ms"].append(features + predict)
        candidates.append(len(table.ids))
        for strategy in ("hybrid", "learned"):
            t = time.perf_counter()
            searcher.search(catalogue, SearchRequest(q=q, strategy=strategy))
            times[f"{strategy}_ms"].append(_ms(t))
        times["learned_minus_hybrid_ms"].append(times["learned_ms"][-1] - times["hybrid_ms"][-1])
    cache = feature_module.words.cache_info()
    figures = {"catalogue": catalogue, "index": live.index, "ranker": ranker.version, "queries": len(candidates),
               "candidates_mean": round(sum(candidates) / max(len(candidates), 1), 1), "features": len(ranker.features),
               "trees": ranker.booster.num_trees(), "backend": ranker.backend,
               "words_cache_hit_rate": round(cache.hits / max(cache.hits + cache.misses, 1), 3)}
    for name, values in times.items():
        figures[name] = {"p50": round(percentile(values, 50), 3), "p95": round(percentile(values, 95), 3)}
    figures["learned_over_hybrid_p50"] = round(figures["learned_ms"]["p50"] / figures["hybrid_ms"]["p50"], 3)
    figures["lightgbm_over_served_predict_p50"] = round(
        figures["predict_lightgbm_ms"]["p50"] / max(figures["predict_ms"]["p50"], 1e-6), 2)
    echo(f"{figures['queries']} queries, {figures['candidates_mean']} candidates each, {figures['features']} features, "
         f"{figures['trees']} trees, served by {figures['backend']}; words cache hit rate "
         f"{figures['words_cache_hit_rate']}")
    echo(f"{'':24} {'p50 ms':>8} {'p95 ms':>8}")
    for name in times:
        echo(f"{name:24} {figures[name]['p50']:8.3f} {figures[name]['p95']:8.3f}")
    echo(f"learned / hybrid p50: {figures['learned_over_hybrid_p50']}; LightGBM's predict / the served one p50: "
         f"{figures['lightgbm_over_served_predict_p50']}")
    return figures
