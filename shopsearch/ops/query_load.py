"""``bench query``'s load: clients sending one mode's queries at once, or one client sending every
mode's queries in turn, and what their answers gave (latencies, errors, cache flags, stage times)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from typing import Callable

import psutil
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


QUIET_CORES = 0.15  # the machine's CPU in use, in cores, under which it counts as idle (idle services: 0.02-0.06)


def machine_busy(seconds: float) -> float:
    """Cores of this machine in use over the next ``seconds`` (every process: the proxy's workers,
    OpenSearch, the Celery workers)."""
    return psutil.cpu_percent(interval=seconds) / 100.0 * (psutil.cpu_count() or 1)


def wait_for_quiet(busy: Callable[[float], float] = machine_busy, *, below: float = QUIET_CORES, rounds: int = 2,
                   interval: float = 1.0, most: int = 180) -> dict:
    """Sample ``busy(interval)`` until ``rounds`` samples in a row are under ``below`` cores, at most
    ``most`` samples. A freshly started proxy worker prepares its ranker's product text for some
    seconds after its first answers (``LiveRankers``), and OpenSearch may still merge; a mode timed
    meanwhile shares the cores with them (direct BM25, timed first, read 211-584 QPS that way
    against 800-1,160 on an idle machine). ``{"quiet": bool, "waited_s": ..., "cores": last sample}``.

    >>> samples = iter([1.4, 0.9, 0.05, 0.3, 0.04, 0.02, 0.9])
    >>> wait_for_quiet(lambda s: next(samples))
    {'quiet': True, 'waited_s': 6.0, 'cores': 0.02}
    >>> wait_for_quiet(lambda s: 1.0, most=3)
    {'quiet': False, 'waited_s': 3.0, 'cores': 1.0}
    """
    calm = taken = 0
    cores = 0.0
    while taken < most and calm < rounds:
        cores = busy(interval)
        taken += 1
        calm = calm + 1 if cores < below else 0
    return {"quiet": calm >= rounds, "waited_s": round(taken * interval, 1), "cores": round(cores, 3)}


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User + system CPU seconds the processes have used so far (one that is gone counts 0)."""
    total = 0.0
    for p in processes:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def machine_cpu_seconds() -> float:
    """CPU seconds every core of this machine has spent on its own work so far: not idle, not
    waiting for I/O, not taken by the hypervisor (steal); guests' time is already in user time."""
    t = psutil.cpu_times()
    left_out = ("idle", "iowait", "steal", "guest", "guest_nice")
    return sum(t) - sum(getattr(t, name, 0.0) for name in left_out)


class CpuMeter:
    """Where the CPU of a mode goes: each named group of processes (the proxy's, OpenSearch's, this
    load client's), the rest of the machine as ``other``. ``groups`` maps a name to a function
    giving that group's processes now (the proxy's workers are looked up at each reading)."""

    def __init__(self, groups: dict[str, Callable[[], list[psutil.Process]]]):
        self.groups = groups

    def read(self) -> dict[str, float]:
        found = {name: cpu_seconds(processes()) for name, processes in self.groups.items()}
        found["machine"] = machine_cpu_seconds()
        return found


def cpu_per_request(before: dict[str, float], after: dict[str, float], requests: int, wall_s: float) -> dict:
    """Milliseconds of CPU a request for each group between two readings, ``other`` for the rest
    of the machine, ``total`` for all of it, and the cores the whole machine kept busy (pure).

    >>> cpu_per_request({"proxy": 1.0, "opensearch": 5.0, "machine": 10.0},
    ...                 {"proxy": 1.5, "opensearch": 5.8, "machine": 11.6}, 100, 1.0)
    {'proxy': 5.0, 'opensearch': 8.0, 'other': 3.0, 'total': 16.0, 'cores_in_use': 1.6}
    """
    n = max(requests, 1)
    spent = {name: max(after[name] - before[name], 0.0) for name in before if name != "machine"}
    machine = max(after["machine"] - before["machine"], 0.0)
    out = {name: round(s * 1000 / n, 3) for name, s in spent.items()}
    out["other"] = round(max(machine - sum(spent.values()), 0.0) * 1000 / n, 3)
    out["total"] = round(machine * 1000 / n, 3)
    out["cores_in_use"] = round(machine / max(wall_s, 1e-9), 2)
    return out
