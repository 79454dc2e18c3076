"""The shopper ranker: purchase statistics, user × item features and LambdaMART, on real Instacart orders.

The orders are real (the shared Instacart sample, read in place); these tests need no services:
statistics, features, training and prediction are pure functions and a model file.
"""

from __future__ import annotations

import csv
import math
import os
from collections import Counter, defaultdict
from datetime import datetime, timezone

import pytest

from shopsearch.learn import shopper_ranker
from shopsearch.learn.profile_build import popularity_counts
from shopsearch.learn.profile_purchases import build_purchases
from shopsearch.ops.eval_personalisation import aisle_names, load_orders, order_history, product_titles
from shopsearch.query.shopper_features import FEATURES, candidate_features
from shopsearch.query.shopper_rank import ShopperModel

from .conftest import DATA

INSTACART = DATA / "instacart"
LAST_AT = datetime(2024, 6, 1, 12, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def orders():
    """The first 20 shoppers of the sample, with every order."""
    return load_orders(INSTACART / "order_lines.tsv", limit_users=20)


@pytest.fixture(scope="module")
def catalogue_info():
    aisle_of = aisle_names(INSTACART)
    return aisle_of, product_titles(INSTACART)


@pytest.fixture(scope="module")
def histories(orders):
    """Each shopper's orders as purchase events, the evaluated last order left out."""
    return {u: order_history(u, h, "ic", LAST_AT)[:-1] for u, h in orders.items() if len(h) > 2}


@pytest.fixture(scope="module")
def side(histories, catalogue_info):
    aisle_of, titles = catalogue_info
    products = defaultdict(list)
    for product, aisle in aisle_of.items():
        products[aisle].append(product)
    counts = popularity_counts([e for h in histories.values() for order in h for e in order])
    return shopper_ranker.Catalogue(category_of=aisle_of, titles=titles, products=dict(products), counts=counts)


@pytest.fixture(scope="module")
def groups(histories, side):
    """Training groups: each shopper's three orders before the evaluated one, each from the orders before it."""
    return shopper_ranker.training_groups(histories, side, [-1, -2, -3])


@pytest.fixture(scope="module")
def model(groups):
    """One ranker trained on them (the last tenth scored as validation)."""
    return shopper_ranker.train(groups[: len(groups) * 9 // 10], groups[len(groups) * 9 // 10:])


def _items(events, aisle_of, titles):
    return {e["object_id"]: {"category": aisle_of.get(e["object_id"]), "title": titles.get(e["object_id"])}
            for e in events}


def test_purchase_statistics_of_a_real_shopper_count_orders_carts_and_intervals(orders, catalogue_info):
    aisle_of, titles = catalogue_info
    history = orders["1"]
    events = [e for order in order_history("1", history, "ic", LAST_AT)[:-1] for e in order]
    stats = build_purchases(events, _items(events, aisle_of, titles))
    earlier = history[:-1]
    bought = Counter(p for o in earlier for p in set(o.products))
    assert stats["orders"] == len(earlier)
    assert stats["lines"] == sum(len(o.products) for o in earlier)
    assert {d: s["n"] for d, s in stats["items"].items()} == dict(bought)
    # shopper 1 bought product 196 (Soda) in every order: first in order 1, last in the latest one
    soda = stats["items"]["196"]
    assert (soda["n"], soda["first"], soda["last"]) == (len(earlier), 1, len(earlier))
    positions = [o.products.index("196") + 1 for o in earlier]
    assert soda["cart"] == sum(positions) and soda["carts"] == len(earlier)
    assert stats["reorders"] == sum(sum(o.reordered) for o in earlier)
    assert sum(stats["categories"].values()) == stats["lines"]


def test_purchase_statistics_built_in_two_steps_equal_one_build(orders, catalogue_info):
    aisle_of, titles = catalogue_info
    events = [e for order in order_history("7", orders["7"], "ic", LAST_AT)[:-1] for e in order]
    items = _items(events, aisle_of, titles)
    half = len(events) // 2
    cut = events[half - 1]["timestamp"]
    first = build_purchases([e for e in events if e["timestamp"] <= cut], items)
    both = build_purchases(events, items, previous=first, since=cut)
    assert both == build_purchases(events, items)


def test_features_of_a_real_profile_say_what_the_shopper_rebuys(orders, catalogue_info):
    aisle_of, titles = catalogue_info
    history = order_history("1", orders["1"], "ic", LAST_AT)
    events = [e for order in history[:-1] for e in order]
    stats = build_purchases(events, _items(events, aisle_of, titles))
    soda = dict(zip(FEATURES, candidate_features(stats, {"id": "196", "category": aisle_of["196"],
                                                          "title": titles["196"]}, LAST_AT)))
    assert soda["times_bought"] == stats["orders"] and soda["orders_since_last"] == 0
    assert soda["order_rate"] == 1.0 and soda["share_of_orders"] == 1.0
    assert soda["days_since_last"] == pytest.approx(orders["1"][-1].days_since_prior)
    assert soda["days_since_last_order"] == pytest.approx(orders["1"][-1].days_since_prior)
    assert 0 < soda["category_share"] <= 1 and soda["title_word_max"] > 0
    never = candidate_features(stats, {"id": "no-such-product", "category": aisle_of["196"], "popularity": 0.4}, LAST_AT)
    named = dict(zip(FEATURES, never))
    assert math.isnan(named["times_bought"]) and math.isnan(named["days_since_last"])
    assert named["popularity"] == 0.4 and named["category_share"] == soda["category_share"]


def test_training_never_sees_the_evaluated_order(orders, groups, side):
    assert groups
    for g in groups:
        full = orders[g.user]
        assert g.order < len(full) - 1  # the evaluated order is index len - 1: never an answer
        answer = {p for p in full[g.order].products}
        before = Counter(p for o in full[:g.order] for p in set(o.products))
        for d, y, row in zip(g.ids, g.labels, g.rows):
            assert y == int(d in answer)
            times = row[FEATURES.index("times_bought")]
            assert (math.isnan(times) and before[d] == 0) or times == before[d]
    # popularity leaves out the shopper's own purchases from the answer on: a product that only this
    # shopper bought, for the first time in the answer order, has no popularity there, so (without
    # text scores here) it is no candidate, just as it would not be at the time of that order
    first_here = [(g, d) for g in groups for d in set(orders[g.user][g.order].products)
                  if d in side.category_of and side.category_of[d] == g.category
                  and not any(d in o.products for o in orders[g.user][:g.order])
                  and side.counts.get(d, 0) == 5.0 * sum(d in o.products for o in orders[g.user][g.order:-1])]
    assert first_here, "the sample has products bought by a single shopper"
    for g, d in first_here:
        assert d not in g.ids
    assert sum(g.missed for g in groups) >= len(first_here)


def test_a_trained_ranker_survives_save_and_load(groups, model, tmp_path):
    saved = shopper_ranker.save(model, tmp_path / "ranker", figures={"mrr": 0.5})
    loaded = shopper_ranker.load(saved)
    rows = [r for g in groups[:20] for r in g.rows]
    assert loaded.backend == "compiled"  # scored by its machine code, LightGBM's scores
    assert loaded.predict(rows) == pytest.approx(shopper_ranker.predict(model, rows), rel=0, abs=1e-9)
    assert loaded.card["features"] == list(FEATURES) and loaded.card["figures"] == {"mrr": 0.5}
    assert set(loaded.card["importance_gain"]) == set(FEATURES)


def test_the_learned_ranking_puts_what_the_shopper_always_rebuys_first(orders, model, side, catalogue_info):
    aisle_of, _ = catalogue_info
    # shopper 1's evaluated order: soda (bought in every earlier order) in the soft drinks aisle
    evaluated = {"1": order_history("1", orders["1"], "ic", LAST_AT)}
    group = next(g for g in shopper_ranker.training_groups(evaluated, side, [-1]) if g.category == aisle_of["196"])
    scores = model.predict(group.rows)
    assert group.ids[max(range(len(scores)), key=scores.__getitem__)] == "196"


def test_a_model_of_other_features_is_refused(model):
    with pytest.raises(Exception, match="retrain"):
        ShopperModel(model.booster, {**model.card, "features": ["times_bought"]})


def test_titles_come_from_the_catalogue_file():
    with open(INSTACART / "products.tsv", newline="", encoding="utf-8") as f:
        first = next(csv.DictReader(f, delimiter="\t"))
    assert product_titles(INSTACART)[first["product_id"]] == first["product_name"]


def test_recent_orders_give_the_run_and_the_recent_share_of_a_real_staple(orders, catalogue_info):
    aisle_of, titles = catalogue_info
    events = [e for order in order_history("1", orders["1"], "ic", LAST_AT)[:-1] for e in order]
    stats = build_purchases(events, _items(events, aisle_of, titles))
    soda = stats["items"]["196"]  # shopper 1 bought soda in every earlier order
    assert soda["recent"] == list(range(max(1, stats["orders"] - 7), stats["orders"] + 1))
    f = dict(zip(FEATURES, candidate_features(stats, {"id": "196", "category": aisle_of["196"]}, LAST_AT)))
    assert f["bought_last_5"] == 1.0 and f["last_run"] == len(soda["recent"])
    assert f["share_in_category"] == soda["n"] / stats["categories"][aisle_of["196"]]
    once = next(d for d, s in stats["items"].items() if s["n"] == 1 and s["last"] < stats["orders"] - 5)
    g = dict(zip(FEATURES, candidate_features(stats, {"id": once, "category": aisle_of.get(once)}, LAST_AT)))
    assert g["bought_last_5"] == 0.0 and g["last_run"] == 1.0


def test_an_item_stored_before_recent_orders_were_kept_has_no_recent_features(orders, catalogue_info):
    aisle_of, titles = catalogue_info
    events = [e for order in order_history("1", orders["1"], "ic", LAST_AT)[:-1] for e in order]
    stats = build_purchases(events, _items(events, aisle_of, titles))
    for item in stats["items"].values():
        del item["recent"]
    f = dict(zip(FEATURES, candidate_features(stats, {"id": "196", "category": aisle_of["196"]}, LAST_AT)))
    assert math.isnan(f["bought_last_5"]) and math.isnan(f["decayed_orders"]) and f["times_bought"] > 0
    new = {**events[-1], "object_id": "196", "timestamp": "2024-06-02T12:00:00Z", "event_attributes": {"order_id": "new"}}
    later = build_purchases([new], _items(events, aisle_of, titles), previous=stats, since=stats["last_at"])
    assert later["items"]["196"]["n"] == stats["items"]["196"]["n"] + 1
    assert "recent" not in later["items"]["196"]  # never a partial list that would read as the whole story


def test_a_stored_model_of_other_features_falls_back_to_the_script(model, tmp_path):
    from shopsearch.query.shopper_rank import model_dir, shopper_model
    from shopsearch.settings import load_settings
    settings = load_settings({}).replace(models_dir=str(tmp_path))
    shopper_ranker.save(model, model_dir(settings, "ic"))
    assert shopper_model(settings, "ic") is not None
    card = model_dir(settings, "ic") / "card.json"
    card.write_text(card.read_text().replace('"times_bought"', '"times_bought_v0"'))
    stamp = (model_dir(settings, "ic") / "model.txt").stat().st_mtime + 5  # a new file: loaded again
    os.utime(model_dir(settings, "ic") / "model.txt", (stamp, stamp))
    assert shopper_model(settings, "ic") is None
