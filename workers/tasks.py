"""Celery tasks. Each takes ids or small JSON payloads, never objects.

Ingest is a chain per chunk: ``shopsearch.encode.chunk`` (encode queue, GPU workers when
present) -> ``shopsearch.ingest.write`` (ingest queue). Both are acknowledged late and
idempotent (document id = catalogue id), so a chunk whose worker died is simply run again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from functools import lru_cache, wraps

from celery.result import allow_join_result
from celery.signals import worker_ready
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import ConnectionTimeout, OpenSearchException, TransportError

from shopsearch.cluster import connect
from shopsearch.index.ubi import ensure_ubi_indices
from shopsearch.ingest.encode import encode_chunk, fit_projection
from shopsearch.ingest.write import write_chunk
from shopsearch.learn.popularity import update_popularity
from shopsearch.learn.profile_update import recent_catalogues, update_profiles
from shopsearch.learn.reindex import check_coordinator_queues
from shopsearch.settings import Settings, load_settings
from shopsearch.workers.app import app
from shopsearch.workers.dispatch import reindex, run_loop

log = logging.getLogger("shopsearch.workers")


@lru_cache(maxsize=1)
def _settings():
    return load_settings()


@lru_cache(maxsize=1)
def _client():
    return connect(_settings(), timeout=120)


def timed(fn):
    """One wrapper for timing and logging every task."""
    @wraps(fn)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            log.info("task %s took %.2fs", fn.__name__, time.perf_counter() - start)
    return wrapper


def ensure_click_logs(settings: Settings) -> list[str]:
    """The click-log indices with their mappings, the events' ``stored_at`` pipeline and the query
    log's refresh interval (``index/ubi.py``), as far as this worker's OpenSearch user may set them;
    answers what it may not. On a secured cluster only the workers' user may put the pipeline and
    the settings, so each worker does this at its start."""
    return ensure_ubi_indices(connect(settings, timeout=30), settings)


@worker_ready.connect
def _click_logs_at_start(**_) -> None:
    def run() -> None:
        try:
            left = ensure_click_logs(_settings())
        except (OpenSearchException, OSError) as e:  # the middleware's writer makes them before its first send
            log.warning("click-log indices not checked at this worker's start: %s", e)
            return
        if left:
            log.warning("this worker's OpenSearch user may not set %s", " and ".join(left))
    # on a thread: a cluster that is slow to answer must not hold the worker back from its tasks
    threading.Thread(target=run, name="click-logs", daemon=True).start()


@app.task(name="shopsearch.ping")
def ping(payload: dict | None = None) -> dict:
    """Answer with the worker's pid and host: proves a task crossed the broker into the worker."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "echo": payload}


@app.task(name="shopsearch.encode.chunk", acks_late=True)
@timed
def encode_chunk_task(payload: dict) -> dict:
    """Encode one chunk of clean items with the model recorded for its index."""
    return encode_chunk(_settings(), payload)


class ClusterUnavailable(RuntimeError):
    """Items of a chunk were refused because the cluster is starting or overloaded (503, 429): write it again."""


RETRYABLE_ITEM_STATUS = (429, 503)


@app.task(name="shopsearch.ingest.write", acks_late=True,
          autoretry_for=(OSConnectionError, ConnectionTimeout, ClusterUnavailable),
          retry_backoff=1, retry_backoff_max=5, max_retries=120)
@timed
def write_chunk_task(encoded: dict) -> dict:
    """Bulk-write an encoded chunk; returns counts and per-item failures.

    OpenSearch down (connection refused) or restarting (items, or the lookup of what the stored
    products keep, answered 503 while its shards recover): the whole chunk is written again (document ids make that idempotent) every few
    seconds (at most 5 s apart, so a run finishes soon after the node is back), for up to about
    ten minutes; a refusal for good (a mapping error) is reported item by item."""
    try:
        outcome = write_chunk(_client(), encoded)
    except TransportError as e:  # the lookup of what the products keep, refused while shards recover
        if e.status_code in RETRYABLE_ITEM_STATUS:
            raise ClusterUnavailable(f"chunk {encoded['chunk']}: the cluster answered {e.status_code} ({e.error})") from e
        raise
    if any(f.get("status") in RETRYABLE_ITEM_STATUS for f in outcome["failures"]):
        raise ClusterUnavailable(f"{len(outcome['failures'])} items of chunk {encoded['chunk']} refused for now")
    return outcome


@app.task(name="shopsearch.encode.fit_projection", acks_late=True)
@timed
def fit_projection_task(payload: dict) -> dict:
    """Learn the image -> text projection from (text, image path) pairs; saves it, returns its path."""
    return fit_projection(_settings(), payload)


@app.task(name="shopsearch.profiles.update", acks_late=True, autoretry_for=(OSConnectionError, ConnectionTimeout),
          retry_backoff=2, max_retries=5)
@timed
def update_profiles_task(catalogue: str, users: list[str] | None = None, since: str | None = None) -> dict:
    """Update shopper profiles from click logs (on demand, or periodically with ``since``)."""
    return update_profiles(_client(), _settings(), catalogue, users, since)


@app.task(name="shopsearch.profiles.popularity", acks_late=True, autoretry_for=(OSConnectionError, ConnectionTimeout),
          retry_backoff=2, max_retries=5)
@timed
def update_popularity_task(catalogue: str) -> dict:
    """Recount product popularity from click logs."""
    return update_popularity(_client(), _settings(), catalogue)


# The rollout coordinator waits for the encode -> write chains it dispatches, so it must never
# hold a process those chains need: with the default workers (encode; celery,ingest, one process
# each) a coordinator on ``celery`` or ``ingest`` would block the only process that writes its
# chunks. It is routed to a queue of its own, ``rollout``, consumed by a worker of its own
# (worker_queues ``encode;celery,ingest;rollout``), and refuses to start in a worker that also
# consumes a chunk queue. It is acknowledged late, like the chunks: if its worker dies, RabbitMQ
# hands it to the next rollout worker, which resumes from the state in the new version's
# ``_meta.rollout`` (the task id is recorded there, so the same task never builds a second
# version; ``reindex(run_id=...)``). A fine-tuning step resumes from ``loop.json`` the same way.
@app.task(name="shopsearch.rollout.reindex", acks_late=True, reject_on_worker_lost=True, bind=True)
@timed
def reindex_task(self, catalogue: str, model: str | None = None, source: str | None = None, mapping: str | None = None,
                 swap: bool = True, limit: int | None = None) -> dict:
    """Build, verify and (unless ``swap`` is false) swap in a new version of ``catalogue``; see ``shopsearch.learn.reindex``."""
    check_coordinator_queues(app.amqp.queues.consume_from)
    with allow_join_result():  # waiting on chunk results is this task's job, in a process of its own
        return reindex(_settings(), catalogue, model, source, mapping, limit=limit, swap=swap, client=_client(), app=app,
                       run_id=self.request.id)


@app.task(name="shopsearch.finetune.step", acks_late=True, reject_on_worker_lost=True)
@timed
def finetune_step(version: str, step: str, models_dir: str | None = None) -> dict:
    """One step of the learning loop (``shopsearch.learn.loop.STEPS``), resumed from its state; on the rollout worker.

    ``models_dir`` is the registry of the caller (it must be storage this worker reads too).
    """
    check_coordinator_queues(app.amqp.queues.consume_from)
    with allow_join_result():  # the reindex step waits on encode -> write chunks
        settings = _settings().replace(models_dir=models_dir) if models_dir else _settings()
        state = run_loop(settings, "", version=version, stop_after=step, app=app)
    return {"version": version, "step": step, "done": step in state["steps"], "result": state["steps"].get(step)}


@app.task(name="shopsearch.profiles.update_recent", acks_late=True, autoretry_for=(OSConnectionError, ConnectionTimeout),
          retry_backoff=2, max_retries=5)
@timed
def update_recent_task(window_seconds: float) -> dict:
    """The periodic run (celery beat): for every catalogue with events received in the last
    ``window_seconds`` (twice the period, so a late run misses nothing), update those shoppers'
    profiles and recount popularity. A profile only takes events newer than itself, so the
    overlap counts nothing twice; after beat was down longer, ``shopsearch profiles update``
    catches up."""
    client, settings = _client(), _settings()
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - window_seconds))
    out = {}
    for catalogue in recent_catalogues(client, settings, since):
        profiles = update_profiles(client, settings, catalogue, since=since)
        out[catalogue] = {**profiles, "popularity": update_popularity(client, settings, catalogue)}
    return out
