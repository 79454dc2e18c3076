"""Specification of profile building, popularity, also-bought and diversity (pure, no services)."""

from __future__ import annotations

import doctest
import math
import random
from datetime import datetime, timedelta, timezone

import pytest

from shopsearch.learn import profile_build
from shopsearch.learn.profile_build import (
    PRICE_SAMPLES, build_profile, co_occurrence, decay_weight, diversify, popularity_counts,
)

NOW = datetime(2024, 6, 1, tzinfo=timezone.utc)
ITEMS = {
    "shoe": {"vector": [1.0, 0.0], "category": "shoes", "brand": "acme", "price_norm": 0.2},
    "bag": {"vector": [0.0, 1.0], "category": "bags", "brand": "zeta", "price_norm": 0.8},
    "hat": {"vector": None, "category": None, "brand": None, "price_norm": None},
}


def event(action, object_id, days_ago=0.0, now=NOW):
    return {"action_name": action, "object_id": object_id,
            "timestamp": (now - timedelta(days=days_ago)).isoformat().replace("+00:00", "Z")}


def test_docstring_examples_hold():
    assert doctest.testmod(profile_build).failed == 0


# --- decay ------------------------------------------------------------------------------------

@pytest.mark.parametrize("age, half_life, expected", [
    (0, 30, 1.0), (30, 30, 0.5), (60, 30, 0.25), (15, 30, math.sqrt(0.5)), (7, 7, 0.5),
])
def test_decay_halves_every_half_life(age, half_life, expected):
    assert decay_weight(age, half_life) == pytest.approx(expected)


def test_an_event_one_half_life_old_weighs_half():
    fresh = build_profile([event("click", "shoe")], ITEMS, NOW)
    old = build_profile([event("click", "shoe", days_ago=30)], ITEMS, NOW, half_life_days=30)
    assert old["weight"] == pytest.approx(fresh["weight"] / 2)


# --- what a profile says ------------------------------------------------------------------------

def test_an_empty_history_gives_an_empty_profile():
    p = build_profile([], ITEMS, NOW)
    assert (p["vector"], p["categories"], p["brands"], p["price_band"], p["events"], p["weight"]) == \
        (None, {}, {}, None, 0, 0.0)
    assert p["updated_at"] == NOW.isoformat()


def test_impressions_are_ignored():
    p = build_profile([event("impression", "shoe"), event("impression", "bag")], ITEMS, NOW)
    assert (p["vector"], p["events"], p["weight"]) == (None, 0, 0.0)


def test_impressions_do_not_change_a_profile():
    clicks = [event("click", "shoe")]
    assert build_profile(clicks + [event("impression", "bag")], ITEMS, NOW) == build_profile(clicks, ITEMS, NOW)


@pytest.mark.parametrize("strong, weak", [("purchase", "click"), ("purchase", "add_to_cart"), ("add_to_cart", "click")])
def test_stronger_actions_pull_the_profile_harder(strong, weak):
    p = build_profile([event(strong, "shoe"), event(weak, "bag")], ITEMS, NOW)
    assert p["vector"][0] > p["vector"][1]
    assert p["categories"]["shoes"] == 1.0 > p["categories"]["bags"]


def test_the_vector_is_the_weighted_mean_normalised():
    p = build_profile([event("purchase", "shoe"), event("click", "bag")], ITEMS, NOW)
    assert p["vector"] == pytest.approx([5 / math.hypot(5, 1), 1 / math.hypot(5, 1)])
    assert math.hypot(*p["vector"]) == pytest.approx(1.0)


def test_items_without_vectors_leave_the_vector_alone():
    assert build_profile([event("purchase", "hat")], ITEMS, NOW)["vector"] is None


def test_unknown_items_count_as_activity_but_add_no_features():
    p = build_profile([event("click", "gone")], ITEMS, NOW)
    assert (p["events"], p["weight"], p["vector"], p["categories"]) == (1, 1.0, None, {})


def test_events_after_now_are_not_counted():
    future = event("click", "shoe", days_ago=-1)
    assert build_profile([future], ITEMS, NOW)["events"] == 0


def test_affinities_are_in_unit_range_with_max_one():
    rng = random.Random(3)
    history = [event(rng.choice(["click", "add_to_cart", "purchase"]), rng.choice(["shoe", "bag", "hat"]),
                     days_ago=rng.uniform(0, 90)) for _ in range(50)]
    p = build_profile(history, ITEMS, NOW)
    for affinities in (p["categories"], p["brands"]):
        assert all(0.0 <= v <= 1.0 for v in affinities.values())
        assert max(affinities.values()) == 1.0


@pytest.mark.parametrize("history, band", [
    pytest.param([("click", "shoe")], [0.2, 0.2], id="one-price"),
    pytest.param([("click", "shoe"), ("click", "bag")], [0.2, 0.8], id="two-equal-weights"),
    pytest.param([("purchase", "shoe")] * 9 + [("click", "bag")], [0.2, 0.2], id="bag-under-10-percent"),
    pytest.param([("click", "hat")], None, id="no-prices"),
])
def test_price_band_spans_the_weighted_10th_to_90th_percentile(history, band):
    assert build_profile([event(a, o) for a, o in history], ITEMS, NOW)["price_band"] == band


def test_price_band_uses_the_most_recent_samples_only():
    old = [event("purchase", "bag", days_ago=2)] * 50
    recent = [event("click", "shoe", days_ago=1)] * PRICE_SAMPLES
    assert build_profile(old + recent, ITEMS, NOW)["price_band"] == [0.2, 0.2]


def test_vectors_of_different_sizes_are_an_error():
    items = {**ITEMS, "odd": {"vector": [1.0, 0.0, 0.0]}}
    with pytest.raises(ValueError, match="odd"):
        build_profile([event("click", "shoe"), event("click", "odd")], items, NOW)


# --- incremental updates --------------------------------------------------------------------------

def random_history(seed, n, start, end):
    rng = random.Random(seed)
    span = (end - start).total_seconds()
    items = {f"p{i}": {"vector": [rng.gauss(0, 1) for _ in range(4)], "category": rng.choice("abc"),
                       "brand": rng.choice("xyz"), "price_norm": rng.random()} for i in range(12)}
    history = [{"action_name": rng.choice(["impression", "click", "add_to_cart", "purchase"]),
                "object_id": rng.choice(list(items)),
                "timestamp": (start + timedelta(seconds=rng.uniform(0, span))).isoformat()} for _ in range(n)]
    return history, items


def assert_same_profile(a, b):
    assert a["vector"] == pytest.approx(b["vector"])
    assert a["categories"] == pytest.approx(b["categories"])
    assert a["brands"] == pytest.approx(b["brands"])
    assert a["price_band"] == pytest.approx(b["price_band"])
    assert (a["events"], a["updated_at"]) == (b["events"], b["updated_at"])
    assert a["weight"] == pytest.approx(b["weight"])


@pytest.mark.parametrize("seed, n", [(0, 40), (1, 300), (2, 5)])
def test_building_in_two_steps_equals_building_at_once(seed, n):
    t0, t1, t2 = NOW - timedelta(days=120), NOW - timedelta(days=20), NOW
    history, items = random_history(seed, n, t0, t2)
    step1 = build_profile(history, items, t1)  # sees only what had happened by t1
    step2 = build_profile([e for e in history if e["timestamp"] > t1.isoformat()], items, t2, previous=step1)
    assert_same_profile(step2, build_profile(history, items, t2))


def test_an_incremental_build_ignores_events_already_counted():
    t1 = NOW - timedelta(days=10)
    history, items = random_history(4, 100, NOW - timedelta(days=60), NOW)
    step1 = build_profile(history, items, t1)
    resent = build_profile(history, items, NOW, previous=step1)  # all events again, old ones included
    assert_same_profile(resent, build_profile(history, items, NOW))


def test_an_incremental_build_with_nothing_new_only_decays():
    step1 = build_profile([event("click", "shoe", now=NOW - timedelta(days=30))], ITEMS, NOW - timedelta(days=30))
    later = build_profile([], ITEMS, NOW, previous=step1)
    assert later["weight"] == pytest.approx(step1["weight"] / 2)
    assert later["vector"] == pytest.approx(step1["vector"])


def test_an_incremental_build_does_not_change_the_previous_profile():
    step1 = build_profile([event("click", "shoe", days_ago=5)], ITEMS, NOW - timedelta(days=1))
    snapshot = repr(step1)
    build_profile([event("purchase", "bag")], ITEMS, NOW, previous=step1)
    assert repr(step1) == snapshot


@pytest.mark.parametrize("now, half_life", [(NOW - timedelta(days=1), 30.0), (NOW, 7.0)])
def test_an_incremental_build_refuses_going_back_in_time_or_changing_half_life(now, half_life):
    step1 = build_profile([event("click", "shoe")], ITEMS, NOW)
    with pytest.raises(ValueError):
        build_profile([], ITEMS, now, half_life_days=half_life, previous=step1)


# --- popularity -------------------------------------------------------------------------------------

def test_popularity_counts_weigh_actions_without_decay():
    counts = popularity_counts([event("click", "shoe", days_ago=400), event("purchase", "shoe"),
                                event("add_to_cart", "bag"), event("impression", "hat")])
    assert counts == {"shoe": 6.0, "bag": 3.0}


# --- also bought ---------------------------------------------------------------------------------------

ORDERS = [["a", "b"], ["a", "b", "c"], ["a", "c"], ["b", "d"], ["a", "a", "b"]]


def test_co_occurrence_scores_by_cosine():
    # a in 4 orders, b in 4, together in 3
    assert dict(co_occurrence(ORDERS)["a"])["b"] == pytest.approx(3 / math.sqrt(4 * 4))


def test_co_occurrence_is_symmetric():
    table = co_occurrence(ORDERS)
    for a, neighbours in table.items():
        for b, score in neighbours:
            assert dict(table[b])[a] == pytest.approx(score)


def test_co_occurrence_excludes_the_item_itself():
    assert all(a not in dict(n) for a, n in co_occurrence(ORDERS).items())


def test_co_occurrence_sorts_best_first_and_keeps_the_top():
    orders = [["hub", f"x{i}"] for i in range(60)] + [["hub", "x0"]]
    top = co_occurrence(orders)["hub"]
    assert len(top) == 50 and top[0][0] == "x0"
    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)


def test_single_item_orders_give_no_pairs():
    assert co_occurrence([["a"], ["b"]]) == {}


# --- diversity ------------------------------------------------------------------------------------------

RANKED = [("a", "shoes"), ("b", "shoes"), ("c", "shoes"), ("d", "bags"), ("e", "shoes"), ("f", None), ("g", None)]


@pytest.mark.parametrize("cap, k, expected", [
    pytest.param(2, None, ["a", "b", "d", "f", "g"], id="strict-cap"),
    pytest.param(1, None, ["a", "d", "f", "g"], id="cap-one"),
    pytest.param(2, 3, ["a", "b", "d"], id="stops-at-k"),
    pytest.param(1, 6, ["a", "d", "f", "g", "b", "c"], id="fills-short-list-in-rank-order"),
    pytest.param(10, None, ["a", "b", "c", "d", "e", "f", "g"], id="loose-cap-keeps-order"),
])
def test_diversify_caps_categories(cap, k, expected):
    assert diversify(RANKED, cap, k) == expected


def test_no_category_exceeds_the_cap_while_others_remain():
    ranked = [(f"p{i}", "shoes" if i < 20 else "bags") for i in range(30)]
    out = diversify(ranked, 3, k=6)
    assert sum(1 for i in out if int(i[1:]) < 20) == 3 and len(out) == 6


def test_diversify_keeps_the_first_of_repeated_ids():
    assert diversify([("a", "x"), ("a", "y"), ("b", "y")], 1) == ["a", "b"]


def test_diversify_needs_a_positive_cap():
    with pytest.raises(ValueError):
        diversify(RANKED, 0)
