"""Personalisation boost: parameters for the stored Painless script, built from a shopper profile.

The script (``mappings/scripts/personalise.painless``) runs after fusion over the fused
candidates: ``final = fused + min(max_boost, boost)`` where ``boost`` adds the cosine of the
profile vector and the item's fused vector, the shopper's category, brand and item affinities
(the last is "buy again": products this shopper interacted with) and a price-band match, each with its weight. Every input is a parameter; shoppers never send scripts.
"""

from __future__ import annotations

import unicodedata

SCRIPT_ID = "shopsearch-personalise-v2"
FEATURES = ("vector", "category", "brand", "item", "price")
DEFAULT_WEIGHTS = {"w_vector": 0.3, "w_category": 0.3, "w_brand": 0.2, "w_item": 2.0, "w_price": 0.1}


def parse_weights(text: str) -> dict[str, float]:
    """The ``personalise_weights`` setting as script params; unnamed features keep their default.

    >>> parse_weights("item=1, vector=0")["w_item"], parse_weights("item=1, vector=0")["w_vector"]
    (1.0, 0.0)
    >>> parse_weights("colour=1")
    Traceback (most recent call last):
    ...
    ValueError: personalise_weights: unknown feature 'colour' (known: vector, category, brand, item, price)
    """
    out = dict(DEFAULT_WEIGHTS)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        name = name.strip()
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


def script_params(profile: dict, fused: dict[str, float], max_boost: float, weights: dict | None = None) -> dict:
    """Params of the stored script for one shopper and one candidate list (pure).

    >>> p = script_params({"categories": {"Shoes": 1.0}}, {"a": 0.5}, 0.3)
    >>> p["categories"], p["max_boost"]
    ({'shoes': 1.0}, 0.3)
    """
    w = {**DEFAULT_WEIGHTS, **(weights or {})}
    band = profile.get("price_band")
    return {
        "fused": {str(k): float(v) for k, v in fused.items()},
        "vector": [float(x) for x in profile["vector"]] if profile.get("vector") else None,
        "categories": {facet_key(k): float(v) for k, v in (profile.get("categories") or {}).items()},
        "brands": {facet_key(k): float(v) for k, v in (profile.get("brands") or {}).items()},
        "items": {str(k): float(v) for k, v in (profile.get("items") or {}).items()},
        "price_band": [float(band[0]), float(band[1])] if band else None,
        "max_boost": float(max_boost),
        **{k: float(v) for k, v in w.items()},
    }


def comparable_profile(profile: dict, model_version: str | None) -> dict:
    """The profile without its vector when that vector comes from another model (not comparable).

    >>> comparable_profile({"vector": [1.0], "model_version": "a"}, "b")["vector"] is None
    True
    """
    if profile.get("model_version") and profile["model_version"] != model_version:
        return {**profile, "vector": None}
    return profile


def personal_request(params: dict, ids: list[str]) -> tuple[dict, dict]:
    """The ``script_score`` request over the fused candidates, and the same request as ``explain``
    shows it (the candidate scores elided)."""
    script = {"id": SCRIPT_ID, "params": params}
    body = {"size": len(ids), "_source": False,
            "query": {"script_score": {"query": {"ids": {"values": ids}}, "script": script}}}
    shown = {**body, "query": {"script_score": {**body["query"]["script_score"], "script": {
        "id": SCRIPT_ID, "params": {**params, "fused": f"<{len(params['fused'])} candidates>"}}}}}
    return body, shown


def apply_personal_scores(ranked: list[tuple[str, float]], final: dict[str, float]):
    """``(ranking, boosts)``: the candidates re-ordered by the script's scores (a candidate the script
    did not score keeps its own), and each candidate's boost.

    >>> apply_personal_scores([("a", 0.5), ("b", 0.4)], {"b": 0.7})
    ([('b', 0.7), ('a', 0.5)], {'a': 0.0, 'b': 0.3})
    """
    boosts = {d: round(final.get(d, s) - s, 6) for d, s in ranked}
    reranked = sorted(((d, final.get(d, s)) for d, s in ranked), key=lambda kv: (-kv[1], kv[0]))
    return reranked, boosts
