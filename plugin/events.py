"""Click logs: every shopper search gets a ``query_id`` and its impressions are recorded;
``POST /events`` takes click, add-to-cart and purchase events (one, a list, or ``{"events": [...]}``).

Events are validated (a 400 names the field and the event's index in the batch), shopper ids are
replaced by pseudonyms, unknown query ids are accepted but flagged, and everything is written by
the buffered bulk writer, which never blocks a search and flushes on shutdown. An event's id is
derived from its content when the client sends none, so the same event sent twice is stored once.
"""

from __future__ import annotations

import time
import uuid

from flask import Blueprint, Flask, current_app, jsonify, request

from opensearchpy import OpenSearchException

from shopsearch.index.ubi import ensure_ubi_indices, query_document, recorded_queries
from shopsearch.learn.event_writer import BulkBuffer
from shopsearch.learn.events import drop_duplicates, pseudonymise_event, validate_batch
from shopsearch.plugin.cluster import cluster_client
from shopsearch.plugin.errors import BadRequest
from shopsearch.plugin.safety import parse_json_body
from shopsearch.plugin.schemas import EventBatch, EventsAccepted, contract
from shopsearch.privacy import pseudonym
from shopsearch.query.caches import LRU

bp = Blueprint("events", __name__)
EXTENSION = "shopsearch.events"


def init_app(app: Flask) -> None:
    """The buffered event writer over the app's client, and ``POST /events``."""
    settings = app.config["SHOPSEARCH"]
    client = cluster_client(app)
    try:
        ensure_ubi_indices(client, settings)
    except OpenSearchException:  # the cluster may be down at start: the writer retries, searches go on
        pass
    app.extensions[EXTENSION] = BulkBuffer(client, settings.home_path / "events-spill", settings.event_flush_seconds)
    # query ids this process answered recently -> catalogue (their documents may still be buffered)
    app.extensions[EXTENSION + ".recent"] = LRU(100_000)
    app.register_blueprint(bp)


def buffer() -> BulkBuffer:
    return current_app.extensions[EXTENSION]


def record_search(catalogue: str, user: str | None, result: dict) -> str:
    """Give a search its query id and queue the query with its impressions (non-blocking)."""
    settings = current_app.config["SHOPSEARCH"]
    query_id = uuid.uuid4().hex
    current_app.extensions[EXTENSION + ".recent"].put(query_id, catalogue)
    who = pseudonym(user, settings.pseudonym_salt) if user else None
    buffer().add(settings.ubi_queries_index, query_id, query_document(query_id, who, catalogue, result))
    return query_id


@bp.post("/events")
@contract(body=EventBatch, answer=EventsAccepted, status=202)
def post_events():
    """Record click, add-to-cart and purchase events (an EventError is a 400 naming the field)."""
    settings = current_app.config["SHOPSEARCH"]
    payload = parse_json_body(kinds=(dict, list))
    if payload == {}:
        raise BadRequest("the body must be JSON: an event, a list of events, or {\"events\": [...]}")
    events = drop_duplicates(validate_batch(payload))
    recent = current_app.extensions[EXTENSION + ".recent"]
    ids = sorted({e["query_id"] for e in events if e.get("query_id")})
    known = {q: recent.get(q) for q in ids if recent.get(q) is not None}
    known.update(recorded_queries(buffer().client, settings, [q for q in ids if q not in known]))
    received = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    flagged = []
    for event in events:
        event = pseudonymise_event(event, settings.pseudonym_salt)  # also re-derives content-based ids
        event["received_at"] = received
        event["unknown_query_id"] = bool(event.get("query_id")) and event["query_id"] not in known
        if not event.get("catalogue") and event.get("query_id") in known:
            event["catalogue"] = known[event["query_id"]]  # the catalogue of the search it follows
        if event["unknown_query_id"]:
            flagged.append(event["event_id"])
        buffer().add(settings.ubi_events_index, event["event_id"], event)
    return jsonify(accepted=len(events), unknown_query_ids=flagged), 202
