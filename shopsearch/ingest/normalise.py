"""Normalise stage of ingest: map price, rating and popularity into [0, 1] for ranking.

A scale is *fitted* once per catalogue (its parameters are a small JSON-serialisable dict,
stored in the index mapping's ``_meta`` so that queries can scale a filter value the same
way) and then *applied* to each item. Methods:

- ``log_minmax`` (price, popularity): x = log1p(value), then a robust min-max between the
  1st and 99th percentile of x over the catalogue's own values, so that one 100,000 ¥ outlier
  does not squash every other price towards 0. Negative values count as 0.
- ``minmax``: the same robust min-max without the log.
- ``linear`` (rating): fixed bounds, e.g. [0, 5]; nothing is learnt from the data.

Values outside the bounds clip to 0 or 1; a missing value stays None. When every value is
the same (or there are none), hi == lo and every value scales to 0.5: with nothing to tell
items apart, the signal should neither boost nor bury anyone.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

METHODS = ("log_minmax", "minmax", "linear")
CONSTANT_SCORE = 0.5


def _finite(values: Iterable[Any]) -> list[float]:
    out = []
    for value in values:
        if value is None or isinstance(value, bool):
            continue
        number = float(value)
        if math.isfinite(number):
            out.append(number)
    return out


def _transform(value: float, method: str) -> float:
    return math.log1p(max(value, 0.0)) if method == "log_minmax" else value


def percentile(sorted_values: list[float], pct: float) -> float:
    """The ``pct`` percentile (0-100) of sorted values, linearly interpolated (numpy's default).

    >>> percentile([0.0, 10.0], 50)
    5.0
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = (len(sorted_values) - 1) * pct / 100.0
    below = math.floor(rank)
    above = min(below + 1, len(sorted_values) - 1)
    return sorted_values[below] + (sorted_values[above] - sorted_values[below]) * (rank - below)


def fit_scale(values: Iterable[Any], method: str = "log_minmax", *, bounds: tuple[float, float] | None = None,
              low_pct: float = 1.0, high_pct: float = 99.0) -> dict:
    """Fit ``{"method", "lo", "hi", "n"}`` on a catalogue's values (None and NaN are ignored).

    ``linear`` takes fixed ``bounds=(lo, hi)``; the others learn lo and hi as the
    ``low_pct``/``high_pct`` percentiles of the (transformed) values.

    >>> fit_scale([1, 2, 3], "minmax", low_pct=0, high_pct=100)
    {'method': 'minmax', 'lo': 1.0, 'hi': 3.0, 'n': 3}
    """
    if method not in METHODS:
        raise ValueError(f"unknown scale method {method!r}; expected one of {METHODS}")
    numbers = _finite(values)
    if method == "linear":
        if bounds is None:
            raise ValueError("the linear method needs bounds=(lo, hi)")
        lo, hi = float(bounds[0]), float(bounds[1])
    elif not numbers:
        lo = hi = 0.0
    else:
        xs = sorted(_transform(v, method) for v in numbers)
        lo, hi = percentile(xs, low_pct), percentile(xs, high_pct)
    return {"method": method, "lo": lo, "hi": hi, "n": len(numbers)}


def apply_scale(value: Any, params: dict) -> float | None:
    """Scale one value into [0, 1] with fitted ``params``; None stays None.

    >>> apply_scale(4.0, {"method": "linear", "lo": 0.0, "hi": 5.0, "n": 0})
    0.8
    """
    if value is None:
        return None
    number = float(value)
    if math.isnan(number):
        return None
    lo, hi = params["lo"], params["hi"]
    if hi <= lo:
        return CONSTANT_SCORE
    scaled = (_transform(number, params["method"]) - lo) / (hi - lo)
    return min(1.0, max(0.0, scaled))


def fit_price_scale(prices: Iterable[Any]) -> dict:
    """Log-scaled robust min-max (1st-99th percentile of log1p price) over the catalogue's prices."""
    return fit_scale(prices, "log_minmax")


def apply_price_scale(price: Any, params: dict) -> float | None:
    """A price in [0, 1] (cheapest 0, dearest 1), clipped; None stays None."""
    return apply_scale(price, params)


def fit_rating_scale(ratings: Iterable[Any] = (), scale: float = 5.0) -> dict:
    """Linear on [0, scale]: a rating's meaning does not depend on the other products."""
    return fit_scale(ratings, "linear", bounds=(0.0, scale))


def fit_popularity_scale(counts: Iterable[Any]) -> dict:
    """Log-scaled min-max over sales/view counts, which are heavy-tailed like prices.

    Unlike prices, the whole range is kept (no percentile clipping): the best sellers are the
    tail, and clipping them to 1 would tie exactly the products a popularity ranking must order.
    """
    return fit_scale(counts, "log_minmax", low_pct=0, high_pct=100)


def fit_catalogue_scales(items: list[dict]) -> dict[str, dict]:
    """Fit price, rating and popularity scales on a list of clean items (see clean.clean_item)."""
    rating_scale = max((float(i.get("rating_scale") or 5.0) for i in items), default=5.0)
    return {
        "price": fit_price_scale(i.get("price") for i in items),
        "rating": fit_rating_scale((i.get("rating") for i in items), rating_scale),
        "popularity": fit_popularity_scale(i.get("popularity") for i in items),
    }


def normalise_item(item: dict, scales: dict[str, dict]) -> dict:
    """A copy of a clean item with ``price_norm``, ``rating_norm`` and ``popularity_norm`` added.

    A rating is scaled by the item's own ``rating_scale``, so catalogues on 0-5 and 0-10
    scales agree.
    """
    rating_params = {**scales["rating"], "hi": float(item.get("rating_scale") or scales["rating"]["hi"])}
    return {
        **item,
        "price_norm": apply_scale(item.get("price"), scales["price"]),
        "rating_norm": apply_scale(item.get("rating"), rating_params),
        "popularity_norm": apply_scale(item.get("popularity"), scales["popularity"]),
    }
