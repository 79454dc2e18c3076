"""``bench query``'s load: clients sending one mode's queries at once, or one client sending every
mode's queries in turn, and what their answers gave (latencies, errors, cache flags, stage times)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter

import requests

from shopsearch.evaluation.metrics import percentile


class Tally:
    """What one mode's requests gave: latencies, errors by kind, cache flags of the answers."""

    def __init__(self):
        self.latencies: list[float] = []
        self.errors: Counter = Counter()
        self.flags: Counter = Counter()
        self.stages: dict[str, list[float]] = {}  # each pipeline stage's milliseconds (the answers' stage_ms)
        self.busy_s = 0.0  # time spent waiting for this mode's answers

    def send(self, make_request, session, q: str, lock: threading.Lock | None = None) -> None:
        start = time.perf_counter()
        try:
            r = make_request(session, q)
            ok = r.status_code == 200
            body = r.json() if ok else None
            why = None if ok else f"HTTP {r.status_code}"
        except (requests.RequestException, ValueError) as e:
            ok, body, why = False, None, type(e).__name__
        elapsed = time.perf_counter() - start
        with lock or contextlib.nullcontext():
            self.busy_s += elapsed
            if not ok:
                self.errors[why] += 1
                return
            self.latencies.append(elapsed * 1000)
            if isinstance(body, dict) and not body.get("cached"):
                for stage, ms in (body.get("stage_ms") or {}).items():
                    self.stages.setdefault(stage, []).append(ms)
            if isinstance(body, dict) and "cached" in body:
                self.flags["answers"] += 1
                self.flags["cached"] += bool(body.get("cached"))
                if not body.get("cached"):  # a cached answer repeats its first look-up's flags
                    self.flags[f"vector_{body.get('vector_cache') or ('local' if body.get('vector_cached') else 'encoded')}"] += 1

    def summary(self, wall: float) -> dict:
        latencies, errors, flags = self.latencies, self.errors, self.flags
        out = {"p50_ms": round(percentile(latencies, 50), 2), "p95_ms": round(percentile(latencies, 95), 2),
               "p99_ms": round(percentile(latencies, 99), 2), "qps": round(len(latencies) / max(wall, 1e-9), 2),
               "requests": len(latencies) + sum(errors.values()), "errors": sum(errors.values())}
        if errors:
            out["error_kinds"] = dict(errors)
        if self.stages:
            out["stage_ms_p50"] = {stage: round(percentile(ms, 50), 3) for stage, ms in self.stages.items()}
        if flags["answers"]:
            n = flags["answers"]
            fresh = n - flags["cached"]  # answers not from the result cache asked the vector cache
            out["cache_hit_rate"] = {"results": round(flags["cached"] / n, 4),
                                     "query_vectors_local": round(flags["vector_local"] / max(fresh, 1), 4),
                                     "query_vectors_shared": round(flags["vector_shared"] / max(fresh, 1), 4)}
        return out


def run_mode(make_request, queries: list[str], clients: int, seconds: float) -> dict:
    """Send requests from ``clients`` threads for ``seconds``, each query of ``queries`` once, in order."""
    lock = threading.Lock()
    cursor = iter(queries)
    tally = Tally()
    deadline = time.monotonic() + seconds

    def client_loop() -> None:
        session = requests.Session()
        while time.monotonic() < deadline:
            with lock:
                q = next(cursor, None)
            if q is None:
                return
            tally.send(make_request, session, q, lock)

    started = time.monotonic()
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally.summary(time.monotonic() - started)


def run_in_turn(sends: dict, queries: dict[str, list[str]], seconds: float) -> dict[str, dict]:
    """One client sending each mode's next query in turn (``direct_bm25``, then the pass-through,
    then hybrid..., round after round) for ``seconds`` in all: a drift of the machine's speed
    reaches every mode alike, so their differences are paired. A mode's QPS is one over its mean
    latency (its answers per second of waiting for them)."""
    session = requests.Session()
    tallies = {mode: Tally() for mode in sends}
    cursors = {mode: iter(queries[mode]) for mode in sends}
    deadline = time.monotonic() + seconds
    live = list(sends)
    while live and time.monotonic() < deadline:
        for mode in list(live):
            q = next(cursors[mode], None)
            if q is None:
                live.remove(mode)
                continue
            tallies[mode].send(sends[mode], session, q)
    return {mode: t.summary(t.busy_s) for mode, t in tallies.items()}
