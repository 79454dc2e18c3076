"""Specification of the normalise stage: numeric signals scaled into [0, 1]."""

from __future__ import annotations

import json
import math

import pytest

from shopsearch.ingest.normalise import (
    CONSTANT_SCORE, apply_price_scale, apply_scale, fit_catalogue_scales, fit_popularity_scale,
    fit_price_scale, fit_rating_scale, fit_scale, normalise_item, percentile,
)

PRICES = [float(p) for p in range(1, 101)]  # 1 .. 100


@pytest.mark.parametrize("values, pct, expected", [
    ([0.0, 10.0], 50, 5.0), ([1.0, 2.0, 3.0], 0, 1.0), ([1.0, 2.0, 3.0], 100, 3.0), ([7.0], 99, 7.0),
])
def test_percentile_interpolates_linearly(values, pct, expected):
    assert percentile(values, pct) == pytest.approx(expected)


def test_price_scale_is_fitted_on_log_prices_between_the_1st_and_99th_percentile():
    params = fit_price_scale(PRICES)
    logs = sorted(math.log1p(p) for p in PRICES)
    assert params == {"method": "log_minmax", "lo": pytest.approx(percentile(logs, 1)),
                      "hi": pytest.approx(percentile(logs, 99)), "n": 100}


def test_scale_parameters_are_json_serialisable():
    params = fit_price_scale(PRICES)
    assert json.loads(json.dumps(params)) == params


@pytest.mark.parametrize("values, n", [([1, None, 3], 2), ([float("nan"), 2], 1), ([], 0)])
def test_missing_and_nan_values_are_ignored_when_fitting(values, n):
    assert fit_price_scale(values)["n"] == n


def test_applied_prices_keep_their_order_inside_zero_to_one():
    params = fit_price_scale(PRICES)
    scaled = [apply_price_scale(p, params) for p in PRICES]
    assert scaled == sorted(scaled) and all(0.0 <= s <= 1.0 for s in scaled)


@pytest.mark.parametrize("price, expected", [(0.0, 0.0), (1.0, 0.0), (100.0, 1.0), (1_000_000.0, 1.0), (-5.0, 0.0)])
def test_prices_beyond_the_fitted_range_clip_to_zero_or_one(price, expected):
    assert apply_price_scale(price, fit_price_scale(PRICES)) == expected


def test_one_outlier_does_not_squash_the_other_prices():
    params = fit_price_scale([10.0] * 100 + [100.0] * 199 + [1e9])  # the outlier is under 1%
    assert apply_price_scale(100.0, params) == pytest.approx(1.0)


@pytest.mark.parametrize("value", [None, float("nan")])
def test_a_missing_value_stays_missing(value):
    assert apply_price_scale(value, fit_price_scale(PRICES)) is None


@pytest.mark.parametrize("values", [[42.0] * 10, [42.0], []])
def test_constant_or_empty_input_scales_everything_to_the_middle(values):
    params = fit_price_scale(values)
    assert [apply_price_scale(p, params) for p in (1.0, 42.0, 99.0)] == [CONSTANT_SCORE] * 3


@pytest.mark.parametrize("rating, scale, expected", [(0, 5.0, 0.0), (2.5, 5.0, 0.5), (5, 5.0, 1.0), (8, 10.0, 0.8)])
def test_ratings_scale_linearly_on_their_own_scale(rating, scale, expected):
    assert apply_scale(rating, fit_rating_scale(scale=scale)) == pytest.approx(expected)


def test_rating_scale_does_not_depend_on_the_catalogue():
    assert fit_rating_scale([1, 1, 1])["hi"] == fit_rating_scale([4, 5])["hi"] == 5.0


def test_popularity_scales_like_price_on_a_log_axis():
    counts = [0, 1, 10, 100, 1000, 10_000]
    params = fit_popularity_scale(counts)
    assert params["method"] == "log_minmax"
    steps = [apply_scale(c, params) for c in counts[1:]]
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    assert max(gaps) - min(gaps) < 0.1  # each tenfold step moves the score by about the same


@pytest.mark.parametrize("method, kwargs", [("cubic", {}), ("linear", {})])
def test_an_unknown_method_or_a_linear_scale_without_bounds_is_an_error(method, kwargs):
    with pytest.raises(ValueError):
        fit_scale([1, 2], method, **kwargs)


def test_minmax_fits_without_the_log():
    params = fit_scale([0, 10], "minmax", low_pct=0, high_pct=100)
    assert apply_scale(5, params) == pytest.approx(0.5)


def test_normalise_item_adds_scores_for_each_signal():
    items = [{"price": p, "rating": 4.0, "rating_scale": 5.0, "popularity": None} for p in PRICES]
    scales = fit_catalogue_scales(items)
    item = normalise_item(items[-1], scales)
    assert (item["price_norm"], item["rating_norm"], item["popularity_norm"]) == (1.0, pytest.approx(0.8), None)
    assert "price_norm" not in items[-1]
