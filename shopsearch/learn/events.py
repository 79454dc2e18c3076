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
import json
import math
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from shopsearch.errors import EventError, IndexVersionError
from shopsearch.index.versions import check_catalogue_name
from shopsearch.privacy import pseudonym

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


def _integer_id_as_text(value: Any) -> Any:
    """Shops often number products: an integer id becomes its text (a bool stays a fault)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _canonical_action(value: str) -> str:
    action = ACTION_ALIASES.get(value, value)
    if action not in ACTIONS:
        raise EventError(f"unknown action {value!r}; expected one of {', '.join(ACTIONS)}", "action_name")
    return action


def _catalogue_name(value: str) -> str:
    """A catalogue's name as the index layer takes it: an event that names anything else could be
    joined to no catalogue, and the periodic profile run would have to skip it."""
    try:
        return check_catalogue_name(value)
    except IndexVersionError as e:
        raise EventError(e.message, "catalogue") from None


# What the ubi_events mapping accepts (mappings/ubi_events.json): an event the index would refuse
# is refused here, before the 202, so an accepted event is never lost at write time. Ids are
# keywords and ``event_id`` is the document ``_id`` (at most 512 bytes); counts are integers
# (32 bit); prices are floats (32 bit).
MAX_ID_CHARS = 256  # four UTF-8 bytes a character at most: 1,024 bytes, under Lucene's term limit
MAX_EVENT_ID_BYTES = 512
MAX_INT32 = 2**31 - 1
MAX_FLOAT32 = 3.4e38
Identifier = Annotated[str, BeforeValidator(_integer_id_as_text),
                       Field(strict=True, min_length=1, max_length=MAX_ID_CHARS,
                             json_schema_extra={"type": ["string", "integer"]})]
Count = Annotated[int, Field(strict=True, ge=1, le=MAX_INT32)]

# The message each field's fault gets (followed by ", got <value>"); a missing one "is required".
_MESSAGES = {"action_name": "must be a string", "position": f"must be an integer from 1 to {MAX_INT32}",
             "quantity": f"must be an integer from 1 to {MAX_INT32}", "price": f"must be a number from 0 to {MAX_FLOAT32:g}",
             "event_attributes": "must be an object"}


class Event(BaseModel):
    """One shopper event as ``POST /events`` takes it (User Behavior Insights, flattened).

    The contract of the events route: it validates each event (:func:`validate_event` turns its
    first fault into an :class:`EventError`) and documents the route in ``/openapi.json``.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    event_id: Identifier | None = Field(None, description="Client-chosen id; derived from the content when absent.")
    query_id: Identifier | None = Field(None, description="The query_id of the search this event follows.")
    user_id: Identifier | None = Field(None, description="The shopper (stored only as a pseudonym).")
    client_id: Identifier | None = Field(None, description="Stands in for user_id when that is absent.")
    action_name: Annotated[str, Field(strict=True), AfterValidator(_canonical_action)] = Field(
        description=f"One of {', '.join(ACTIONS)} (also {', '.join(ACTION_ALIASES)}).",
        json_schema_extra={"enum": [*ACTIONS, *ACTION_ALIASES]})
    object_id: Identifier | None = Field(None, description="The item; required except for impressions.")
    position: Count | None = Field(None, description="1-based place of the item in the results.")
    timestamp: Any = Field(None, description="ISO 8601 (naive is UTC) or epoch seconds/milliseconds; default now.",
                           validate_default=True,  # an absent timestamp becomes now, through the validator
                           json_schema_extra={"type": ["string", "number", "null"]})
    catalogue: Annotated[Identifier, AfterValidator(_catalogue_name)] | None = None
    quantity: Count | None = None
    price: Annotated[float, Field(strict=True, ge=0, le=MAX_FLOAT32, allow_inf_nan=False)] | None = None
    event_attributes: Annotated[dict, Field(strict=True)] | None = Field(
        None, description="Free-form UBI context, kept as is.")

    @model_validator(mode="before")
    @classmethod
    def _client_id_only_stands_in(cls, raw: Any) -> Any:
        """``client_id`` is read (and checked) only when there is no ``user_id``."""
        if isinstance(raw, dict) and raw.get("user_id") is not None and "client_id" in raw:
            return {k: v for k, v in raw.items() if k != "client_id"}
        return raw

    @field_validator("timestamp")
    @classmethod
    def _normalised_timestamp(cls, value: Any, info: ValidationInfo) -> str:
        now = (info.context or {}).get("now") or datetime.now(timezone.utc)
        return format_timestamp(parse_timestamp(value, now))

    @model_validator(mode="after")
    def _required_together(self) -> "Event":
        if self.user_id is None and self.client_id is None:
            raise EventError("is required (or client_id)", "user_id")
        if self.object_id is None and self.action_name != "impression":
            raise EventError("is required", "object_id")
        if self.event_id is not None and len(self.event_id.encode("utf-8")) > MAX_EVENT_ID_BYTES:
            raise EventError(f"must be at most {MAX_EVENT_ID_BYTES} bytes in UTF-8 (it is the stored document's id)",
                             "event_id")
        return self


# The order faults are reported in when an event has several: unknown keys first (a typo would
# otherwise lose data), then the fields in the order a reader checks them.
_ORDER = ("action_name", "user_id", "client_id", "query_id", "object_id", "position", "timestamp", "catalogue",
          "quantity", "price", "event_attributes", "event_id")


def _event_error(error: ValidationError, raw: dict) -> EventError:
    """The first fault of a validation, as the :class:`EventError` the web layer answers with."""
    faults = [_fault(f) for f in error.errors(include_url=False)]
    # the model checks these two only once every field is valid; here they must compete in order
    action = ACTION_ALIASES.get(str(raw.get("action_name")).strip(), str(raw.get("action_name")).strip())
    if raw.get("user_id") is None and raw.get("client_id") is None:
        faults.append(EventError("is required (or client_id)", "user_id"))
    if raw.get("object_id") is None and action in ACTIONS and action != "impression":
        faults.append(EventError("is required", "object_id"))
    unknown = sorted((f for f in faults if f.field not in _ORDER), key=lambda f: str(f.field))
    return (unknown or sorted(faults, key=lambda f: _ORDER.index(f.field)))[0]


def _fault(fault: dict) -> EventError:
    field = str(fault["loc"][0]) if fault["loc"] else None
    cause = (fault.get("ctx") or {}).get("error")
    if isinstance(cause, EventError):  # raised by our own validators: already worded
        return EventError(cause.message, cause.field or field)
    if fault["type"] == "extra_forbidden":
        return EventError(f"unknown field; allowed: {', '.join(sorted(KNOWN_KEYS))}", field)
    if fault["type"] == "missing" or fault.get("input") is None:  # only a required field fails on null
        return EventError("is required", field)
    if field == "event_attributes":
        return EventError(_MESSAGES[field], field)
    message = _MESSAGES.get(field, f"must be a non-empty string of at most {MAX_ID_CHARS} characters")
    return EventError(f"{message}, got {fault['input']!r}", field)


def parse_timestamp(value: Any, now: datetime) -> datetime:
    """An aware UTC datetime from ISO 8601 text or epoch seconds/milliseconds.

    >>> now = datetime(2024, 5, 2, tzinfo=timezone.utc)
    >>> parse_timestamp(1714564800000, now) == parse_timestamp("2024-05-01T12:00:00Z", now)
    True
    """
    if value is None:
        return now
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 1e18:
        raise EventError(f"epoch value out of range (a number of {len(str(abs(value)))} digits)", "timestamp")
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
    now = (now or datetime.now(timezone.utc))
    now = now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now
    try:
        model = Event.model_validate(raw, context={"now": now})
    except ValidationError as e:
        raise _event_error(e, raw) from None
    event: dict[str, Any] = {
        "query_id": model.query_id,
        "user_id": model.user_id or model.client_id,
        "action_name": model.action_name,
        "object_id": model.object_id,
        "position": model.position,
        "timestamp": model.timestamp,
    }
    for optional in ("catalogue", "quantity", "price", "event_attributes"):
        if getattr(model, optional) is not None:
            event[optional] = getattr(model, optional)
    event["event_id"] = model.event_id or derive_event_id(event)
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
