"""A buffered bulk writer for click logs, durable before it acknowledges.

The search path and ``POST /events`` hand documents to :meth:`BulkBuffer.add_many`, which appends
them to this process's journal on disk before it returns: an event batch is fsync'd first (a 202
means the events are stored or durably queued); a search's own query record is written to the
operating system (so a killed process loses none) and fsync'd by the background thread at its
next send, within ``interval`` (an fsync per search was a millisecond of the answer on a busy
disk). A background thread sends what waits every ``interval``
seconds (or sooner when ``max_batch`` documents wait) with ``_bulk``; documents carry their own
ids, so a retried write stores each once. A journal segment is deleted only when every document
in it is stored. Nothing is lost when OpenSearch is down (documents wait, in memory and on disk),
when the process stops (``close`` flushes what it can; the journal keeps the rest) or when it is
killed: the next ``BulkBuffer`` on the same directory replays the journals of processes that are
gone. The buffer is bounded (``max_pending``): beyond it :class:`~shopsearch.errors.Overloaded`
(503 with Retry-After) refuses new documents instead of losing old ones. A document OpenSearch
will never take (validation makes that rare) goes to a ``rejected-*.jsonl`` file with its
reason, never silently away; it costs no other document.

``forget`` removes one shopper's documents from the buffer and from every journal on disk, and
records a tombstone so another process's buffer drops them before it writes them.
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
from typing import Callable

from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import ConnectionError as ClusterUnreachable
from opensearchpy.exceptions import TransportError

from shopsearch.clock import parse_time
from shopsearch.errors import Overloaded
from shopsearch.files import pid_alive

log = logging.getLogger("shopsearch.events")
TOMBSTONES = "forgotten.jsonl"


class Journal:
    """This process's write-ahead segments: ``journal-<pid>-<n>.jsonl`` in ``directory``."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.number = 0
        self._file = None
        self.current: Path | None = None
        self.unsynced = False  # written to the operating system, not fsync'd yet

    def append(self, actions: list[dict], sync: bool = True) -> None:
        """Write ``actions`` to the open segment, past Python's buffer; with ``sync``, fsync'd too."""
        if self._file is None:
            self.number += 1
            self.current = self.directory / f"journal-{os.getpid()}-{self.number}-{uuid.uuid4().hex[:6]}.jsonl"
            self._file = open(self.current, "a", encoding="utf-8")
        self._file.write("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in actions))
        self._file.flush()
        if sync:
            self.sync()
        else:
            self.unsynced = True

    def sync(self) -> None:
        """fsync the open segment (everything appended so far is then on disk)."""
        if self._file is not None:
            os.fsync(self._file.fileno())
        self.unsynced = False

    def rotate(self) -> Path | None:
        """Close the open segment, fsync'd (new documents go to a new one), and return it."""
        if self._file is None:
            return None
        if self.unsynced:
            self.sync()
        self._file.close()
        self._file, closed, self.current = None, self.current, None
        return closed

    def orphans(self) -> list[Path]:
        """Segments of processes that are gone (and spills of the former writer), oldest first."""
        return [p for p in self.files() if not owned_by_live_process(p)]

    def files(self) -> list[Path]:
        """Every journal file in the directory: this process's, other live ones', orphans."""
        return [p for kind in ("journal", "replaying", "pending") for p in sorted(self.directory.glob(f"{kind}-*.jsonl"))]


def owned_by_live_process(path: Path) -> bool:
    """Whether ``path`` (``<kind>-<pid>-...``) belongs to another process that is still running."""
    parts = path.stem.split("-")
    pid = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
    return path.name.startswith(("journal-", "replaying-")) and pid != os.getpid() and pid_alive(pid)


class BulkBuffer:
    def __init__(self, client: OpenSearch, spill_dir: Path, interval: float = 1.0, max_batch: int = 500,
                 max_pending: int = 100_000, prepare: Callable[[], object] | None = None):
        """``prepare``: called before the first send until it succeeds once (the middleware's
        creation of the click-log indices, when the cluster was down at its start: a write to an
        index that does not exist would make one without its mapping)."""
        self.client, self.spill_dir = client, Path(spill_dir)
        self._prepare = prepare
        self.interval, self.max_batch, self.max_pending = interval, max_batch, max_pending
        self.rejected = 0
        self._docs: list[dict] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flush_lock = threading.Lock()
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        self._journal = Journal(self.spill_dir)
        self._held: list[Path] = []  # closed segments whose documents are not all stored yet
        self._replay_orphans()
        self._thread = threading.Thread(target=self._run, name="bulk-buffer", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def add(self, index: str, doc_id: str, doc: dict, sync: bool = True) -> None:
        """Queue one document (see :meth:`add_many`)."""
        self.add_many([(index, doc_id, doc)], sync)

    def add_many(self, docs: list[tuple[str, str, dict]], sync: bool = True) -> None:
        """Queue documents: in the journal before this returns, fsync'd with ``sync`` (else by the
        background thread within ``interval``; a killed process loses them neither way); never
        waits on OpenSearch.

        Raises :class:`Overloaded` (nothing queued) when they would take the buffer past ``max_pending``.
        """
        actions = [{"_op_type": "index", "_index": index, "_id": doc_id, "_source": doc} for index, doc_id, doc in docs]
        with self._lock:
            if len(self._docs) + len(actions) > self.max_pending:
                raise Overloaded(f"{len(self._docs)} documents wait to be stored (at most {self.max_pending}, setting "
                                 "event_buffer_max); try again shortly", retry_after=max(1, round(self.interval * 2)))
            self._journal.append(actions, sync)
            self._docs.extend(actions)
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
                closed = self._journal.rotate()
                if closed is not None:
                    self._held.append(closed)
            batch = self._without_forgotten(batch)
            if not batch:
                self._release_held()
                return 0
            retry, stored = [], 0
            by_id = {(d["_index"], d["_id"]): d for d in batch}
            try:
                self._prepared()
                for ok, item in helpers.streaming_bulk(self.client, batch, raise_on_error=False, raise_on_exception=False,
                                                       max_retries=2, initial_backoff=0.5, chunk_size=500):
                    info = item.get("index", {})
                    doc = by_id.get((info.get("_index"), info.get("_id"))) or next(
                        (d for d in batch if d["_id"] == info.get("_id")), None)
                    if ok:
                        stored += 1
                    elif not _refused_for_good(info.get("status")):
                        if doc is not None:
                            retry.append(doc)
                    elif doc is not None:  # one OpenSearch will never take: kept on disk with its reason
                        self.rejected += 1
                        log.error("event %s rejected by OpenSearch: %s", info.get("_id"), info.get("error"))
                        self._write("rejected", [{**doc, "_reason": info.get("error")}])
            except (ClusterUnreachable, TransportError) as e:
                log.warning("event flush failed (%s); %d documents kept for the next try", e, len(batch))
                retry = batch
            if retry:
                with self._lock:
                    self._docs[:0] = retry
            else:
                self._release_held()
            return stored

    def forget(self, field: str, value: str) -> int:
        """Drop every queued document whose ``_source[field]`` is ``value``, here and in every journal on
        disk, and leave a tombstone for the other processes' buffers; returns how many were dropped here."""
        with open(self.spill_dir / TOMBSTONES, "a", encoding="utf-8") as f:
            f.write(json.dumps({"field": field, "value": value, "at": time.time()}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        with self._flush_lock, self._lock:
            before = len(self._docs)
            self._docs = [d for d in self._docs if d["_source"].get(field) != value]
            dropped = before - len(self._docs)
            closed = self._journal.rotate()
            if closed is not None:
                self._held.append(closed)
            for path in self._journal.files() + sorted(self.spill_dir.glob("rejected-*.jsonl")):
                if not owned_by_live_process(path):  # a live process drops them by the tombstone
                    _rewrite_without(path, field, value)
        return dropped

    def close(self) -> None:
        """Stop the thread and flush; what OpenSearch cannot take now stays in the journal for the next start."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self.flush()
        with self._lock:
            self._journal.rotate()
            left = len(self._docs)
        if left:
            log.warning("%d event documents not stored yet; they stay in the journal in %s", left, self.spill_dir)

    # --- internals ---------------------------------------------------------------------------
    def _prepared(self) -> None:
        """Run ``prepare`` once; the cluster still unreachable: raise (the batch waits for the next
        try); any other failure is logged and the documents go as they are."""
        if self._prepare is None:
            return
        try:
            self._prepare()
        except ClusterUnreachable:
            raise
        except Exception:  # noqa: BLE001 - never let the preparation hold the events back for good
            log.exception("preparing the event indices failed; sending the events all the same")
        self._prepare = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the thread must survive anything; the documents stay buffered
                log.exception("event flush crashed")
            time.sleep(0)  # yield

    def _release_held(self) -> None:
        for path in self._held:
            path.unlink(missing_ok=True)
        self._held.clear()

    def _write(self, kind: str, docs: list[dict]) -> None:
        path = self.spill_dir / f"{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for d in docs:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")

    def _without_forgotten(self, batch: list[dict]) -> list[dict]:
        """``batch`` less the documents of a shopper forgotten after they were made."""
        path = self.spill_dir / TOMBSTONES
        if not path.exists():
            return batch
        with open(path, encoding="utf-8") as f:
            stones = [json.loads(line) for line in f if line.strip()]
        return [d for d in batch if not any(d["_source"].get(t["field"]) == t["value"] and _made_at(d) <= t["at"]
                                            for t in stones)]

    def _replay_orphans(self) -> None:
        for path in self._journal.orphans():
            claimed = path.with_name(f"replaying-{os.getpid()}-{uuid.uuid4().hex[:6]}.jsonl")
            try:
                path.rename(claimed)  # one process replays each file
            except OSError:
                continue
            with open(claimed, encoding="utf-8") as f:
                docs = [json.loads(line) for line in f if line.strip()]
            with self._lock:
                self._docs.extend(docs)
            self._held.append(claimed)
            log.warning("replaying %d event documents from %s", len(docs), path.name)


def _refused_for_good(status) -> bool:
    """A document error OpenSearch would repeat (a 4xx other than 429); connection errors come
    back from ``streaming_bulk`` as ``"N/A"`` and are retried like 429 and 5xx.

    >>> [_refused_for_good(s) for s in (400, 409, 429, 503, "N/A", None)]
    [True, True, False, False, False, False]
    """
    return isinstance(status, int) and 400 <= status < 500 and status != 429


def _made_at(action: dict) -> float:
    """When a queued document was made (epoch seconds): its ``received_at`` or ``timestamp``."""
    source = action.get("_source") or {}
    for key in ("received_at", "timestamp"):
        if source.get(key):
            try:
                return parse_time(str(source[key])).timestamp()
            except ValueError:
                continue
    return 0.0


def _rewrite_without(path: Path, field: str, value: str) -> None:
    """Rewrite one journal file without the documents whose ``_source[field]`` is ``value``."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line for line in f if line.strip()]
    except FileNotFoundError:
        return
    kept = [line for line in lines if (json.loads(line).get("_source") or {}).get(field) != value]
    if len(kept) == len(lines):
        return
    tmp = path.with_suffix(".rewrite")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(kept)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
