"""Personalisation boost, computed in Python from the profile and the candidates' fields (pure).

``final = fused + min(max_boost, boost)`` where ``boost`` adds the shopper's category and brand
affinities, their item affinity (the "buy again" signal: products this shopper interacted with)
and a price-band match, each with its weight (``personalise_weights``). The profile and the
candidates' fields (``category``, ``brand``, ``price_norm``, the id) come back with the search's
one ``_msearch``, so personalisation costs no request of its own (it used to be a stored Painless
script run in a second request; the arithmetic is the same, see
``tests/test_personalise_boost.py``, which checks it against that script).

The profile-vector cosine term of the script is gone: it needed every candidate's vector, which
no single request can bring back cheaply, and on real shopper histories it did not earn its place
(Instacart ablation: MRR 0.5156 without it, 0.5143 with it; docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import unicodedata

FEATURES = ("category", "brand", "item", "price")
DEFAULT_WEIGHTS = {"w_category": 0.3, "w_brand": 0.2, "w_item": 2.0, "w_price": 0.1}
REMOVED = {"vector": "the profile-vector term was removed (one round trip per search; it did not earn its place: "
                     "docs/ARCHITECTURE.md, Personalisation)"}


def parse_weights(text: str) -> dict[str, float]:
    """The ``personalise_weights`` setting as the boost's weights; unnamed features keep their default.

    >>> parse_weights("item=1, brand=0")["w_item"], parse_weights("item=1, brand=0")["w_brand"]
    (1.0, 0.0)
    >>> parse_weights("colour=1")
    Traceback (most recent call last):
    ...
    ValueError: personalise_weights: unknown feature 'colour' (known: category, brand, item, price)
    """
    out = dict(DEFAULT_WEIGHTS)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        name = name.strip()
        if name in REMOVED:
            raise ValueError(f"personalise_weights: {name}: {REMOVED[name]}")
        if name not in FEATURES:
            raise ValueError(f"personalise_weights: unknown feature {name!r} (known: {', '.join(FEATURES)})")
        try:
            weight = float(value)
        except ValueError:
            raise ValueError(f"personalise_weights: {name} needs a number, got {value.strip()!r}") from None
        if weight < 0:
            raise ValueError(f"personalise_weights: {name} must not be negative")
        out[f"w_{name}"] = weight
    return out


def facet_key(value: str) -> str:
    """The form the ``facet`` normaliser gives a keyword (width folded, lower case, trimmed)."""
    return unicodedata.normalize("NFKC", value).lower().strip()


def profile_terms(profile: dict) -> dict:
    """The profile as the boost reads it: facet keys normalised, the price band a pair (pure).

    >>> profile_terms({"categories": {"Shoes": 1.0}, "price_band": [0.1, 0.4]})["categories"]
    {'shoes': 1.0}
    """
    band = profile.get("price_band")
    return {
        "categories": {facet_key(k): float(v) for k, v in (profile.get("categories") or {}).items()},
        "brands": {facet_key(k): float(v) for k, v in (profile.get("brands") or {}).items()},
        "items": {str(k): float(v) for k, v in (profile.get("items") or {}).items()},
        "price_band": (float(band[0]), float(band[1])) if band else None,
    }


def _facet(value) -> str | None:
    """A candidate's facet as its keyword doc value reads: normalised, the smallest of several."""
    if isinstance(value, list):
        keys = [facet_key(v) for v in value if isinstance(v, str)]
        return min(keys) if keys else None
    return facet_key(value) if isinstance(value, str) else None


def item_boost(terms: dict, item_id: str, source: dict, weights: dict) -> float:
    """The unbounded boost of one candidate for one shopper (``terms``: :func:`profile_terms`).

    >>> t = profile_terms({"categories": {"Shoes": 0.5}, "items": {"a": 1.0}, "price_band": [0.0, 0.5]})
    >>> item_boost(t, "a", {"category": "shoes", "price_norm": 0.2}, DEFAULT_WEIGHTS)
    2.25
    """
    boost = 0.0
    category, brand = _facet(source.get("category")), _facet(source.get("brand"))
    if category is not None and category in terms["categories"]:
        boost += weights["w_category"] * terms["categories"][category]
    if brand is not None and brand in terms["brands"]:
        boost += weights["w_brand"] * terms["brands"][brand]
    if item_id in terms["items"]:
        boost += weights["w_item"] * terms["items"][item_id]
    price, band = source.get("price_norm"), terms["price_band"]
    if band is not None and isinstance(price, (int, float)) and band[0] <= price <= band[1]:
        boost += weights["w_price"]
    return boost


def personalise(ranked: list[tuple[str, float]], sources: dict[str, dict], profile: dict, max_boost: float,
                weights: dict | None = None) -> tuple[list[tuple[str, float]], dict[str, float]]:
    """``(ranking, boosts)``: each candidate's fused score plus its bounded boost, re-ordered (pure).

    >>> personalise([("a", 0.5), ("b", 0.25)], {"b": {"category": "Tea"}}, {"categories": {"tea": 1.0}}, 2.0)
    ([('b', 0.55), ('a', 0.5)], {'a': 0.0, 'b': 0.3})
    """
    w = {**DEFAULT_WEIGHTS, **(weights or {})}
    terms = profile_terms(profile)
    final = {d: s + min(max_boost, max(0.0, item_boost(terms, d, sources.get(d) or {}, w))) for d, s in ranked}
    return apply_personal_scores(ranked, final)


def comparable_profile(profile: dict, model_version: str | None) -> dict:
    """The profile without its vector when that vector comes from another model (not comparable).

    >>> comparable_profile({"vector": [1.0], "model_version": "a"}, "b")["vector"] is None
    True
    """
    if profile.get("model_version") and profile["model_version"] != model_version:
        return {**profile, "vector": None}
    return profile


def apply_personal_scores(ranked: list[tuple[str, float]], final: dict[str, float]):
    """``(ranking, boosts)``: the candidates re-ordered by their final scores (a candidate without
    one keeps its own), and each candidate's boost.

    >>> apply_personal_scores([("a", 0.5), ("b", 0.4)], {"b": 0.7})
    ([('b', 0.7), ('a', 0.5)], {'a': 0.0, 'b': 0.3})
    """
    boosts = {d: round(final.get(d, s) - s, 6) for d, s in ranked}
    reranked = sorted(((d, final.get(d, s)) for d, s in ranked), key=lambda kv: (-kv[1], kv[0]))
    return reranked, boosts
