"""Facets: how many of a search's results fall under each category, colour, brand, gender and
price range (pure: request bodies and their reading; the storefront sends them).

The counts are over the search's ranked results, the list a shopper pages through (the hits of
:meth:`shopsearch.query.searcher.Searcher.search` for the deepest page asked), not over every
document that shares a word with the query: a hybrid search ranks a bounded candidate list, and
a count the shopper cannot page to would mislead. One ``ids`` request with ``terms``
aggregations counts the keyword fields; price ranges are cut from the results' own prices
(:func:`price_ranges`), so a catalogue without prices shows no price facet at all.

>>> body = facet_body(["a", "b"], [(None, 500.0), (500.0, None)])
>>> sorted(body["aggs"]), body["query"]
(['brand', 'category', 'colour', 'gender', 'price'], {'ids': {'values': ['a', 'b']}})
>>> read_facets({"aggregations": {"colour": {"buckets": [{"key": "black", "doc_count": 2}]},
...              "price": {"buckets": [{"key": "*-500.0", "to": 500.0, "doc_count": 0}]}}})
{'colour': [{'value': 'black', 'count': 2}], 'price': []}
"""

from __future__ import annotations

import math
from typing import Iterable

# The keyword fields a shopper can filter by (request parameters of the same names).
FACET_FIELDS = ("category", "colour", "brand", "gender")
FACET_SIZE = 12  # values per facet: a longer list is noise on a results page


def facet_body(ids: list[str], ranges: list[tuple[float | None, float | None]], size: int = FACET_SIZE) -> dict:
    """One search request counting the facet values of the documents ``ids`` (a ``size: 0`` search)."""
    aggs: dict = {name: {"terms": {"field": name, "size": size}} for name in FACET_FIELDS}
    if ranges:
        aggs["price"] = {"range": {"field": "price", "ranges": [
            {k: v for k, v in (("from", lo), ("to", hi)) if v is not None} for lo, hi in ranges]}}
    return {"size": 0, "query": {"ids": {"values": list(ids)}}, "aggs": aggs}


def read_facets(response: dict) -> dict[str, list[dict]]:
    """``{facet: [{"value", "count"}...]}`` from the answer to :func:`facet_body`, empty buckets left out;
    price buckets carry ``from`` / ``to`` (absent: open-ended)."""
    out: dict[str, list[dict]] = {}
    for name, agg in (response.get("aggregations") or {}).items():
        buckets = []
        for b in agg.get("buckets", []):
            if not b.get("doc_count"):
                continue
            if name == "price":
                buckets.append({"value": price_label(b.get("from"), b.get("to")), "count": b["doc_count"],
                                **{k: b[k] for k in ("from", "to") if b.get(k) is not None}})
            else:
                buckets.append({"value": b["key"], "count": b["doc_count"]})
        out[name] = buckets
    return out


def price_ranges(prices: Iterable[float | None], buckets: int = 4) -> list[tuple[float | None, float | None]]:
    """Up to ``buckets`` price ranges with round bounds at the quantiles of ``prices`` (pure); the
    first and last are open-ended. No prices: no ranges.

    >>> price_ranges([100, 250, 400, 800, 1200, 2500, 3000])
    [(None, 200.0), (200.0, 500.0), (500.0, 2000.0), (2000.0, None)]
    >>> price_ranges([None, 20]), price_ranges([])
    ([(None, 20.0), (20.0, None)], [])
    """
    values = sorted(float(p) for p in prices if p is not None and math.isfinite(float(p)))
    if not values:
        return []
    cuts: list[float] = []
    for q in range(1, buckets):
        cut = round_price(values[min(len(values) - 1, (len(values) * q) // buckets)])
        if cut > values[0] and (not cuts or cut > cuts[-1]):
            cuts.append(cut)
    if not cuts:
        cuts = [round_price(values[-1])]
    bounds = [None, *cuts, None]
    return list(zip(bounds[:-1], bounds[1:]))


def round_price(value: float) -> float:
    """``value`` rounded to one significant step of 1, 2, 3 or 5 (for readable price bounds).

    >>> [round_price(v) for v in (7, 23, 380, 1240, 0.4)]
    [5.0, 20.0, 300.0, 1000.0, 0.3]
    """
    if value <= 0:
        return 0.0
    scale = 10 ** math.floor(math.log10(value))
    for step in (5, 3, 2, 1):
        if value >= step * scale:
            return float(round(step * scale, 10))
    return float(round(scale, 10))


def price_label(lo: float | None, hi: float | None) -> str:
    """``under 500``, ``500-1000``, ``3000 and more``.

    >>> price_label(None, 500.0), price_label(500.0, 1000.0), price_label(3000.0, None)
    ('under 500', '500-1000', '3000 and more')
    """
    def show(v: float) -> str:
        return f"{v:g}"
    if lo is None:
        return f"under {show(hi)}"
    if hi is None:
        return f"{show(lo)} and more"
    return f"{show(lo)}-{show(hi)}"
