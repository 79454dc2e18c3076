"""An index version's ``_meta``, changed by read-merge-write under a lock, so no writer erases another's change.

OpenSearch keeps ``_meta`` whole in the mapping and offers no compare-and-set on it: a
``put_mapping`` replaces it with whatever the writer read, however long ago. Every writer
(ingest's scales and projection, the rollout state, popularity's scale, the served ranker)
goes through :func:`update_meta`, which takes a lock, reads ``_meta`` afresh, applies the
writer's change to that and writes it back before releasing.

The lock is a document of the ``shopsearch_locks`` index, created with ``op_type=create`` (which
OpenSearch applies atomically: of two writers only one creates it) and carrying a lease: a
holder that died leaves a lock that the next writer removes once its lease is past, with
``if_seq_no``/``if_primary_term`` so that it removes exactly the stale lock it read. The
alternative, the state in a document of its own with ``if_seq_no`` updates, would move every
reader of ``_meta`` (the searcher's model, status, rollback) off the mapping; the lock keeps
``_meta`` where readers look, at the price of a create and a delete per change (a few ms).
"""

from __future__ import annotations

import time
import uuid
from contextlib import contextmanager
from typing import Callable, Iterator

from opensearchpy import ConflictError, NotFoundError, OpenSearch, RequestError

from shopsearch.errors import ConcurrentChange

LOCKS_INDEX = "shopsearch_locks"
LEASE_S = 30.0   # a holder that died blocks other writers this long at most
WAIT_S = 60.0    # how long a writer waits for a live holder before giving up
_created: set[int] = set()


def _ensure_locks_index(client: OpenSearch) -> None:
    if id(client) in _created:
        return
    try:  # one primary, no replica on a single node: the cluster stays green
        client.indices.create(index=LOCKS_INDEX, body={"settings": {"number_of_shards": 1,
                                                                     "auto_expand_replicas": "0-1"}})
    except RequestError as e:
        if e.error != "resource_already_exists_exception":
            raise
    _created.add(id(client))


@contextmanager
def locked(client: OpenSearch, name: str, lease: float = LEASE_S, wait: float = WAIT_S) -> Iterator[None]:
    """Hold the lock ``name`` across processes and machines (all that share the cluster)."""
    _ensure_locks_index(client)
    owner, deadline = uuid.uuid4().hex, time.monotonic() + wait
    while True:
        try:
            client.index(index=LOCKS_INDEX, id=name, op_type="create",
                         body={"owner": owner, "expires": time.time() + lease})
            break
        except ConflictError:
            pass
        try:
            held = client.get(index=LOCKS_INDEX, id=name)
        except NotFoundError:
            continue
        if held["_source"]["expires"] < time.time():  # its holder died: remove exactly that lock
            try:
                client.delete(index=LOCKS_INDEX, id=name, if_seq_no=held["_seq_no"],
                              if_primary_term=held["_primary_term"])
            except (ConflictError, NotFoundError):
                pass
            continue
        if time.monotonic() > deadline:
            raise ConcurrentChange(f"the lock {name!r} is held by another writer (owner {held['_source']['owner']}); "
                                   f"try again once it is done")
        time.sleep(0.02)
    try:
        yield
    finally:
        try:
            held = client.get(index=LOCKS_INDEX, id=name)
            if held["_source"]["owner"] == owner:
                client.delete(index=LOCKS_INDEX, id=name, if_seq_no=held["_seq_no"],
                              if_primary_term=held["_primary_term"])
        except (ConflictError, NotFoundError):
            pass


def read_meta(client: OpenSearch, index: str) -> dict:
    """The ``_meta`` of ``index``'s mapping (model, model version, scales, rollout state, ...)."""
    return client.indices.get_mapping(index=index)[index]["mappings"].get("_meta", {})


def update_meta(client: OpenSearch, index: str, change: dict | Callable[[dict], dict | None]) -> dict:
    """Apply ``change`` to ``index``'s current ``_meta`` under its lock; returns the new ``_meta``.

    ``change`` is a dict of top-level keys to set, or a function given the fresh ``_meta`` (to
    change in place, or to return the new one): a nested change (one scale among the scales) must be
    a function, so that it applies to what is there now, not to what the caller read earlier.
    """
    with locked(client, f"meta:{index}"):
        meta = read_meta(client, index)
        if callable(change):
            meta = change(meta) or meta
        else:
            meta.update(change)
        client.indices.put_mapping(index=index, body={"_meta": meta})
    return meta
