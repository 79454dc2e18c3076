"""Specification of training data from click logs (shopsearch/learn/training_data.py, position_bias.py).

Pure parts on synthetic logs; one test collects from real ``ubi_queries`` / ``ubi_events``
indices (uniquely named for the test) and a real catalogue index.
"""

from __future__ import annotations

import doctest
import random
import uuid

import pytest

from shopsearch.learn import training_data
from shopsearch.learn.position_bias import fit_position_bias, inverse_propensity
from shopsearch.learn.training_data import (Example, Search, TrainingData, build_training_data, click_examples, collect,
                                            dedupe, join_searches, keep_frequent_queries, observations, split_by_query)
from shopsearch.ops.click_model import estimate_propensities as ctr_ratio

THETA = {k: 1 / k for k in range(1, 11)}


def pbm_logs(sessions: int, seed: int = 0, noise: float = 0.3, theta=THETA) -> list[tuple]:
    """Impressions from a known PBM: a noisy ranker puts relevant items higher, but not always at one rank."""
    rng = random.Random(seed)
    relevance = {q: {f"{q}-{i}": rng.random() ** 2 for i in range(len(theta))} for q in range(60)}
    out = []
    for _ in range(sessions):
        q = rng.randrange(60)
        ranked = sorted(relevance[q], key=lambda d: -relevance[q][d] + rng.gauss(0, noise))
        out += [(q, d, k, rng.random() < theta[k] * relevance[q][d]) for k, d in enumerate(ranked, 1)]
    return out


def test_docstring_examples_hold():
    assert doctest.testmod(training_data).failed == 0


# --- position bias -----------------------------------------------------------------------------

def test_em_recovers_the_examination_curve_of_a_known_position_based_model():
    bias = fit_position_bias(pbm_logs(6000))
    assert bias.converged and bias.theta[1] == 1.0
    for k, true in THETA.items():
        assert bias.theta[k] == pytest.approx(true, abs=0.05), (k, bias.theta[k], true)


def test_em_corrects_what_the_click_through_ratio_overstates():
    logs = pbm_logs(6000)
    em = fit_position_bias(logs).theta
    naive = ctr_ratio([(k, c) for _, _, k, c in logs])
    error = lambda est: sum(abs(est[k] - THETA[k]) for k in THETA)
    assert error(em) < error(naive) / 3


@pytest.mark.parametrize("eta", [0.5, 2.0])
def test_em_follows_other_examination_curves(eta):
    theta = {k: 1 / k ** eta for k in range(1, 7)}
    bias = fit_position_bias(pbm_logs(6000, seed=1, theta=theta))
    assert all(bias.theta[k] == pytest.approx(theta[k], abs=0.06) for k in theta)


def test_without_rank_variation_the_estimate_falls_back_to_the_click_through_ratio():
    logs = pbm_logs(600, noise=0.0)  # every pair always at one rank: theta and gamma cannot be told apart
    bias, naive = fit_position_bias(logs), ctr_ratio([(k, c) for _, _, k, c in logs])
    assert bias.converged and bias.identifiable_share == 0.0
    assert all(bias.theta[k] == pytest.approx(naive[k], abs=0.05) for k in THETA), (bias.theta, naive)


def test_identifiability_is_reported():
    varied = fit_position_bias(pbm_logs(500))
    fixed = fit_position_bias([(q, d, k, c) for q, d, k, c in pbm_logs(500, noise=0.0)])
    assert varied.identifiable_share > 0.9 > 0.0 == fixed.identifiable_share


def test_em_needs_clicks_at_the_top():
    with pytest.raises(ValueError, match="position 1"):
        fit_position_bias([("q", "a", 1, False), ("q", "b", 2, True)])
    with pytest.raises(ValueError):
        fit_position_bias([])


@pytest.mark.parametrize("position, expected", [(1, 1.0), (2, 2.0), (4, 10.0), (9, 10.0), (3, 3.0)])
def test_inverse_propensity_is_clipped(position, expected):
    theta = {1: 1.0, 2: 0.5, 3: 1 / 3, 4: 0.01}
    assert inverse_propensity(theta, position, max_inverse_propensity=10.0) == pytest.approx(expected)


# --- from logs to examples -----------------------------------------------------------------------

QUERIES = [
    {"query_id": "s1", "user_id": "u1", "user_query": "Cordless  Drill", "timestamp": "2026-01-01T00:00:00Z",
     "impressions": [{"object_id": "a", "position": 1}, {"object_id": "b", "position": 2}, {"object_id": "c", "position": 3}]},
    {"query_id": "s2", "user_id": "u2", "user_query": "cordless drill", "timestamp": "2026-01-01T00:01:00Z",
     "impressions": [{"object_id": "c", "position": 1}, {"object_id": "a", "position": 2}]},
]
EVENTS = [
    {"query_id": "s1", "action_name": "click", "object_id": "c", "position": 3},
    {"query_id": "s1", "action_name": "add_to_cart", "object_id": "c", "position": 3},
    {"query_id": "s1", "action_name": "purchase", "object_id": "c", "position": 3},
    {"query_id": "s2", "action_name": "click", "object_id": "c", "position": 9},  # the impression's rank wins
    {"query_id": "nope", "action_name": "click", "object_id": "a", "position": 1},
    {"query_id": "s2", "action_name": "impression", "object_id": "a", "position": 2},
]


def test_events_join_their_search_and_the_strongest_action_counts():
    searches, counts = join_searches(QUERIES, EVENTS)
    assert [s.query for s in searches] == ["cordless drill", "cordless drill"]
    assert searches[0].actions == {"c": (5.0, 3)} and searches[1].actions == {"c": (1.0, 1)}
    assert counts == {"click": 2, "add_to_cart": 1, "purchase": 1, "unjoined_events": 1}
    assert observations(searches)[:3] == [("cordless drill", "a", 1, False), ("cordless drill", "b", 2, False),
                                          ("cordless drill", "c", 3, True)]


def test_an_example_is_the_clicked_item_with_the_items_skipped_above_it():
    s = Search("1", "q", None, (("a", 1), ("b", 2), ("c", 3), ("d", 4)), {"b": (1.0, 2), "d": (3.0, 4)})
    first, second = click_examples([s], {1: 1.0, 2: 0.5, 3: 0.4, 4: 0.25})
    assert (first.positive_id, first.negative_ids, first.weight) == ("b", ["a"], 2.0)
    assert (second.positive_id, second.negative_ids, second.weight) == ("d", ["a", "c"], 12.0)


def test_queries_below_the_minimum_number_of_searches_with_clicks_are_dropped():
    hit = lambda i, q: Search(str(i), q, None, (("a", 1),), {"a": (1.0, 1)})
    miss = lambda i, q: Search(str(i), q, None, (("a", 1),))
    kept, short = keep_frequent_queries([hit(1, "x"), hit(2, "x"), hit(3, "y"), miss(4, "y"), miss(5, "z")], 2)
    assert {s.query for s in kept} == {"x"} and short == 1


def test_identical_pairs_are_merged_and_a_positive_is_never_a_negative_of_its_query():
    merged = dedupe([Example("q", "a", negative_ids=["b", "c"], weight=2.0), Example("q", "a", negative_ids=["c"], weight=1.5),
                     Example("q", "b", weight=1.0), Example("r", "a", negative_ids=["b"], weight=1.0)])
    by_pair = {(e.query, e.positive_id): e for e in merged}
    assert len(merged) == 3
    assert (by_pair["q", "a"].weight, by_pair["q", "a"].sessions, by_pair["q", "a"].negative_ids) == (3.5, 2, ["c"])
    assert by_pair["r", "a"].negative_ids == ["b"]


def test_the_split_keeps_every_query_on_one_side():
    examples = [Example(f"query {i % 500}", f"item {i}") for i in range(3000)]
    examples += [Example("Query  7".upper(), "other")]  # another spelling of "query 7"
    train, valid = split_by_query(examples, valid_fraction=0.2)
    norm = lambda e: " ".join(e.query.lower().split())
    assert not {norm(e) for e in train} & {norm(e) for e in valid}
    assert 0.15 < len({norm(e) for e in valid}) / 500 < 0.25
    assert split_by_query(examples, 0.2) == (train, valid)


def test_build_attaches_texts_and_summarises():
    searches, _ = join_searches(QUERIES, EVENTS)
    data = build_training_data(searches, texts={"a": "A drill", "c": "C drill"}, valid_fraction=0.0)
    (e,) = data.train
    assert (e.query, e.positive_id, e.positive, e.negative_ids, e.negatives) == ("cordless drill", "c", "C drill", ["a"], ["A drill"])
    assert e.sessions == 2 and e.weight > 5.0
    summary = data.summary()
    assert summary["pairs"] == 1 and summary["queries"] == 1 and summary["sessions"] == 2 and summary["clicks"] == 2
    assert summary["positions"] == {"1": 1, "3": 1} and summary["propensities"]["1"] == 1.0


def test_training_data_round_trips_through_files(tmp_path):
    data = TrainingData([Example("q", "a", "A", ["b"], ["B"], 2.5, 2)], [Example("r", "c", "C")], {1: 1.0, 2: 0.5},
                        {"searches": 3, "queries_below_min_sessions": 1, "window": {"since": None, "until": None}})
    loaded = TrainingData.load(data.save(tmp_path / "data"))
    assert loaded.train == data.train and loaded.valid == data.valid and loaded.propensities == data.propensities
    assert loaded.summary() == data.summary()


# --- against the real click-log indices ---------------------------------------------------------

def test_collect_reads_real_click_logs_in_a_window(client, settings, catalogue):
    from opensearchpy import helpers

    from shopsearch.index.versions import create_version
    from shopsearch.index.ubi import ensure_ubi_indices
    run = uuid.uuid4().hex[:8]
    s = settings.replace(ubi_queries_index=f"test_ubi_queries_{run}", ubi_events_index=f"test_ubi_events_{run}")
    create_version(client, catalogue, {"mappings": {"properties": {"title": {"type": "text"}, "brand": {"type": "keyword"},
                                                                   "category_path": {"type": "keyword"}}}})
    items = {"a": {"title": "DeWalt 20V drill", "brand": "DeWalt", "category_path": ["Tools", "Drills"]},
             "b": {"title": "Behr white paint", "brand": "Behr"}, "c": {"title": "Makita cordless drill"}}
    helpers.bulk(client, [{"_index": catalogue, "_id": k, "_source": v} for k, v in items.items()], refresh=True)
    ensure_ubi_indices(client, s)
    try:
        docs, events = [], []
        for n in range(12):
            q = "cordless drill" if n % 3 else "white paint"
            order = ["b", "a", "c"] if q == "white paint" else ["a", "b", "c"] if n % 2 else ["c", "a", "b"]
            docs.append({"query_id": f"{run}-{n}", "user_id": f"u{n % 4}", "catalogue": catalogue, "user_query": q,
                         "timestamp": f"2026-01-{n + 1:02d}T10:00:00Z",
                         "impressions": [{"object_id": d, "position": k} for k, d in enumerate(order, 1)]})
            target = "b" if q == "white paint" else ("c" if n % 2 else "a")
            events.append({"event_id": f"{run}-e{n}", "query_id": f"{run}-{n}", "user_id": f"u{n % 4}",
                           "catalogue": catalogue, "action_name": "click", "object_id": target,
                           "position": order.index(target) + 1, "timestamp": f"2026-01-{n + 1:02d}T10:00:05Z"})
        events.append({"event_id": f"{run}-buy", "query_id": f"{run}-1", "user_id": "u1", "catalogue": catalogue,
                       "action_name": "purchase", "object_id": "c", "position": 3, "timestamp": "2026-01-02T10:01:00Z"})
        helpers.bulk(client, [{"_index": s.ubi_queries_index, "_id": d["query_id"], "_source": d} for d in docs])
        helpers.bulk(client, [{"_index": s.ubi_events_index, "_id": e["event_id"], "_source": e} for e in events])

        data = collect(client, s, catalogue, since="2026-01-01T00:00:00Z", until="2026-01-11T00:00:00Z", valid_fraction=0.0)
        pairs = {(e.query, e.positive_id): e for e in data.train}
        assert set(pairs) == {("cordless drill", "a"), ("cordless drill", "c"), ("white paint", "b")}
        assert pairs["cordless drill", "a"].positive == "DeWalt 20V drill | Tools > Drills"
        # skipped above c: a (but a is a positive of the same query elsewhere, so never its negative) and b
        assert pairs["cordless drill", "c"].negatives == ["Behr white paint"]  # the brand is in the title already
        assert pairs["cordless drill", "c"].weight > pairs["cordless drill", "a"].weight  # deeper rank and a purchase
        summary = data.summary()
        assert summary["searches"] == 10 and summary["clicks"] == 10  # Jan 11 and 12 are outside the window
        assert summary["window"] == {"since": "2026-01-01T00:00:00Z", "until": "2026-01-11T00:00:00Z"}
        assert summary["events"]["purchase"] == 1 and summary["index"] == f"{catalogue}-v1"
        assert summary["propensities"]["1"] == 1.0 and summary["pairs"] == 3
    finally:
        client.indices.delete(index=[s.ubi_queries_index, s.ubi_events_index], ignore_unavailable=True)
