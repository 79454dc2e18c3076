"""Click logs in OpenSearch, in the User Behavior Insights shape: ``ubi_queries`` and ``ubi_events``.

Queries and events are written through a :class:`~shopsearch.bulk_buffer.BulkBuffer` (the
search path never waits on it). Shopper ids are stored only as pseudonyms
(:func:`shopsearch.events.pseudonym`, salted by the ``pseudonym_salt`` setting).
"""

from __future__ import annotations

import logging
import time

from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import AuthorizationException, NotFoundError, RequestError

from shopsearch.errors import ConcurrentChange
from shopsearch.index.mapping import load_template, render
from shopsearch.settings import Settings

log = logging.getLogger(__name__)

STORED_AT_PIPELINE = "shopsearch_stored_at"
FORGET_ROUNDS = 5  # delete-by-query passes over an index while the shopper's documents change under it


def ensure_ubi_indices(client: OpenSearch, settings: Settings) -> list[str]:
    """Create the click-log indices, or add a newer version's fields; stamp every event ``stored_at``
    and set the query log's refresh interval. Answers what this client's user may not do (``[]``:
    everything done).

    ``stored_at`` is OpenSearch's own clock when it took the event in (an ingest pipeline's ``set``
    of ``_ingest.timestamp``, the events index's ``default_pipeline``), whoever writes it: profile
    builds follow it, not the shopper's ``timestamp`` or the middleware's ``received_at`` (an event
    journaled through an outage is stored after a build that ran meanwhile, and still reaches the next).

    On a secured cluster the proxy's faces may create the two indices and add fields to them, but
    not put an ingest pipeline or change an index's settings (``docker/security/roles.yml``); the
    workers' user may, and each worker does this at its start (``workers/tasks.py``). So the indices
    always have their mappings before the first search is recorded, whichever process starts
    first, and the rest follows from the first worker (events stored before it have no
    ``stored_at``; profile builds read their ``received_at``).
    """
    params = {"number_of_replicas": settings.number_of_replicas,
              "refresh_interval": refresh_interval(settings.ubi_queries_refresh_seconds)}
    for template, name in (("ubi_queries", settings.ubi_queries_index), ("ubi_events", settings.ubi_events_index)):
        body = render(load_template(template), params)
        try:
            client.indices.create(index=name, body=body)
        except RequestError as e:
            if e.error != "resource_already_exists_exception":
                raise
            # mappings only grow: a newer version's fields are added to the index (or another process made it)
            client.indices.put_mapping(index=name, body=body["mappings"])
    left = []
    try:
        client.ingest.put_pipeline(id=STORED_AT_PIPELINE, body={
            "description": "shopsearch: when OpenSearch stored the event",
            "processors": [{"set": {"field": "stored_at", "value": "{{_ingest.timestamp}}"}}]})
        client.indices.put_settings(index=settings.ubi_events_index,
                                    body={"index": {"default_pipeline": STORED_AT_PIPELINE}})
    except AuthorizationException:
        left.append("the events' stored_at pipeline")
    try:  # an index an earlier version made refreshed every second: it takes the setting too
        client.indices.put_settings(index=settings.ubi_queries_index,
                                    body={"index": {"refresh_interval": params["refresh_interval"]}})
    except AuthorizationException:
        left.append("the query log's refresh interval")
    return left


def refresh_interval(seconds: float) -> str:
    """OpenSearch's ``refresh_interval`` for a number of seconds (0 or less: only on request).

    >>> refresh_interval(30.0), refresh_interval(0.5), refresh_interval(0)
    ('30s', '500ms', '-1')
    """
    if seconds <= 0:
        return "-1"
    return f"{seconds:g}s" if seconds == int(seconds) else f"{round(seconds * 1000)}ms"


def query_document(query_id: str, user: str | None, catalogue: str, result: dict) -> dict:
    """The ``ubi_queries`` document of one shopper search (pure); positions count from the first page.

    >>> query_document("q", None, "c", {"page": 1, "size": 2, "hits": [{"id": "a"}]})["impressions"]
    [{'object_id': 'a', 'position': 3}]
    """
    first = 1 + int(result.get("page") or 0) * int(result.get("size") or 0)
    return {"query_id": query_id, "user_id": user, "catalogue": catalogue, "index": result.get("index"),
            "model_version": result.get("model_version"), "user_query": result.get("q"),
            "strategy": result.get("strategy"), "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "query_response_hit_ids": [h["id"] for h in result.get("hits", [])],
            "impressions": [{"object_id": h["id"], "position": n} for n, h in enumerate(result.get("hits", []), first)]}


def recorded_queries(client: OpenSearch, settings: Settings, ids: list[str]) -> dict[str, str]:
    """``{query_id: catalogue}`` for the query ids that are recorded."""
    if not ids:
        return {}
    found = client.mget(index=settings.ubi_queries_index, body={"ids": ids}, _source_includes=["catalogue"])
    return {d["_id"]: d["_source"].get("catalogue") for d in found["docs"] if d.get("found")}


def stored_since(since: str) -> dict:
    """The query for events OpenSearch took in after ``since``: by their ``stored_at``, and an event
    written before the stamp existed (no ``stored_at``) by the middleware's ``received_at``."""
    return {"bool": {"should": [{"range": {"stored_at": {"gt": since}}},
                                {"bool": {"must_not": {"exists": {"field": "stored_at"}},
                                          "filter": {"range": {"received_at": {"gt": since}}}}}],
                     "minimum_should_match": 1}}


def stored_mark(event: dict) -> str | None:
    """When an event was taken in, as :func:`stored_since` reads it: ``stored_at``, else ``received_at``.

    >>> stored_mark({"stored_at": "2024-05-02T10:00:00Z", "received_at": "2024-05-02T09:59:59Z"})
    '2024-05-02T10:00:00Z'
    >>> stored_mark({"received_at": "2024-05-02T09:59:59Z"})
    '2024-05-02T09:59:59Z'
    """
    return event.get("stored_at") or event.get("received_at")


def user_events(client: OpenSearch, settings: Settings, user: str, catalogue: str | None = None,
                since: str | None = None, stored_after: str | None = None) -> list[dict]:
    """Every stored event of one (pseudonymous) shopper, oldest first; ``since``: with a ``timestamp``
    after it; ``stored_after``: taken in after it (:func:`stored_since`)."""
    filters = [{"term": {"user_id": user}}]
    if catalogue:
        filters.append({"term": {"catalogue": catalogue}})
    if since:
        filters.append({"range": {"timestamp": {"gt": since}}})
    if stored_after:
        filters.append(stored_since(stored_after))
    query = {"query": {"bool": {"filter": filters}}, "sort": [{"timestamp": "asc"}]}
    return [h["_source"] for h in helpers.scan(client, index=settings.ubi_events_index, query=query, preserve_order=True)]


def forget_user(client: OpenSearch, settings: Settings, user: str) -> dict[str, int]:
    """Delete every event, query and profile of one (pseudonymous) shopper; returns the counts.

    Each index is refreshed first, so what was written a moment ago is found too (the query log
    refreshes only every ``ubi_queries_refresh_seconds``), then emptied of the shopper by
    ``delete_by_query``: the permissions the internal face's user holds on a secured cluster
    (``docker/security/roles.yml``: refresh and delete-by-query on these three indices). A document
    changed while it was being deleted (a profile rewritten meanwhile) is a version conflict that
    the pass skips, so the pass runs again until none is left (at most ``FORGET_ROUNDS``, then
    :class:`ConcurrentChange`, a 409 saying to forget the shopper again).
    """
    counts = {}
    for index in (settings.ubi_events_index, settings.ubi_queries_index, settings.profiles_index):
        field = "user_id" if index != settings.profiles_index else "user"
        try:
            client.indices.refresh(index=index)
        except NotFoundError:  # nothing was ever stored there
            counts[index] = 0
            continue
        counts[index] = 0
        for _ in range(FORGET_ROUNDS):  # a document changed meanwhile (a profile rewritten) is a conflict: again
            done = client.delete_by_query(index=index, body={"query": {"term": {field: user}}}, refresh=True,
                                          conflicts="proceed")
            counts[index] += int(done.get("deleted", 0))
            if not done.get("version_conflicts"):
                break
            log.info("%s: %d of the shopper's documents changed while they were deleted; deleting them again",
                     index, done["version_conflicts"])
        else:
            raise ConcurrentChange(f"{index}: the shopper's documents kept changing while they were deleted "
                                   f"({counts[index]} deleted so far); forget the shopper again for the rest")
    return counts
