"""`shopsearch eval personalisation`: real Instacart histories replayed through the real middleware.

The end-to-end test runs the whole protocol on a slice: a few shoppers and the products they
and a few thousand others bought (written to a temporary directory from the shared data, read
in place), with a catalogue of its own.
"""

from __future__ import annotations

import csv
import json
import shutil
import uuid
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from shopsearch.ingest.normalise import apply_scale, fit_popularity_scale
from shopsearch.ops.eval_personalisation import load_orders, replay_events, run, score, shopper_id, targets
from shopsearch.ops.middleware_client import middleware
from shopsearch.query.shopper_rank import model_dir

from .conftest import DATA

INSTACART = DATA / "instacart"
SHOPPERS = ("1", "2", "3", "7", "15", "17", "21", "22")


def _rows(path, keep=lambda row: True):
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        return reader.fieldnames, [r for r in reader if keep(r)]


def _write(path, fieldnames, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fieldnames, delimiter="\t", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


@pytest.fixture(scope="module")
def shop(client, settings):
    """One catalogue for this module (ingested once by the first run); deleted afterwards, its shopper ranker too."""
    name = f"test_ic_{uuid.uuid4().hex[:8]}"
    yield name
    client.indices.delete(index=f"{name}-v*", ignore_unavailable=True, allow_no_indices=True)
    shutil.rmtree(model_dir(settings, name), ignore_errors=True)


@pytest.fixture(scope="module")
def slice_dir(tmp_path_factory):
    """Order lines of eight shoppers (the first of the data); their products plus the first 500 of the catalogue.

    Eight, not four: the ranker learns from seven of them (one is kept apart), and on four its
    MRR (0.550-0.584 in four runs: its text scores and the clock differ per run) tied popularity's 0.55 once;
    on eight it is 0.595-0.613 against 0.445."""
    out = tmp_path_factory.mktemp("instacart")
    users = set(SHOPPERS)
    fields, lines = _rows(INSTACART / "order_lines.tsv", lambda r: r["user_id"] in users)
    _write(out / "order_lines.tsv", fields, lines)
    bought = {r["product_id"] for r in lines}
    fields, products = _rows(INSTACART / "products.tsv")
    _write(out / "products.tsv", fields, [p for n, p in enumerate(products) if p["product_id"] in bought or n < 500])
    for name in ("aisles.tsv", "departments.tsv"):
        (out / name).write_text((INSTACART / name).read_text(encoding="utf-8"), encoding="utf-8")
    return out


def test_orders_load_in_order_and_the_last_one_is_held_out(slice_dir):
    orders = load_orders(slice_dir / "order_lines.tsv")
    assert sorted(orders, key=int) == list(SHOPPERS)
    for history in orders.values():
        assert [o.number for o in history] == sorted(o.number for o in history)
    events = replay_events("1", orders["1"], "ic", datetime(2024, 6, 1, tzinfo=timezone.utc))
    replayed = {e["event_id"] for e in events}
    last = orders["1"][-1]
    assert not any(e.endswith(f"-{p}") and e.startswith(f"ic-{last.order_id}-") for e in replayed for p in last.products)
    assert len(events) == sum(len(o.products) for o in orders["1"][:-1])
    assert max(e["timestamp"] for e in events) <= "2024-06-01"
    assert {e["user_id"] for e in events} == {shopper_id("1")}


def test_targets_are_the_last_orders_products_with_their_aisle():
    orders = {"u": [], "v": []}
    from shopsearch.ops.eval_personalisation import Order
    orders["u"] = [Order("1", 1, 0, ("a",)), Order("2", 2, 5, ("b", "c"))]
    orders["v"] = [Order("3", 1, 0, ("a",))]  # one order: nothing to learn from, no target
    assert targets(orders, {"a": "x", "b": "fresh fruits", "c": "milk"}) == [("u", "b", "fresh fruits"), ("u", "c", "milk")]


def test_misses_past_100_score_zero():
    ranked = [str(i) for i in range(150)]
    assert score([(ranked, "0"), (ranked, "120")]) == {"mrr": 0.5, "hit@10": 0.5}


def test_the_best_sellers_are_not_clipped_into_a_tie():
    counts = list(range(1, 1000)) + [5000, 9000]
    scale = fit_popularity_scale(counts)
    assert apply_scale(5000, scale) < apply_scale(9000, scale) == 1.0


@pytest.fixture(scope="module")
def evaluated(slice_dir, services, settings, shop):
    """The whole protocol run once on the slice, the learned shopper ranker included."""
    return run(settings, slice_dir / "order_lines.tsv", shop)


def test_personalised_search_beats_popularity_on_real_histories(evaluated, slice_dir, settings, client, shop):
    doc = evaluated
    orders = load_orders(slice_dir / "order_lines.tsv")
    assert doc["users"] == len(SHOPPERS)
    assert doc["targets"] == sum(len(h[-1].products) for h in orders.values())
    assert set(doc["unpersonalised"]) == set(doc["personalised"]) == set(doc["learned"]) == {"mrr", "hit@10"}
    assert doc["personalised"]["mrr"] > doc["unpersonalised"]["mrr"] > 0
    assert doc["ratio_mrr"] == pytest.approx(doc["personalised"]["mrr"] / doc["unpersonalised"]["mrr"], abs=1e-3)

    # a second run stores no event twice: same events, same profiles, same figures
    again = run(settings, slice_dir / "order_lines.tsv", shop, learned=False)
    assert again["personalised"] == doc["personalised"] and again["unpersonalised"] == doc["unpersonalised"]
    client.indices.refresh(index=settings.ubi_events_index)
    stored = client.count(index=settings.ubi_events_index, body={"query": {"term": {"catalogue": shop}}})["count"]
    assert stored == doc["events_replayed"]


def test_the_learned_ranker_beats_popularity_and_is_stored_with_its_card(evaluated, settings, shop):
    doc = evaluated
    assert doc["learned"]["mrr"] > doc["unpersonalised"]["mrr"]
    assert doc["buy_again"]["mrr"] > doc["unpersonalised"]["mrr"]
    card = json.loads((model_dir(settings, shop) / "card.json").read_text())
    assert card["training"]["groups"] > 0 and card["training"]["users"] <= len(SHOPPERS)
    assert doc["shopper_ranker"]["path"] == str(model_dir(settings, shop))


def test_the_learned_ranker_serves_a_shoppers_usual_product_first(evaluated, settings, shop):
    # shopper 1 bought product 196 (Soda, aisle "soft drinks") in every order
    mw = middleware(settings.replace(personalise_ranker=True))
    try:
        body = mw.get(f"/shop/{shop}/search", {"q": "soft drinks", "user": shopper_id("1"), "size": 5, "explain": "true"})
    finally:
        mw.close()
    assert body["hits"][0]["id"] == "196"
    assert "ShopperRank(shopper-ranker" in body["explain"]["pipeline"]
    # in this slice soda is also the aisle's most popular product, so an anonymous
    # search shows it first too: what the ranker adds is checked offline (tests/test_shopper_ranker.py)


def test_the_command_writes_the_json_of_the_issue(slice_dir, services, settings, shop, tmp_path):
    catalogue = shop
    from shopsearch.cli import main
    out = tmp_path / "p.json"
    result = CliRunner().invoke(main, ["eval", "personalisation", "--orders", str(slice_dir / "order_lines.tsv"),
                                       "--catalogue", catalogue, "--limit-users", "2", "--no-learned",
                                       "--json", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert {"users", "targets", "unpersonalised", "personalised", "ratio_mrr"} <= set(doc)
    assert doc["users"] == 2 and "| personalised (script) |" in result.output and "learned" not in doc
