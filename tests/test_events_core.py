"""Specification of event validation (shopsearch.events): pure, no services."""

from __future__ import annotations

import doctest
from datetime import datetime, timedelta, timezone

import pytest

from shopsearch.learn import events
from shopsearch.learn.events import (
    ACTION_WEIGHTS, ACTIONS, MAX_BATCH, EventError, drop_duplicates, pseudonym, pseudonymise_event,
    validate_batch, validate_event,
)

NOW = datetime(2024, 5, 2, 12, 0, tzinfo=timezone.utc)
CLICK = {"query_id": "q1", "user_id": "u1", "action_name": "click", "object_id": "sku-1",
         "position": 3, "timestamp": "2024-05-01T12:00:00Z"}


def check(raw, **kw):
    return validate_event(raw, now=NOW, **kw)


def test_docstring_examples_hold():
    assert doctest.testmod(events).failed == 0


def test_a_good_click_is_normalised():
    event = check(CLICK)
    assert {k: v for k, v in event.items() if k != "event_id"} == {**CLICK, "timestamp": "2024-05-01T12:00:00.000Z"}
    assert len(event["event_id"]) == 64


def test_action_weights_rank_purchase_over_cart_over_click():
    assert ACTION_WEIGHTS["purchase"] > ACTION_WEIGHTS["add_to_cart"] > ACTION_WEIGHTS["click"] > 0
    assert set(ACTION_WEIGHTS) | {"impression"} == set(ACTIONS)


@pytest.mark.parametrize("given, canonical", [
    ("click", "click"), ("add_to_cart", "add_to_cart"), ("add-to-cart", "add_to_cart"),
    ("addToCart", "add_to_cart"), ("purchase", "purchase"), ("impression", "impression"),
])
def test_actions_and_aliases_map_to_canonical_names(given, canonical):
    assert check({**CLICK, "action_name": given})["action_name"] == canonical


@pytest.mark.parametrize("raw, field", [
    pytest.param({k: v for k, v in CLICK.items() if k != "user_id"}, "user_id", id="no-user"),
    pytest.param({k: v for k, v in CLICK.items() if k != "action_name"}, "action_name", id="no-action"),
    pytest.param({k: v for k, v in CLICK.items() if k != "object_id"}, "object_id", id="click-without-object"),
    pytest.param({**CLICK, "action_name": "purchase", "object_id": None}, "object_id", id="purchase-without-object"),
    pytest.param({**CLICK, "action_name": "like"}, "action_name", id="unknown-action"),
    pytest.param({**CLICK, "action_name": 3}, "action_name", id="action-not-string"),
    pytest.param({**CLICK, "user_id": ""}, "user_id", id="empty-user"),
    pytest.param({**CLICK, "user_id": ["u1"]}, "user_id", id="user-list"),
    pytest.param({**CLICK, "query_id": {"id": 1}}, "query_id", id="query-id-object"),
    pytest.param({**CLICK, "object_id": True}, "object_id", id="object-id-bool"),
    pytest.param({**CLICK, "position": 0}, "position", id="position-zero"),
    pytest.param({**CLICK, "position": "3"}, "position", id="position-string"),
    pytest.param({**CLICK, "position": 2.0}, "position", id="position-float"),
    pytest.param({**CLICK, "position": True}, "position", id="position-bool"),
    pytest.param({**CLICK, "timestamp": "yesterday"}, "timestamp", id="timestamp-text"),
    pytest.param({**CLICK, "timestamp": [2024]}, "timestamp", id="timestamp-list"),
    pytest.param({**CLICK, "timestamp": float("nan")}, "timestamp", id="timestamp-nan"),
    pytest.param({**CLICK, "quantity": 0}, "quantity", id="quantity-zero"),
    pytest.param({**CLICK, "quantity": 1.5}, "quantity", id="quantity-float"),
    pytest.param({**CLICK, "price": -1}, "price", id="price-negative"),
    pytest.param({**CLICK, "price": "9.99"}, "price", id="price-string"),
    pytest.param({**CLICK, "price": float("inf")}, "price", id="price-infinite"),
    pytest.param({**CLICK, "catalogue": 1.5}, "catalogue", id="catalogue-float"),
    pytest.param({**CLICK, "catalogue": "Fashion-Shop"}, "catalogue", id="catalogue-not-a-name"),
    pytest.param({**CLICK, "event_attributes": "x"}, "event_attributes", id="attributes-not-object"),
    pytest.param({**CLICK, "event_id": ""}, "event_id", id="empty-event-id"),
    pytest.param({**CLICK, "sessionid": "s"}, "sessionid", id="unknown-key"),
])
def test_bad_events_name_the_field_at_fault(raw, field):
    with pytest.raises(EventError) as e:
        check(raw)
    assert e.value.field == field
    assert repr(field) in str(e.value)


def test_a_non_object_event_is_rejected():
    with pytest.raises(EventError):
        check(["click"])


@pytest.mark.parametrize("extra", [
    {"client_id": "c1"}, {"catalogue": "shop_a"}, {"quantity": 2}, {"price": 0}, {"price": 19.5},
    {"event_attributes": {"object": {"object_id_field": "sku"}}}, {"query_id": None}, {"position": None},
])
def test_optional_fields_are_accepted(extra):
    event = check({**CLICK, **extra})
    for key, value in extra.items():
        if key != "client_id":
            assert event.get(key) == value


def test_event_attributes_are_kept_as_is():
    attributes = {"object": {"object_id_field": "sku", "description": "red shoe"}, "position": {"x": 1}}
    assert check({**CLICK, "event_attributes": attributes})["event_attributes"] == attributes


def test_client_id_stands_in_for_a_missing_user_id():
    raw = {k: v for k, v in CLICK.items() if k != "user_id"}
    assert check({**raw, "client_id": "c9"})["user_id"] == "c9"


def test_user_id_wins_over_client_id():
    assert check({**CLICK, "client_id": "c9"})["user_id"] == "u1"


def test_integer_ids_become_strings():
    event = check({**CLICK, "object_id": 1234, "user_id": 7})
    assert (event["object_id"], event["user_id"]) == ("1234", "7")


def test_impressions_need_no_object():
    event = check({"user_id": "u1", "action_name": "impression", "query_id": "q1"})
    assert event["object_id"] is None


@pytest.mark.parametrize("timestamp, expected", [
    pytest.param("2024-05-01T12:00:00Z", "2024-05-01T12:00:00.000Z", id="iso-z"),
    pytest.param("2024-05-01T14:00:00+02:00", "2024-05-01T12:00:00.000Z", id="iso-offset"),
    pytest.param("2024-05-01T12:00:00", "2024-05-01T12:00:00.000Z", id="iso-naive-is-utc"),
    pytest.param(1714564800, "2024-05-01T12:00:00.000Z", id="epoch-seconds"),
    pytest.param(1714564800.25, "2024-05-01T12:00:00.250Z", id="epoch-seconds-fraction"),
    pytest.param(1714564800123, "2024-05-01T12:00:00.123Z", id="epoch-millis"),
    pytest.param(None, "2024-05-02T12:00:00.000Z", id="missing-is-now"),
])
def test_timestamps_are_normalised_to_utc_iso(timestamp, expected):
    assert check({**CLICK, "timestamp": timestamp})["timestamp"] == expected


@pytest.mark.parametrize("ahead, ok", [
    (timedelta(hours=23), True), (timedelta(days=1), True), (timedelta(days=1, seconds=1), False),
    (timedelta(days=30), False),
])
def test_timestamps_more_than_a_day_ahead_are_rejected(ahead, ok):
    raw = {**CLICK, "timestamp": (NOW + ahead).isoformat()}
    if ok:
        check(raw)
    else:
        with pytest.raises(EventError, match="future") as e:
            check(raw)
        assert e.value.field == "timestamp"


# --- event ids: the same event twice is stored once ---------------------------------------

def test_an_event_without_a_timestamp_happened_now():
    assert check({k: v for k, v in CLICK.items() if k != "timestamp"})["timestamp"] == "2024-05-02T12:00:00.000Z"


def test_the_same_event_sent_twice_gets_the_same_id():
    assert check(dict(CLICK))["event_id"] == check(dict(CLICK))["event_id"]


def test_epoch_and_iso_forms_of_one_instant_get_the_same_id():
    assert check(CLICK)["event_id"] == check({**CLICK, "timestamp": 1714564800000})["event_id"]


@pytest.mark.parametrize("change", [
    {"query_id": "q2"}, {"user_id": "u2"}, {"action_name": "purchase"}, {"object_id": "sku-2"},
    {"position": 4}, {"timestamp": "2024-05-01T12:00:01Z"},
])
def test_events_differing_in_an_identifying_field_get_different_ids(change):
    assert check(CLICK)["event_id"] != check({**CLICK, **change})["event_id"]


def test_a_client_supplied_event_id_is_kept():
    assert check({**CLICK, "event_id": "e-42"})["event_id"] == "e-42"


def test_drop_duplicates_keeps_the_first_of_each_id():
    batch = validate_batch([CLICK, {**CLICK, "position": 4}, CLICK], now=NOW)
    assert [e["position"] for e in drop_duplicates(batch)] == [3, 4]


# --- batches ----------------------------------------------------------------------------------

@pytest.mark.parametrize("payload, n", [
    pytest.param(CLICK, 1, id="one-object"),
    pytest.param([CLICK, CLICK], 2, id="list"),
    pytest.param({"events": [CLICK] * 3}, 3, id="wrapped"),
    pytest.param([CLICK] * MAX_BATCH, MAX_BATCH, id="max-batch"),
])
def test_batches_come_in_three_shapes(payload, n):
    assert len(validate_batch(payload, now=NOW)) == n


@pytest.mark.parametrize("payload", [
    pytest.param([], id="empty-list"),
    pytest.param({"events": []}, id="empty-wrapped"),
    pytest.param([CLICK] * (MAX_BATCH + 1), id="too-many"),
    pytest.param({"events": CLICK}, id="events-not-list"),
    pytest.param("click", id="text"),
])
def test_bad_batches_blame_events(payload):
    with pytest.raises(EventError) as e:
        validate_batch(payload, now=NOW)
    assert e.value.field == "events"


def test_a_wrapped_batch_rejects_keys_next_to_events():
    with pytest.raises(EventError) as e:
        validate_batch({"events": [CLICK], "extra": 1}, now=NOW)
    assert e.value.field == "extra"


@pytest.mark.parametrize("bad_at", [0, 1, 5])
def test_batch_errors_carry_the_index_of_the_bad_event(bad_at):
    batch = [dict(CLICK) for _ in range(6)]
    batch[bad_at]["position"] = -1
    with pytest.raises(EventError) as e:
        validate_batch(batch, now=NOW)
    assert (e.value.index, e.value.field) == (bad_at, "position")
    assert str(e.value).startswith(f"event {bad_at}: ")


def test_a_non_object_inside_a_batch_carries_its_index():
    with pytest.raises(EventError) as e:
        validate_batch([CLICK, 3], now=NOW)
    assert e.value.index == 1


# --- pseudonyms ---------------------------------------------------------------------------------

def test_pseudonym_is_stable():
    assert pseudonym("shopper@example.com", "salt") == pseudonym("shopper@example.com", "salt")


@pytest.mark.parametrize("a, b", [(("u1", "salt"), ("u2", "salt")), (("u1", "salt"), ("u1", "pepper"))])
def test_pseudonym_depends_on_the_id_and_the_salt(a, b):
    assert pseudonym(*a) != pseudonym(*b)


def test_pseudonym_is_32_hex_characters_and_hides_the_id():
    key = pseudonym("u1", "salt")
    assert len(key) == 32 and int(key, 16) >= 0 and "u1" not in key


def test_pseudonymised_events_keep_no_raw_user_and_still_deduplicate():
    first, again = (pseudonymise_event(check(dict(CLICK)), "salt") for _ in range(2))
    assert first["user_id"] == pseudonym("u1", "salt")
    assert first["event_id"] == again["event_id"] != check(CLICK)["event_id"]


def test_pseudonymising_keeps_a_client_supplied_event_id():
    assert pseudonymise_event(check({**CLICK, "event_id": "e-1"}), "salt")["event_id"] == "e-1"
