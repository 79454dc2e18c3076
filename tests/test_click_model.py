"""Specification of the position-based click model (shopsearch.click_model): pure, seeded."""

from __future__ import annotations

import doctest
import random
from collections import Counter

import pytest

from shopsearch.learn.events import validate_batch
from shopsearch.ops import click_model
from shopsearch.ops.click_model import ClickModel, as_ubi_events, estimate_propensities, simulate_session

MODEL = ClickModel()


def test_docstring_examples_hold():
    assert doctest.testmod(click_model).failed == 0


@pytest.mark.parametrize("eta", [0.5, 1.0, 2.0])
def test_examination_falls_with_rank(eta):
    model = ClickModel(examination_decay=eta)
    chances = [model.examination(r) for r in range(1, 21)]
    assert chances[0] == 1.0
    assert all(a > b for a, b in zip(chances, chances[1:]))


@pytest.mark.parametrize("rank, expected", [(1, 1.0), (2, 0.5), (10, 0.1)])
def test_default_examination_is_one_over_rank(rank, expected):
    assert MODEL.examination(rank) == pytest.approx(expected)


@pytest.mark.parametrize("grade, expected", [
    (1, 0.05), (2, 0.3), (3, 0.8), (1.5, 0.175), (2.5, 0.55), (7 / 3, 0.3 + 0.5 / 3), (8 / 3, 0.3 + 1 / 3),
    (0, 0.05), (4, 0.8), (None, 0.02),
])
def test_click_probability_follows_the_grade(grade, expected):
    assert MODEL.click_probability(grade) == pytest.approx(expected)


@pytest.mark.parametrize("bad", [
    {"examination_decay": -1}, {"unrated_prob": 1.5}, {"cart_prob": -0.1}, {"click_prob": {}},
    {"click_prob": {1: 2.0}},
])
def test_impossible_parameters_are_refused(bad):
    with pytest.raises(ValueError):
        ClickModel(**bad)


def test_rank_is_one_based():
    with pytest.raises(ValueError):
        MODEL.examination(0)


def test_sessions_are_deterministic_for_a_seed():
    ranked, judged = [f"p{i}" for i in range(10)], {f"p{i}": 1 + i % 3 for i in range(10)}
    runs = [[simulate_session(ranked, judged, rng) for _ in range(50)] for rng in (random.Random(7), random.Random(7))]
    assert runs[0] == runs[1]
    assert runs[0] != [simulate_session(ranked, judged, random.Random(8)) for _ in range(50)]


def many_sessions(ranked, judged, n=4000, seed=11, model=MODEL):
    rng = random.Random(seed)
    return Counter((oid, action) for _ in range(n) for oid, _, action in simulate_session(ranked, judged, rng, model))


def test_higher_grades_get_more_clicks_at_the_same_rank():
    clicks = {g: many_sessions(["x"], {"x": g} if g else {})[("x", "click")] for g in (None, 1, 2, 3)}
    assert clicks[None] < clicks[1] < clicks[2] < clicks[3]
    assert clicks[3] / 4000 == pytest.approx(0.8, abs=0.03)


def test_clicks_fall_with_rank_for_equally_relevant_products():
    ranked = [f"p{i}" for i in range(5)]
    counts = many_sessions(ranked, dict.fromkeys(ranked, 3))
    clicks = [counts[(p, "click")] for p in ranked]
    assert all(a > b for a, b in zip(clicks, clicks[1:]))


def test_follow_ups_come_only_after_clicks_and_favour_relevant_products():
    counts = many_sessions(["good", "poor"], {"good": 3, "poor": 1}, model=ClickModel(examination_decay=0))
    for p in ("good", "poor"):
        assert counts[(p, "click")] >= counts[(p, "add_to_cart")] >= counts[(p, "purchase")]
    good_rate = counts[("good", "add_to_cart")] / counts[("good", "click")]
    poor_rate = counts[("poor", "add_to_cart")] / max(1, counts[("poor", "click")])
    assert good_rate == pytest.approx(0.3, abs=0.03) and poor_rate < 0.1


def test_session_actions_are_in_rank_order_with_follow_ups_after_their_click():
    rng = random.Random(5)
    for _ in range(200):
        actions = simulate_session([f"p{i}" for i in range(10)], {f"p{i}": 3 for i in range(10)}, rng)
        assert [p for _, p, _ in actions] == sorted(p for _, p, _ in actions)
        for i, (oid, pos, action) in enumerate(actions):
            if action != "click":
                assert actions[i - 1][:2] == (oid, pos)


def test_simulated_actions_make_valid_events():
    actions = [("a", 1, "click"), ("a", 1, "add_to_cart"), ("a", 1, "purchase")]
    stored = validate_batch(as_ubi_events(actions, "q1", "sim-1", "2024-05-01T12:00:00Z"))
    assert [(e["object_id"], e["position"], e["action_name"]) for e in stored] == actions
    assert len({e["event_id"] for e in stored}) == 3


# --- propensity estimates -------------------------------------------------------------------------------

def impression_log(sessions, seed, shuffle):
    """(position, clicked) for every impression of ``sessions`` simulated shoppers."""
    rng = random.Random(seed)
    products = [f"p{i}" for i in range(10)]
    judged = {p: 1 + i % 3 for i, p in enumerate(products)}
    log = []
    for _ in range(sessions):
        ranked = rng.sample(products, len(products)) if shuffle else products
        clicked = {pos for _, pos, action in simulate_session(ranked, judged, rng) if action == "click"}
        log += [(pos, pos in clicked, True) for pos in range(1, len(ranked) + 1)]
    return log


def test_propensities_fall_with_position_on_simulated_logs():
    estimate = estimate_propensities(impression_log(20000, seed=1, shuffle=True))
    values = [estimate[p] for p in range(1, 11)]
    assert values[0] == 1.0
    assert all(a > b for a, b in zip(values, values[1:]))


def test_propensities_recover_one_over_rank_when_relevance_is_shuffled():
    estimate = estimate_propensities(impression_log(20000, seed=2, shuffle=True))
    for position in (2, 3, 5):
        assert estimate[position] == pytest.approx(1 / position, abs=0.04)


@pytest.mark.parametrize("log, expected", [
    pytest.param([(1, True), (2, True), (2, True)], {1: 1.0, 2: 1.0}, id="clipped-at-one"),
    pytest.param([(1, True)] + [(3, False)] * 5, {1: 1.0, 3: 0.01}, id="clipped-at-floor"),
    pytest.param([(1, True, False), (1, False, True)], {1: 1.0}, id="third-element-ignored"),
])
def test_propensities_are_clipped_to_unit_range(log, expected):
    assert estimate_propensities(log) == expected


@pytest.mark.parametrize("log", [[(2, True)], [(1, False), (2, True)], [(0, True)]])
def test_propensities_need_clicks_at_position_one(log):
    with pytest.raises(ValueError):
        estimate_propensities(log)
