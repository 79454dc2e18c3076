"""A rollout's state, kept with the index version it builds (its mapping's ``_meta.rollout``).

::

    {"step": "created" | "filled" | "verified" | "swapped", "model", "model_version",
     "source": {"kind": "file", "path", "mapping", "limit"} | {"kind": "index", "index"},
     "origin": <the live index when it started>, "expected", "docs", "verified": {...},
     "started_at", "updated_at", "finished_at", "previous", "history": [{"at", "action", "from", "to"}]}

No separate state index: a version carries its own history and loses it with itself. Each step
is recorded when it is done, so ``reindex`` called again after a crash finds the unfinished
version for the same model version and source and continues from its step (chunks already
written with the new model are skipped by their content hash) instead of starting another
version. A crash anywhere before the swap leaves the alias where it was.

``previous`` is set on a version each time it goes live (swap, promote, rollback), so
``rollback`` moves the alias back in one step; old versions are never deleted here.
"""

from __future__ import annotations

import time

from opensearchpy import OpenSearch

from shopsearch.index.meta import read_meta, update_meta
from shopsearch.index.versions import READ_ALIAS, switch_alias

STEPS = ("created", "filled", "verified", "swapped")
HISTORY_KEPT = 20


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def record(client: OpenSearch, index: str, **changes) -> dict:
    """Merge ``changes`` into ``_meta.rollout`` of ``index`` (under the ``_meta`` lock); returns the new state."""
    def merge(meta: dict) -> None:
        meta["rollout"] = {**meta.get("rollout", {}), **changes, "updated_at": now()}
    return update_meta(client, index, merge)["rollout"]


def swap_alias(client: OpenSearch, catalogue: str, index: str, action: str, expected=READ_ALIAS) -> str | None:
    """Point the alias at ``index`` and remember where it came from (for rollback).

    ``expected``: where the caller saw the alias when it decided to move it; if it moved since,
    :class:`~shopsearch.errors.ConcurrentChange` and nothing changes (``versions.switch_alias``)."""
    previous = switch_alias(client, catalogue, index, expected)
    state = read_meta(client, index).get("rollout", {})
    if previous == index:  # already live: a crash came between the alias call and this record
        previous = state.get("origin")
    event = {"at": now(), "action": action, "from": previous, "to": index}
    changes = {"history": (state.get("history", []) + [event])[-HISTORY_KEPT:], "swapped_at": event["at"]}
    if previous and previous != index:
        changes["previous"] = previous
    if state.get("step") == "verified":
        changes.update(step="swapped", finished_at=event["at"])
    record(client, index, **changes)
    return previous


def count_docs(client: OpenSearch, index: str) -> int:
    """The documents of ``index``, after a refresh."""
    client.indices.refresh(index=index)
    return client.count(index=index)["count"]
