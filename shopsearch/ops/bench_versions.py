"""``shopsearch bench versions``: two index versions of one catalogue, the same requests sent to both.

What a search asks OpenSearch for, built by the query path itself (``Searcher.retrieve``) for
real shopper queries (Home Depot and WANDS, ``bench_query.load_queries``) and for each version
as it would be asked (its own fetch plan: doc values or ``_source``, ``index/fetch.py``): the
plain BM25 request for 10 hits (``direct``), the shopper BM25 request and the k-NN request for
``depth`` candidates each, and their ``_msearch``. Each request goes to version A, then to version B, query by query,
for ``rounds`` rounds, so both see the same machine; the figures are medians and the ratio
A / B. It showed what moving the vectors out of the stored ``_source`` buys (a version made
before it against one ``shopsearch reindex`` made after: ``index/vectors.py``), then what reading
candidates from doc values buys, and serves any other mapping change the same way.
"""

from __future__ import annotations

import statistics
import time

from shopsearch.cluster import connect
from shopsearch.ops.bench_query import load_queries
from shopsearch.query.build import plain_bm25_body
from shopsearch.query.searcher import Searcher
from shopsearch.settings import Settings

REQUESTS = ("direct_bm25_10", "shopper_bm25", "knn", "msearch")


def bench_versions(settings: Settings, catalogue: str, a: str, b: str, queries: int = 300, depth: int = 100,
                   rounds: int = 2, echo=print) -> dict:
    """Median latency of each request on versions ``a`` and ``b`` (alternating), and their ratio a / b."""
    client = connect(settings)
    searcher = Searcher(client, settings)
    versions = {index: searcher.pinned(catalogue, index) for index in (a, b)}
    bodies = []
    for q in load_queries(settings)[:queries]:
        got = {index: searcher.retrieve(live, q, depth, []).bodies for index, live in versions.items()}
        if all(len(sent) == 2 for sent in got.values()):  # BM25 and k-NN (a model-number query asks BM25 only)
            bodies.append((q, got))
    send = {
        "direct_bm25_10": lambda index, q, body: client.search(index=index, body=plain_bm25_body(q, 10)),
        "shopper_bm25": lambda index, q, body: client.search(index=index, body=body[index][0]),
        "knn": lambda index, q, body: client.search(index=index, body=body[index][1]),
        "msearch": lambda index, q, body: client.msearch(body=[{"index": index}, body[index][0],
                                                               {"index": index}, body[index][1]]),
    }
    out = {"catalogue": catalogue, "a": a, "b": b, "queries": len(bodies), "depth": depth, "rounds": []}
    for n in range(rounds):
        figures = {}
        for name in REQUESTS:
            times: dict[str, list[float]] = {a: [], b: []}
            for q, body in bodies:
                for index in (a, b):
                    started = time.perf_counter()
                    send[name](index, q, body)
                    times[index].append((time.perf_counter() - started) * 1000)
            ma, mb = statistics.median(times[a]), statistics.median(times[b])
            figures[name] = {"a_p50_ms": round(ma, 2), "b_p50_ms": round(mb, 2), "a_vs_b": round(ma / mb, 2)}
            echo(f"round {n + 1}  {name:15} {a} {ma:7.2f} ms   {b} {mb:7.2f} ms   {ma / mb:5.2f}x")
        out["rounds"].append(figures)
    return out
