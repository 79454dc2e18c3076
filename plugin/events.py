"""Click logs: every shopper search gets a ``query_id`` and its impressions are recorded;
``POST /events`` takes click, add-to-cart and purchase events (one, a list, or ``{"events": [...]}``).

Events are validated (a 400 names the field and the event's index in the batch), shopper ids are
replaced by pseudonyms, unknown query ids are accepted but flagged, and everything is written by
the buffered bulk writer, which never blocks a search and flushes on shutdown. An event's id is
derived from its content when the client sends none, so the same event sent twice is stored once.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from datetime import datetime, timezone

from flask import Blueprint, Flask, current_app, jsonify, request

from opensearchpy import ConnectionError as ClusterUnreachable, OpenSearchException

from shopsearch.errors import Overloaded
from shopsearch.index.ubi import ensure_ubi_indices, query_document, recorded_queries
from shopsearch.learn.event_writer import BulkBuffer
from shopsearch.learn.events import drop_duplicates, format_timestamp, pseudonymise_event, validate_batch
from shopsearch.plugin.cluster import cluster_client
from shopsearch.plugin.errors import BadRequest, Forbidden, TooManyRequests, Unauthorized
from shopsearch.plugin.json_body import parse_json_body
from shopsearch.plugin.safety import has_admin_credential
from shopsearch.plugin.schemas import EventBatch, EventsAccepted, contract
from shopsearch.privacy import event_token, pseudonym, token_shopper
from shopsearch.query.caches import LRU, TTLCache

bp = Blueprint("events", __name__)
log = logging.getLogger("shopsearch.events")
TOKEN_HEADER = "X-Event-Token"
EXTENSION = "shopsearch.events"


def init_app(app: Flask) -> None:
    """The buffered event writer over the app's client, and ``POST /events``."""
    settings = app.config["SHOPSEARCH"]
    client = cluster_client(app)

    def click_logs() -> None:
        left = ensure_ubi_indices(client, settings)
        if left:  # a face's user on a secured cluster: the workers' user sets these at their start
            log.info("%s left to the workers (this OpenSearch user may not set it)", " and ".join(left))

    prepare = None
    try:
        click_logs()
    except ClusterUnreachable:  # the cluster is down at start: searches go on, the writer makes them first
        prepare = click_logs
    except OpenSearchException as e:  # searches and events go on; the workers make them at their start
        log.warning("the click-log indices could not be made: %s", e)
    app.extensions[EXTENSION] = BulkBuffer(client, settings.home_path / "events-spill", settings.event_flush_seconds,
                                           max_pending=settings.event_buffer_max, prepare=prepare)
    # query ids this process answered recently -> catalogue (their documents may still be buffered)
    app.extensions[EXTENSION + ".recent"] = LRU(100_000)
    app.extensions[EXTENSION + ".rate"] = TTLCache(100_000, 120.0)  # client address -> (allowance, when)
    app.register_blueprint(bp)


def buffer() -> BulkBuffer:
    return current_app.extensions[EXTENSION]


def record_search(catalogue: str, user: str | None, result: dict) -> str:
    """Give a search its query id and queue the query with its impressions (non-blocking)."""
    settings = current_app.config["SHOPSEARCH"]
    query_id = uuid.uuid4().hex
    current_app.extensions[EXTENSION + ".recent"].put(query_id, catalogue)
    who = pseudonym(user, settings.pseudonym_salt) if user else None
    try:
        # not fsync'd before the answer: the writer's thread does it within a second (event_writer.py)
        buffer().add(settings.ubi_queries_index, query_id, query_document(query_id, who, catalogue, result), sync=False)
    except Overloaded:  # the search is answered all the same; its events will be flagged unknown_query_id
        log.warning("query %s not recorded: the event buffer is full", query_id)
    return query_id


def shopper_token(user: str) -> str:
    """The event token of a shopper seen in a search or a recommendation (``privacy.event_token``)."""
    settings = current_app.config["SHOPSEARCH"]
    who = pseudonym(user, settings.pseudonym_salt)
    return event_token(who, settings.pseudonym_salt, int(time.time()) + settings.event_token_seconds)


def _check_bound_to_shopper(events: list[dict]) -> None:
    """Every event must be for the shopper whose token came with it (the admin credential, a shop's own
    backend, may post for anyone); raises Unauthorized / Forbidden naming the event."""
    settings = current_app.config["SHOPSEARCH"]
    if not settings.events_require_token or has_admin_credential():
        return
    token = request.headers.get(TOKEN_HEADER, "")
    if not token:
        raise Unauthorized(f"events need the {TOKEN_HEADER} header: the event_token of the search or "
                           "recommendation they follow", field=TOKEN_HEADER)
    who = token_shopper(token, settings.pseudonym_salt, time.time())
    if who is None:
        raise Unauthorized(f"the {TOKEN_HEADER} is not valid or has expired: search again for a fresh one",
                           field=TOKEN_HEADER)
    for i, event in enumerate(events):
        if pseudonym(event["user_id"], settings.pseudonym_salt) != who:
            raise Forbidden(f"event {i} is for another shopper than the {TOKEN_HEADER} proves", field=f"events[{i}].user_id")


def _check_rate(n: int) -> None:
    """At most ``events_per_minute`` events a minute from one client address (429 with Retry-After)."""
    limit = current_app.config["SHOPSEARCH"].events_per_minute
    if limit <= 0 or has_admin_credential():
        return
    buckets: TTLCache = current_app.extensions[EXTENSION + ".rate"]
    key = request.remote_addr or "?"
    now = time.monotonic()
    level, last = buckets.get(key) or (float(limit), now)
    level = min(float(limit), level + (now - last) * limit / 60.0)
    if n > level:
        raise TooManyRequests(f"more than {limit} events a minute from this client (setting events_per_minute)",
                              retry_after=max(1, math.ceil((n - level) * 60.0 / limit)))
    buckets.put(key, (level - n, now))


@bp.post("/events")
@contract(body=EventBatch, answer=EventsAccepted, status=202)
def post_events():
    """Record click, add-to-cart and purchase events (an EventError is a 400 naming the field)."""
    settings = current_app.config["SHOPSEARCH"]
    payload = parse_json_body(kinds=(dict, list))
    if payload == {}:
        raise BadRequest("the body must be JSON: an event, a list of events, or {\"events\": [...]}")
    events = drop_duplicates(validate_batch(payload))
    _check_rate(len(events))
    _check_bound_to_shopper(events)
    recent = current_app.extensions[EXTENSION + ".recent"]
    ids = sorted({e["query_id"] for e in events if e.get("query_id")})
    known = {q: recent.get(q) for q in ids if recent.get(q) is not None}
    try:
        known.update(recorded_queries(buffer().client, settings, [q for q in ids if q not in known]))
        checked = True
    except ClusterUnreachable:  # the cluster is down (or timed out): the events still go to the journal
        checked = False
    # in milliseconds (the stored events' form): a profile build's cursor over events that have no
    # stored_at reads this (index/ubi.py stored_since), and a second would hide the rest of its second
    received = format_timestamp(datetime.now(timezone.utc))
    flagged, queued = [], []
    for event in events:
        event = pseudonymise_event(event, settings.pseudonym_salt)  # also re-derives content-based ids
        event["received_at"] = received
        # None: the query id could not be checked (the cluster was down); the event is kept all the same
        event["unknown_query_id"] = (bool(event.get("query_id")) and event["query_id"] not in known) if checked else None
        if not event.get("catalogue") and event.get("query_id") in known:
            event["catalogue"] = known[event["query_id"]]  # the catalogue of the search it follows
        if event["unknown_query_id"]:  # (None is not flagged)
            flagged.append(event["event_id"])
        queued.append((settings.ubi_events_index, event["event_id"], event))
    buffer().add_many(queued)  # on disk before the 202; Overloaded (503, Retry-After) when the buffer is full
    return jsonify(accepted=len(events), unknown_query_ids=flagged), 202
