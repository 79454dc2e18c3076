"""``shopsearch bench query``: query latency and throughput, the modes side by side in one run.

Modes, each for ``seconds`` with ``clients`` concurrent clients, then all of them again with one
client (latency without queueing), that client sending each mode's next query in turn so that
the machine's drifts reach every mode alike and the one-client differences are paired:

* ``direct_bm25`` — the plain ``multi_match`` straight to OpenSearch;
* ``proxy_passthrough`` — the same request through the proxy's pass-through;
* ``proxy_hybrid`` — ``/shop/<catalogue>/search`` with ``strategy=hybrid`` (BM25 + k-NN fused; named,
  since a request without one gets ``learned`` once a ranker is served);
* ``proxy_hybrid_personalised`` — the same with a shopper whose profile is stored;
* ``proxy_hybrid_rerank`` — strategy ``hybrid-rerank``: the fused head re-ordered by the
  cross-encoder trained with the live model (skipped, and said so, when there is none);
* ``proxy_learned`` — strategy ``learned``: the hybrid candidates re-scored by the learned ranker
  the live index serves (skipped, and said so, when it serves none); issue #14's cost figure is
  ``learned_p50_minus_hybrid_ms_1client``, and beside it the ranker stage's own milliseconds in
  the proxy's answers (``stage_ms_p50["LearnedRank"]``: every mode reports the medians of its
  answers' ``stage_ms``, so a difference can be traced to the stage it comes from).

Query texts are real (Home Depot judgments and WANDS queries). Two replays:

* ``no_repeat`` (the worst case): each phase and mode draws from its own slice of the shuffled
  queries and no text repeats, so no cache can flatter a figure;
* ``zipf`` (real traffic, ``proxy_hybrid`` and ``proxy_hybrid_personalised`` at ``clients``): query
  frequencies follow a Zipf law over the same texts ranked by how many products Home Depot's
  raters judged for each (the query log's own trace of how often it was asked), so a head of
  queries repeats as in a shop's logs (:func:`zipf_replay`).

The hit rates of the result cache and of the query-vector cache (local LRU or shared through
Redis) are reported beside the latencies, the proxy's resident memory after the run, and
``ratios``: the issue's five figures from this one run (a skipped mode: null, with its reason in
``ratios_skipped``). The proxy runs under gunicorn, as in production, started by the benchmark on
a free port with the serving settings (``plugin/serving.py``) or the workers / threads / intra-op
threads given. No mode is timed before the machine is idle (``cpu.wait_for_quiet``: the
proxy workers prepare their ranker's product text for some seconds after their first answers);
the wait and its outcome are printed and kept as ``settled``.

Each mode at ``clients`` also reports where its CPU went (``cpu_ms``: milliseconds a request of
the proxy, of OpenSearch, of this load client and of the rest of the machine, and the cores in
use), and ``cpu_bounds`` turns them into the QPS ratios the CPU allows: on a saturated machine a
mode's QPS is its cores over its CPU a request, so a ratio cannot pass the inverse ratio of the
two modes' CPU, whatever the scheduling.
"""

from __future__ import annotations

import csv
import os
import random
import socket
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import psutil
import redis
import requests

from shopsearch.cluster import connect
from shopsearch.index.profiles import put_profile
from shopsearch.index.vectors import COPY_FIELD, with_vectors
from shopsearch.ops.cpu import CpuMeter, cpu_per_request, family, wait_for_quiet
from shopsearch.ops.query_load import run_in_turn, run_mode
from shopsearch.ops.services import opensearch as opensearch_service
from shopsearch.ops.services.process import read_pid, wait_until
from shopsearch.query.build import plain_bm25_body
from shopsearch.query.caches import KEY_PREFIX, shared_cache_url
from shopsearch.settings import Settings

MODES = ("direct_bm25", "proxy_passthrough", "proxy_hybrid", "proxy_hybrid_personalised", "proxy_hybrid_rerank",
         "proxy_learned")
ZIPF_MODES = ("proxy_hybrid", "proxy_hybrid_personalised")
CPU_BOUNDS = {"hybrid_qps_vs_direct": ("proxy_hybrid", "direct_bm25"),
              "personalised_qps_vs_direct": ("proxy_hybrid_personalised", "direct_bm25"),
              "rerank_qps_vs_hybrid": ("proxy_hybrid_rerank", "proxy_hybrid")}
RATIOS = ("passthrough_p50_vs_direct", "hybrid_qps_vs_direct", "personalised_qps_vs_direct", "rerank_qps_vs_hybrid",
          "hybrid_p50_minus_direct_ms_1client", "learned_p50_minus_hybrid_ms_1client")
BENCH_USERS = 20
ZIPF_EXPONENT = 1.0   # web and shop query logs: frequency ~ 1 / rank^s with s near 1
ZIPF_DRAWS = 50_000   # more than any mode can send in its seconds


def judged_counts(settings: Settings) -> Counter:
    """Distinct real shopper queries (Home Depot, then WANDS) with how many products were judged for each."""
    counts: Counter = Counter()
    with open(settings.data_path / "homedepot" / "judgments.tsv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            counts[row["query"].strip()] += 1
    with open(settings.data_path / "wands" / "queries.tsv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            counts[row["query"].strip()] += 0 if row["query"].strip() in counts else 1
    counts.pop("", None)
    return counts


def load_queries(settings: Settings) -> list[str]:
    """Distinct real shopper queries, in a fixed shuffled order."""
    queries = sorted(judged_counts(settings))
    random.Random(7).shuffle(queries)
    return queries


def zipf_replay(counts: Counter, n: int, exponent: float = ZIPF_EXPONENT, seed: int = 5) -> list[str]:
    """``n`` queries drawn with probability ~ 1 / rank^exponent, ranked by ``counts`` (ties in a fixed random order).

    >>> replay = zipf_replay(Counter({"a": 9, "b": 3, "c": 1}), 1000)
    >>> [q for q, _ in Counter(replay).most_common()]
    ['a', 'b', 'c']
    """
    rng = random.Random(seed)
    texts = sorted(counts)
    rng.shuffle(texts)
    ranked = sorted(texts, key=lambda q: -counts[q])  # stable: the shuffle orders the ties
    weights = 1.0 / np.arange(1, len(ranked) + 1) ** exponent
    picks = np.random.default_rng(seed).choice(len(ranked), size=n, p=weights / weights.sum())
    return [ranked[i] for i in picks]


def replay_shape(replay: list[str]) -> dict:
    """How repetitive a replay is: distinct share, and the share of the 100 most frequent texts."""
    counts = Counter(replay)
    return {"requests": len(replay), "distinct": len(counts),
            "top100_share": round(sum(c for _, c in counts.most_common(100)) / max(len(replay), 1), 4)}


def empty_shared_cache(settings: Settings) -> int:
    """Forget the shared query vectors of earlier runs, so no-repeat stays the worst case; how many went."""
    url = shared_cache_url(settings.vector_cache_url, settings.redis_url)
    if url is None:
        return 0
    try:
        r = redis.Redis.from_url(url, socket_timeout=2)
        keys = list(r.scan_iter(match=f"{KEY_PREFIX}*", count=1000))
        for start in range(0, len(keys), 1000):
            r.delete(*keys[start:start + 1000])
        return len(keys)
    except redis.RedisError:
        return 0  # no shared cache to empty: the proxy will run on its local caches


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_profiles(settings: Settings, catalogue: str) -> list[str]:
    """Bench shoppers: a profile from a few real products (vector, categories, brands, own items)."""
    client = connect(settings)
    meta = client.indices.get_mapping(index=catalogue)
    meta = next(iter(meta.values()))["mappings"].get("_meta", {})
    rng = random.Random(11)
    users = []
    for u in range(BENCH_USERS):
        body = {"size": 20, "_source": ["category", "brand", "fused_vector", COPY_FIELD],
                "query": {"function_score": {"random_score": {"seed": rng.randrange(1 << 30), "field": "_seq_no"}}}}
        hits = [{**h, "_source": with_vectors(h["_source"])} for h in client.search(index=catalogue, body=body)["hits"]["hits"]]
        vectors = np.array([h["_source"]["fused_vector"] for h in hits[:5] if "fused_vector" in h["_source"]])
        cats = {h["_source"]["category"]: 1.0 for h in hits[:5] if h["_source"].get("category")}
        brands = {h["_source"]["brand"]: 1.0 for h in hits[:5] if h["_source"].get("brand")}
        profile = {"vector": (vectors.mean(axis=0) / max(np.linalg.norm(vectors.mean(axis=0)), 1e-9)).tolist(),
                   "categories": cats, "brands": brands, "model_version": meta.get("model_version"),
                   "items": {h["_id"]: round(1.0 - i / 40, 6) for i, h in enumerate(hits)}}
        user = f"bench-{u}"
        put_profile(client, settings, catalogue, user, profile)
        users.append(user)
    return users


def no_ranker(answer: dict) -> str | None:
    """Why a ``learned`` answer was left in hybrid order (no ranker served, or it cannot load), or None.

    >>> no_ranker({"filters_applied": ["learned: no ranker has passed the gate for this index; hybrid order"]})
    'learned: no ranker has passed the gate for this index; hybrid order'
    >>> no_ranker({"filters_applied": ["spelling: brakets -> brackets"]}) is None
    True
    """
    return next((a for a in answer.get("filters_applied") or [] if a.startswith("learned:") and "hybrid order" in a), None)


def proxy_memory(pid: int) -> dict:
    """Resident memory of the gunicorn master and its workers, in MiB."""
    master = psutil.Process(pid)
    workers = [p.memory_info().rss for p in master.children(recursive=True)]
    mib = 1 << 20
    return {"total_mib": round((master.memory_info().rss + sum(workers)) / mib, 1),
            "master_mib": round(master.memory_info().rss / mib, 1), "workers_mib": [round(w / mib, 1) for w in workers]}


def ratios(phases: dict) -> tuple[dict, dict]:
    """The issues' ratios from one run (#13's five, #14's learned cost), and why any of them is null."""
    many, one = phases.get("no_repeat", {}), phases.get("one_client", {})

    def figure(table: dict, mode: str, key: str):
        found = table.get(mode) or {}
        return found.get(key), found.get("skipped")

    def ratio(a, b, digits=3):
        return round(a / b, digits) if a is not None and b else None

    def minus(a, b):
        return round(a - b, 2) if a is not None and b is not None else None

    wanted = {
        "passthrough_p50_vs_direct": ((one, "proxy_passthrough", "p50_ms"), (one, "direct_bm25", "p50_ms"), ratio),
        "hybrid_qps_vs_direct": ((many, "proxy_hybrid", "qps"), (many, "direct_bm25", "qps"), ratio),
        "personalised_qps_vs_direct": ((many, "proxy_hybrid_personalised", "qps"), (many, "direct_bm25", "qps"), ratio),
        "rerank_qps_vs_hybrid": ((many, "proxy_hybrid_rerank", "qps"), (many, "proxy_hybrid", "qps"), ratio),
        "hybrid_p50_minus_direct_ms_1client": ((one, "proxy_hybrid", "p50_ms"), (one, "direct_bm25", "p50_ms"), minus),
        "learned_p50_minus_hybrid_ms_1client": ((one, "proxy_learned", "p50_ms"), (one, "proxy_hybrid", "p50_ms"), minus),
    }
    out, skipped = {}, {}
    for name, (top, bottom, combine) in wanted.items():
        a, why_a = figure(*top)
        b, why_b = figure(*bottom)
        out[name] = combine(a, b)
        if out[name] is None:
            skipped[name] = why_a or why_b or "mode not run (--modes)"
    return out, skipped


def cpu_bounds(many: dict) -> dict:
    """The QPS ratios the CPU allows: on a machine its clients keep saturated, a mode's QPS is its
    cores over its CPU a request, so the ratio of two modes can reach at most the inverse ratio of
    their CPU a request (``with_client``: the whole machine, this load client included, as in the
    measured ratio; ``servers_only``: the proxy's and OpenSearch's CPU alone, as with the shoppers'
    clients elsewhere; ``free_proxy``: the whole machine as if the proxy cost nothing, the most any
    proxy could reach in front of this OpenSearch). A mode with no CPU figure (skipped, not run): null.

    >>> many = {"direct_bm25": {"cpu_ms": {"proxy": 0.0, "opensearch": 2.0, "client": 1.0, "total": 3.2}},
    ...         "proxy_hybrid": {"cpu_ms": {"proxy": 5.0, "opensearch": 3.0, "client": 1.0, "total": 9.6}}}
    >>> cpu_bounds(many)["hybrid_qps_vs_direct"]
    {'with_client': 0.333, 'servers_only': 0.25, 'free_proxy': 0.696}
    >>> cpu_bounds(many)["personalised_qps_vs_direct"] is None
    True
    """
    def cpu(mode: str) -> dict | None:
        return (many.get(mode) or {}).get("cpu_ms")

    out: dict = {}
    for name, (mode, base) in CPU_BOUNDS.items():
        a, b = cpu(mode), cpu(base)
        if not a or not b or not a["total"]:
            out[name] = None
            continue
        servers = a.get("proxy", 0.0) + a.get("opensearch", 0.0)
        unproxied = a["total"] - a.get("proxy", 0.0)
        out[name] = {"with_client": round(b["total"] / a["total"], 3),
                     "servers_only": round((b.get("proxy", 0.0) + b.get("opensearch", 0.0)) / servers, 3) if servers else None,
                     "free_proxy": round((b["total"] - b.get("proxy", 0.0)) / unproxied, 3) if unproxied > 0 else None}
    return out


def cpu_meter(settings: Settings, proxy_pid: int) -> CpuMeter:
    """The benchmark's process groups: the proxy (gunicorn master and workers), the project's own
    OpenSearch node when it runs here (else its CPU is in ``other``), and this load client."""
    groups = {"proxy": lambda: family(proxy_pid) or []}
    if opensearch_service.is_local(settings):
        node = read_pid(opensearch_service.layout(settings).pidfile)
        if node:
            groups["opensearch"] = lambda: family(node) or []
    me = psutil.Process()
    groups["client"] = lambda: [me]
    return CpuMeter(groups)


def start_proxy(settings: Settings, port: int, workers: int | None, threads: int | None,
                intra_threads: int | None) -> subprocess.Popen:
    """gunicorn with the serving config (``plugin/serving.py``); the arguments override its settings."""
    overrides = {"SHOPSEARCH_PROXY_HOST": "127.0.0.1", "SHOPSEARCH_PROXY_PORT": str(port)}
    for name, value in (("PROXY_WORKERS", workers), ("PROXY_THREADS", threads), ("INFERENCE_THREADS", intra_threads)):
        if value is not None:
            overrides[f"SHOPSEARCH_{name}"] = str(value)
    log = open(settings.home_path / "bench-proxy.log", "ab")
    # the child reads its settings from the environment like any gunicorn started by hand
    return subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:shopsearch.plugin.serving",
                             "shopsearch.plugin.app:create_app(face='internal')"],
                            env={**os.environ, **overrides}, stdout=log, stderr=subprocess.STDOUT)


def bench_query(settings: Settings, catalogue: str, clients: int = 16, seconds: float = 20.0,
                proxy_workers: int | None = None, echo=print, one_client_seconds: float | None = None,
                modes: tuple[str, ...] = MODES, zipf: bool = True, proxy_threads: int | None = None,
                intra_threads: int | None = None) -> dict:
    """Every mode at ``clients`` and at one client (no repeated query), then the Zipf replay; ratios and memory."""
    counts = judged_counts(settings)
    queries = load_queries(settings)
    slices = {(phase, m): queries[i::2 * len(MODES)]
              for i, (phase, m) in enumerate((p, m) for p in ("no_repeat", "one_client") for m in MODES)}
    users = _make_profiles(settings, catalogue)
    echo(f"shared query-vector cache emptied: {empty_shared_cache(settings)} vectors of earlier runs")
    port = _free_port()
    proxy = f"http://127.0.0.1:{port}"
    server = start_proxy(settings, port, proxy_workers, proxy_threads, intra_threads)
    direct = settings.opensearch_url.rstrip("/")
    phases: dict = {"no_repeat": {}, "one_client": {}}
    memory: dict = {}
    settled: dict = {}
    try:
        wait_until(lambda: requests.get(f"{proxy}/healthz", timeout=2).ok, 180, "bench proxy", alive=lambda: server.poll() is None)
        workers = len(psutil.Process(server.pid).children())
        for _ in range(workers * 3):  # warm each proxy worker's encoder, with texts no mode uses
            requests.get(f"{proxy}/shop/{catalogue}/search", params={"q": f"warm up the encoder {_}"}, timeout=120)
        rng = random.Random(3)
        send = {
            "direct_bm25": lambda s, q: s.post(f"{direct}/{catalogue}/_search", json=plain_bm25_body(q, 10), timeout=30),
            "proxy_passthrough": lambda s, q: s.post(f"{proxy}/{catalogue}/_search", json=plain_bm25_body(q, 10), timeout=30),
            "proxy_hybrid": lambda s, q: s.get(f"{proxy}/shop/{catalogue}/search", params={"q": q, "strategy": "hybrid"}, timeout=30),
            "proxy_hybrid_personalised": lambda s, q: s.get(f"{proxy}/shop/{catalogue}/search",
                                                            params={"q": q, "user": rng.choice(users), "strategy": "hybrid"}, timeout=30),
            "proxy_hybrid_rerank": lambda s, q: s.get(f"{proxy}/shop/{catalogue}/search",
                                                      params={"q": q, "strategy": "hybrid-rerank"}, timeout=30),
            "proxy_learned": lambda s, q: s.get(f"{proxy}/shop/{catalogue}/search",
                                                params={"q": q, "strategy": "learned"}, timeout=30),
        }
        skipped = {}
        if "proxy_hybrid_rerank" in modes:
            for _ in range(workers * 2):  # load the re-ranker in each worker, or learn there is none
                probe = requests.get(f"{proxy}/shop/{catalogue}/search",
                                     params={"q": "warm up", "strategy": "hybrid-rerank"}, timeout=120)
            if probe.status_code != 200:
                skipped["proxy_hybrid_rerank"] = {"skipped": probe.json().get("message", probe.text)}
        if "proxy_learned" in modes:
            why = no_ranker(requests.get(f"{proxy}/shop/{catalogue}/search", params={"q": "warm up", "strategy": "learned"},
                                         timeout=120).json())
            if why:
                skipped["proxy_learned"] = {"skipped": why}
        settled = wait_for_quiet()  # the workers' background warm-up done before any mode is timed
        echo(f"machine {'idle' if settled['quiet'] else 'still busy'} after {settled['waited_s']} s "
             f"({settled['cores']} cores in use)")
        runs = [("no_repeat", m, clients, seconds) for m in MODES]
        replay = zipf_replay(counts, ZIPF_DRAWS)
        if zipf:
            phases["zipf"] = {"replay": replay_shape(replay)}
            runs += [("zipf", m, clients, seconds) for m in ZIPF_MODES]

        def show(phase: str, mode: str) -> None:
            m = phases[phase][mode]
            if "skipped" in m:
                echo(f"{phase:10} {mode:27} skipped: {m['skipped']}")
                return
            echo(f"{phase:10} {mode:27} p50 {m['p50_ms']:7.1f} ms  p95 {m['p95_ms']:7.1f}  p99 {m['p99_ms']:7.1f}  "
                 f"{m['qps']:7.1f} QPS  {m['requests']} requests  {m['errors']} errors  {m.get('cache_hit_rate', '')}")

        meter = cpu_meter(settings, server.pid)
        for phase, mode, n, secs in runs[:len(MODES)]:
            if mode in modes:
                if mode in skipped:
                    phases[phase][mode] = skipped[mode]
                else:
                    before, started = meter.read(), time.monotonic()
                    phases[phase][mode] = run_mode(send[mode], slices[(phase, mode)], n, secs)
                    phases[phase][mode]["cpu_ms"] = cpu_per_request(before, meter.read(), phases[phase][mode]["requests"],
                                                                    time.monotonic() - started)
                show(phase, mode)
                if "cpu_ms" in phases[phase][mode]:
                    c = phases[phase][mode]["cpu_ms"]
                    echo(f"{'':10} {'':27} CPU a request: " + ", ".join(f"{k} {v:.2f} ms" for k, v in c.items()
                                                                           if k != "cores_in_use")
                         + f"; {c['cores_in_use']} cores in use")
        in_turn = [m for m in MODES if m in modes and m not in skipped]
        phases["one_client"] = {m: skipped[m] for m in MODES if m in modes and m in skipped}
        phases["one_client"].update(run_in_turn({m: send[m] for m in in_turn},
                                                 {m: slices[("one_client", m)] for m in in_turn},
                                                 (one_client_seconds or seconds / 2) * len(in_turn)))
        for mode in MODES:
            if mode in phases["one_client"]:
                show("one_client", mode)
        for phase, mode, n, secs in runs[len(MODES):]:
            if mode in modes:
                phases[phase][mode] = skipped.get(mode) or run_mode(send[mode], replay, n, secs)
                show(phase, mode)
        memory = proxy_memory(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    found, why = ratios(phases)
    bounds = cpu_bounds(phases["no_repeat"])
    errors = sum(m.get("errors", 0) for phase in phases.values() for m in phase.values() if isinstance(m, dict))
    echo(f"ratios: {found}" + (f"  (null: {why})" if why else ""))
    echo(f"the QPS ratios the CPU a request allows at {clients} clients: {bounds}")
    stage = (phases["one_client"].get("proxy_learned") or {}).get("stage_ms_p50", {}).get("LearnedRank")
    if stage is not None:
        echo(f"one client: the learned ranker's stage (LearnedRank) p50 {stage} ms in the proxy's answers")
    echo(f"proxy resident memory: {memory.get('total_mib')} MiB ({memory.get('workers_mib')} per worker); errors: {errors}")
    return {"catalogue": catalogue, "clients": clients, "seconds": seconds, "phases": phases, "ratios": found,
            "ratios_skipped": why, "cpu_bounds": bounds, "proxy_memory": memory, "errors": errors, "settled": settled,
            "serving": {"workers": proxy_workers, "threads": proxy_threads, "intra_threads": intra_threads}}
