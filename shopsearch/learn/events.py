"""Validate shopper events (clicks, carts, purchases) in the OpenSearch UBI shape (pure).

``POST /events`` accepts one event, a list, or ``{"events": [...]}``. Each event is checked
field by field and normalised; the first fault raises :class:`EventError` naming the field
(and, in a batch, the event's index) so the web layer can answer a clear 400.

Shape (User Behavior Insights, flattened the way the middleware records it)::

    {"query_id": "q-1", "user_id": "u-9", "action_name": "click", "object_id": "sku-3",
     "position": 2, "timestamp": "2024-05-01T12:00:00Z"}

- ``user_id`` or, failing that, ``client_id`` is required (a non-empty string).
- ``object_id`` is required for click, add_to_cart and purchase.
- ``timestamp`` may be ISO 8601 (naive means UTC), or epoch seconds or milliseconds; it is
  stored as ISO 8601 UTC with millisecond precision, and defaults to now.
- ids may be strings or integers (shops often number products); integers become strings.
- unknown top-level keys are rejected (a typo would otherwise lose data silently), except
  ``event_attributes``, an object kept as is (UBI puts free-form context there).
- whether ``query_id`` is known is not checked here: the store flags unknown ones.

Privacy: raw shopper ids are never stored. :func:`pseudonymise_event` swaps ``user_id`` for
:func:`pseudonym` (HMAC with the settings' salt) before events or profiles are written.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from datetime import datetime, timedelta, timezone
from typing import Any

from shopsearch.privacy import pseudonym
from shopsearch.errors import EventError  # noqa: F401 (raised here; importable from here too)

ACTIONS = ("impression", "click", "add_to_cart", "purchase")
ACTION_ALIASES = {"add-to-cart": "add_to_cart", "addToCart": "add_to_cart"}
# How much one interaction says about a shopper's taste, relative to a click. A purchase costs
# money and a cart costs intent, so they count several clicks each; impressions count nothing.
ACTION_WEIGHTS = {"click": 1.0, "add_to_cart": 3.0, "purchase": 5.0}
MAX_BATCH = 1000
# Clocks on shoppers' devices drift; more than a day ahead is a bug, not drift.
MAX_FUTURE = timedelta(days=1)
# Epoch values at or above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
EPOCH_MILLIS_FROM = 1e11

KNOWN_KEYS = frozenset({"event_id", "query_id", "user_id", "client_id", "action_name", "object_id",
                        "position", "timestamp", "catalogue", "quantity", "price", "event_attributes"})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _identifier(raw: dict, field: str, required: bool) -> str | None:
    value = raw.get(field)
    if value is None:
        if required:
            raise EventError("is required", field)
        return None
    if _is_int(value):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise EventError(f"must be a non-empty string, got {value!r}", field)
    return value.strip()


def _action(raw: dict) -> str:
    value = raw.get("action_name")
    if value is None:
        raise EventError("is required", "action_name")
    if not isinstance(value, str):
        raise EventError(f"must be a string, got {value!r}", "action_name")
    action = ACTION_ALIASES.get(value.strip(), value.strip())
    if action not in ACTIONS:
        raise EventError(f"unknown action {value!r}; expected one of {', '.join(ACTIONS)}", "action_name")
    return action


def _positive_int(raw: dict, field: str) -> int | None:
    value = raw.get(field)
    if value is None:
        return None
    if not _is_int(value) or value < 1:
        raise EventError(f"must be an integer >= 1, got {value!r}", field)
    return value


def _price(raw: dict) -> float | None:
    value = raw.get("price")
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise EventError(f"must be a number >= 0, got {value!r}", "price")
    return float(value)


def parse_timestamp(value: Any, now: datetime) -> datetime:
    """An aware UTC datetime from ISO 8601 text or epoch seconds/milliseconds.

    >>> now = datetime(2024, 5, 2, tzinfo=timezone.utc)
    >>> parse_timestamp(1714564800000, now) == parse_timestamp("2024-05-01T12:00:00Z", now)
    True
    """
    if value is None:
        return now
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise EventError(f"must be a finite number, got {value!r}", "timestamp")
        seconds = value / 1000.0 if abs(value) >= EPOCH_MILLIS_FROM else float(value)
        try:
            when = datetime.fromtimestamp(seconds, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise EventError(f"epoch value out of range: {value!r}", "timestamp") from None
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            raise EventError(f"not an ISO 8601 date-time: {value!r}", "timestamp") from None
        when = when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)
    else:
        raise EventError(f"must be an ISO 8601 string or epoch seconds/milliseconds, got {value!r}", "timestamp")
    if when > now + MAX_FUTURE:
        raise EventError(f"{value!r} is more than {MAX_FUTURE.days} day in the future", "timestamp")
    return when


def format_timestamp(when: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a ``Z`` (the form every stored event uses)."""
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def derive_event_id(event: dict) -> str:
    """The deterministic id of a normalised event: sha256 over its identifying fields.

    The same click sent twice (a retry, a double submit) gets the same id, so storing events
    under this id keeps one copy. Fields: query_id, user_id, action_name, object_id, position,
    timestamp (normalised, so epoch and ISO forms of one instant agree).
    """
    key = [event.get(k) for k in ("query_id", "user_id", "action_name", "object_id", "position", "timestamp")]
    return hashlib.sha256(json.dumps(key, separators=(",", ":")).encode()).hexdigest()


def validate_event(raw: dict, now: datetime | None = None) -> dict:
    """A normalised copy of one event, or :class:`EventError` naming the field at fault.

    >>> e = validate_event({"client_id": "c1", "action_name": "addToCart", "object_id": 7,
    ...                     "timestamp": 1714564800}, now=datetime(2024, 5, 2, tzinfo=timezone.utc))
    >>> e["user_id"], e["action_name"], e["object_id"], e["timestamp"]
    ('c1', 'add_to_cart', '7', '2024-05-01T12:00:00.000Z')
    """
    if not isinstance(raw, dict):
        raise EventError(f"an event must be a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - KNOWN_KEYS, key=str)
    if unknown:
        raise EventError(f"unknown field; allowed: {', '.join(sorted(KNOWN_KEYS))}", str(unknown[0]))
    now = (now or datetime.now(timezone.utc))
    now = now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now
    action = _action(raw)
    user = _identifier(raw, "user_id", False) or _identifier(raw, "client_id", False)
    if user is None:
        raise EventError("is required (or client_id)", "user_id")
    event: dict[str, Any] = {
        "query_id": _identifier(raw, "query_id", False),
        "user_id": user,
        "action_name": action,
        "object_id": _identifier(raw, "object_id", action != "impression"),
        "position": _positive_int(raw, "position"),
        "timestamp": format_timestamp(parse_timestamp(raw.get("timestamp"), now)),
    }
    catalogue = _identifier(raw, "catalogue", False)
    if catalogue is not None:
        event["catalogue"] = catalogue
    quantity, price = _positive_int(raw, "quantity"), _price(raw)
    if quantity is not None:
        event["quantity"] = quantity
    if price is not None:
        event["price"] = price
    if "event_attributes" in raw and raw["event_attributes"] is not None:
        if not isinstance(raw["event_attributes"], dict):
            raise EventError("must be an object", "event_attributes")
        event["event_attributes"] = raw["event_attributes"]
    event["event_id"] = _identifier(raw, "event_id", False) or derive_event_id(event)
    return event


def validate_batch(payload: Any, now: datetime | None = None) -> list[dict]:
    """Validate one event, a list of events, or ``{"events": [...]}``; at most ``MAX_BATCH``.

    >>> len(validate_batch({"events": [{"user_id": "u", "action_name": "click", "object_id": "a"}] * 2}))
    2
    """
    if isinstance(payload, dict) and "events" in payload:
        extra = sorted(set(payload) - {"events"}, key=str)
        if extra:
            raise EventError("unknown field next to 'events'", str(extra[0]))
        payload = payload["events"]
        if not isinstance(payload, list):
            raise EventError("must be a list of events", "events")
    events = [payload] if isinstance(payload, dict) else payload
    if not isinstance(events, list):
        raise EventError("expected an event object, a list of events, or {\"events\": [...]}", "events")
    if not events:
        raise EventError("the batch is empty", "events")
    if len(events) > MAX_BATCH:
        raise EventError(f"{len(events)} events; at most {MAX_BATCH} per request", "events")
    out = []
    for i, raw in enumerate(events):
        try:
            out.append(validate_event(raw, now))
        except EventError as e:
            raise e.at(i) from None
    return out


def drop_duplicates(events: list[dict]) -> list[dict]:
    """Events in order, keeping the first of each ``event_id`` (a batch may repeat a retry)."""
    seen: set[str] = set()
    out = []
    for event in events:
        if event["event_id"] not in seen:
            seen.add(event["event_id"])
            out.append(event)
    return out


def pseudonymise_event(event: dict, salt: str) -> dict:
    """A copy of a validated event keyed by :func:`pseudonym`, ready to store.

    A derived ``event_id`` hashes the raw user id, and an unsalted hash of guessable fields
    would leak it, so derived ids are recomputed from the pseudonym (still deterministic, so
    duplicates still collapse); client-supplied ids are kept.
    """
    derived = event["event_id"] == derive_event_id(event)
    out = {**event, "user_id": pseudonym(event["user_id"], salt)}
    if derived:
        out["event_id"] = derive_event_id(out)
    return out
