"""A buffered bulk writer for click logs: the search path only appends to a list.

A background thread flushes every ``interval`` seconds (or sooner when ``max_batch`` documents
wait) with one ``_bulk`` request. Documents carry their own ids, so a retried flush stores each
once. What OpenSearch refuses for a retryable reason stays in the buffer for the next flush. On
``close`` (registered with ``atexit``, so a gunicorn worker's graceful exit runs it) the buffer
is flushed; if OpenSearch cannot take it then, the documents are written to a spill file that the
next ``BulkBuffer`` on the same directory replays first. Nothing is lost on shutdown.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path

from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import ConnectionError as ClusterUnreachable
from opensearchpy.exceptions import TransportError

log = logging.getLogger("shopsearch.events")


class BulkBuffer:
    def __init__(self, client: OpenSearch, spill_dir: Path, interval: float = 1.0, max_batch: int = 500):
        self.client, self.spill_dir = client, Path(spill_dir)
        self.interval, self.max_batch = interval, max_batch
        self._docs: list[dict] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flush_lock = threading.Lock()
        self._replayed: list[Path] = []  # deleted only once their documents are stored
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        self._replay_spills()
        self._thread = threading.Thread(target=self._run, name="bulk-buffer", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def add(self, index: str, doc_id: str, doc: dict) -> None:
        """Queue one document (never blocks on OpenSearch)."""
        with self._lock:
            self._docs.append({"_op_type": "index", "_index": index, "_id": doc_id, "_source": doc})
            if len(self._docs) >= self.max_batch:
                self._wake.set()

    def pending(self) -> int:
        with self._lock:
            return len(self._docs)

    def flush(self) -> int:
        """Write what is buffered now; returns how many documents were stored."""
        with self._flush_lock:
            with self._lock:
                batch, self._docs = self._docs, []
            if not batch:
                return 0
            retry, stored = [], 0
            try:
                for ok, item in helpers.streaming_bulk(self.client, batch, raise_on_error=False, raise_on_exception=False,
                                                       max_retries=2, initial_backoff=0.5, chunk_size=500):
                    info = item.get("index", {})
                    if ok:
                        stored += 1
                    elif info.get("status") in (429, 502, 503, 504) or info.get("status") is None:
                        retry.append(next(d for d in batch if d["_id"] == info.get("_id")))
                    else:  # a document OpenSearch will never take (mapping error): keep it on disk, say so
                        log.error("event %s rejected by OpenSearch: %s", info.get("_id"), info.get("error"))
                        self._spill([next(d for d in batch if d["_id"] == info.get("_id"))], "rejected")
            except (ClusterUnreachable, TransportError) as e:
                log.warning("event flush failed (%s); %d documents kept for the next try", e, len(batch))
                retry = batch
            if retry:
                with self._lock:
                    self._docs[:0] = retry
            elif self._replayed:
                for path in self._replayed:
                    path.unlink(missing_ok=True)
                self._replayed.clear()
            return stored

    def close(self) -> None:
        """Stop the thread and flush; spill to disk whatever OpenSearch cannot take now."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self.flush()
        with self._lock:
            left, self._docs = self._docs, []
        if left:
            self._spill(left, "pending")

    # --- internals ---------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the thread must survive anything; the documents stay buffered
                log.exception("event flush crashed")
            time.sleep(0)  # yield

    def _spill(self, docs: list[dict], kind: str) -> None:
        path = self.spill_dir / f"{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for d in docs:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
        log.warning("%d event documents spilled to %s", len(docs), path)

    def _replay_spills(self) -> None:
        for path in sorted(self.spill_dir.glob("pending-*.jsonl")):
            claimed = path.with_suffix(".replaying")
            try:
                path.rename(claimed)  # one process replays each file
            except OSError:
                continue
            with open(claimed, encoding="utf-8") as f:
                docs = [json.loads(line) for line in f if line.strip()]
            with self._lock:
                self._docs.extend(docs)
            self._replayed.append(claimed)
