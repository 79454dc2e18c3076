"""``shopsearch bench query``: query latency and throughput, the modes side by side in one run.

Modes, each for ``seconds`` with ``clients`` concurrent clients:

* ``direct_bm25`` — the plain ``multi_match`` straight to OpenSearch;
* ``proxy_passthrough`` — the same request through the proxy's pass-through;
* ``proxy_hybrid`` — ``/shop/<catalogue>/search`` with ``strategy=hybrid`` (BM25 + k-NN fused; named,
  since a request without one gets ``learned`` once a ranker is served);
* ``proxy_hybrid_personalised`` — the same with a shopper whose profile is stored;
* ``proxy_hybrid_rerank`` — strategy ``hybrid-rerank``: the fused head re-ordered by the
  cross-encoder trained with the live model (skipped, and said so, when there is none).

Query texts are real (Home Depot judgments and WANDS queries). Each mode draws from its own slice
of the shuffled queries and no text repeats within a mode, so no cache can flatter a figure; the
hit rates of the result cache and the query-vector cache are reported beside the latencies.
The proxy runs under gunicorn, as in production, started by the benchmark on a free port.
"""

from __future__ import annotations

import csv
import random
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import requests

from shopsearch.cluster import connect
from shopsearch.evaluation.metrics import percentile
from shopsearch.index.profiles import put_profile
from shopsearch.ops.services.process import wait_until
from shopsearch.query.build import plain_bm25_body
from shopsearch.settings import Settings

MODES = ("direct_bm25", "proxy_passthrough", "proxy_hybrid", "proxy_hybrid_personalised", "proxy_hybrid_rerank")
BENCH_USERS = 20


def load_queries(settings: Settings) -> list[str]:
    """Distinct real shopper queries, in a fixed shuffled order."""
    seen: dict[str, None] = {}
    with open(settings.data_path / "homedepot" / "judgments.tsv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            seen.setdefault(row["query"].strip(), None)
    with open(settings.data_path / "wands" / "queries.tsv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            seen.setdefault(row["query"].strip(), None)
    queries = [q for q in seen if q]
    random.Random(7).shuffle(queries)
    return queries


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_profiles(settings: Settings, catalogue: str) -> list[str]:
    """Bench shoppers whose profile vector is the mean of a few real products' fused vectors."""
    client = connect(settings)
    meta = client.indices.get_mapping(index=catalogue)
    meta = next(iter(meta.values()))["mappings"].get("_meta", {})
    rng = random.Random(11)
    users = []
    for u in range(BENCH_USERS):
        body = {"size": 5, "_source": ["fused_vector", "category", "brand"],
                "query": {"function_score": {"random_score": {"seed": rng.randrange(1 << 30), "field": "_seq_no"}}}}
        hits = client.search(index=catalogue, body=body)["hits"]["hits"]
        vectors = np.array([h["_source"]["fused_vector"] for h in hits if "fused_vector" in h["_source"]])
        cats = {h["_source"]["category"]: 1.0 for h in hits if h["_source"].get("category")}
        brands = {h["_source"]["brand"]: 1.0 for h in hits if h["_source"].get("brand")}
        profile = {"vector": (vectors.mean(axis=0) / max(np.linalg.norm(vectors.mean(axis=0)), 1e-9)).tolist(),
                   "categories": cats, "brands": brands, "model_version": meta.get("model_version")}
        user = f"bench-{u}"
        put_profile(client, settings, catalogue, user, profile)
        users.append(user)
    return users


def _run_mode(make_request, queries: list[str], clients: int, seconds: float) -> dict:
    """Send requests from ``clients`` threads for ``seconds``; each query text is used once."""
    lock = threading.Lock()
    cursor = iter(queries)
    latencies: list[float] = []
    errors = 0
    flags = {"cached": 0, "vector_cached": 0, "answers": 0}
    deadline = time.monotonic() + seconds

    def client_loop() -> None:
        nonlocal errors
        session = requests.Session()
        while time.monotonic() < deadline:
            with lock:
                q = next(cursor, None)
            if q is None:
                return
            start = time.perf_counter()
            try:
                r = make_request(session, q)
                ok = r.status_code == 200
                body = r.json() if ok else None
            except (requests.RequestException, ValueError):
                ok, body = False, None
            elapsed = (time.perf_counter() - start) * 1000
            with lock:
                if ok:
                    latencies.append(elapsed)
                    if isinstance(body, dict) and "cached" in body:
                        flags["answers"] += 1
                        flags["cached"] += bool(body.get("cached"))
                        flags["vector_cached"] += bool(body.get("vector_cached"))
                else:
                    errors += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    out = {"p50_ms": round(percentile(latencies, 50), 2), "p95_ms": round(percentile(latencies, 95), 2),
           "p99_ms": round(percentile(latencies, 99), 2), "qps": round(len(latencies) / wall, 2),
           "requests": len(latencies) + errors, "errors": errors}
    if flags["answers"]:
        out["cache_hit_rate"] = {"results": round(flags["cached"] / flags["answers"], 4),
                                 "query_vectors": round(flags["vector_cached"] / flags["answers"], 4)}
    return out


def bench_query(settings: Settings, catalogue: str, clients: int = 16, seconds: float = 20.0,
                proxy_workers: int = 2, echo=print) -> dict:
    queries = load_queries(settings)
    slices = {m: queries[i::len(MODES)] for i, m in enumerate(MODES)}
    users = _make_profiles(settings, catalogue)
    port = _free_port()
    proxy = f"http://127.0.0.1:{port}"
    log = open(settings.home_path / "bench-proxy.log", "ab")
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", str(proxy_workers), "-k", "gthread", "--threads", "8",
                               "-b", f"127.0.0.1:{port}", "--timeout", "120", "shopsearch.plugin.app:create_app()"],
                              stdout=log, stderr=subprocess.STDOUT)
    direct = settings.opensearch_url.rstrip("/")
    try:
        wait_until(lambda: requests.get(f"{proxy}/healthz", timeout=2).ok, 120, "bench proxy", alive=lambda: server.poll() is None)
        # warm each proxy worker's encoder once, with a text no mode uses
        for _ in range(proxy_workers * 2):
            requests.get(f"{proxy}/shop/{catalogue}/search", params={"q": "warm up the encoder"}, timeout=120)
        rng = random.Random(3)
        modes = {
            "direct_bm25": lambda s, q: s.post(f"{direct}/{catalogue}/_search", json=plain_bm25_body(q, 10), timeout=30),
            "proxy_passthrough": lambda s, q: s.post(f"{proxy}/{catalogue}/_search", json=plain_bm25_body(q, 10), timeout=30),
            "proxy_hybrid": lambda s, q: s.get(f"{proxy}/shop/{catalogue}/search", params={"q": q, "strategy": "hybrid"}, timeout=30),
            "proxy_hybrid_personalised": lambda s, q: s.get(f"{proxy}/shop/{catalogue}/search",
                                                            params={"q": q, "user": rng.choice(users), "strategy": "hybrid"}, timeout=30),
            "proxy_hybrid_rerank": lambda s, q: s.get(f"{proxy}/shop/{catalogue}/search",
                                                      params={"q": q, "strategy": "hybrid-rerank"}, timeout=30),
        }
        results = {}
        for _ in range(proxy_workers * 2):  # load the re-ranker in each worker, or learn there is none
            probe = requests.get(f"{proxy}/shop/{catalogue}/search", params={"q": "warm up", "strategy": "hybrid-rerank"}, timeout=120)
        if probe.status_code != 200:
            results["proxy_hybrid_rerank"] = {"skipped": probe.json().get("message", probe.text)}
            echo(f"{'proxy_hybrid_rerank':27} skipped: {results['proxy_hybrid_rerank']['skipped']}")
        for mode in MODES:
            if mode in results:
                continue
            results[mode] = _run_mode(modes[mode], slices[mode], clients, seconds)
            m = results[mode]
            echo(f"{mode:27} p50 {m['p50_ms']:7.1f} ms  p95 {m['p95_ms']:7.1f}  p99 {m['p99_ms']:7.1f}  "
                 f"{m['qps']:7.1f} QPS  {m['requests']} requests  {m['errors']} errors  {m.get('cache_hit_rate', '')}")
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    return {"catalogue": catalogue, "clients": clients, "seconds": seconds, "modes": results}
