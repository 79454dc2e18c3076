"""The personalisation boost computed in Python gives the scores the stored Painless script gave.

Until issue #13 the boost was a second request: ``script_score`` with the script now kept in
``tests/fixtures/personalise-v2.painless``. The search now computes it in Python from the profile
and the candidates' fields its one ``_msearch`` brings back. Here both run on the same real
products (Myntra rows with brands, categories and prices) in the project's own OpenSearch: the
script inline, the Python over the ``_source`` the search fetches (``build.source_filter``).
The script's profile-vector term is given no vector (the term is gone; see personalise.py).
"""

from __future__ import annotations

import json
import random

import pytest

from shopsearch.index.mapping import products_body
from shopsearch.query.build import source_filter
from shopsearch.query.personalise import DEFAULT_WEIGHTS, facet_key, personalise

from .conftest import DATA, ROOT

SCRIPT = (ROOT / "tests" / "fixtures" / "personalise-v2.painless").read_text(encoding="utf-8")


def rich_rows(limit: int = 100) -> list[dict]:
    with open(DATA / "fashion" / "rich_products.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f][:limit]


@pytest.fixture(scope="module")
def products(client, settings):
    """100 real products as documents: id, title, brand, category (article type), price_norm."""
    index = "test_personalise_boost"
    client.indices.delete(index=index, ignore_unavailable=True)
    client.indices.create(index=index, body=products_body(8, {}, 1, 0))
    rows = rich_rows()
    top = max(r["discountedPrice"] for r in rows)
    docs = {str(r["id"]): {"id": str(r["id"]), "title": r["productDisplayName"], "brand": r["brandName"],
                           "category": r["articleType"], "price": float(r["discountedPrice"]),
                           "price_norm": round(r["discountedPrice"] / top, 6)} for r in rows}
    for d, doc in docs.items():
        client.index(index=index, id=d, body=doc)
    client.indices.refresh(index=index)
    yield index, docs
    client.indices.delete(index=index, ignore_unavailable=True)


def old_script_params(profile: dict, fused: dict, max_boost: float, weights: dict) -> dict:
    """The params the search used to send with the stored script (``script_params`` before #13)."""
    band = profile.get("price_band")
    return {"fused": fused, "vector": None,
            "categories": {facet_key(k): v for k, v in profile.get("categories", {}).items()},
            "brands": {facet_key(k): v for k, v in profile.get("brands", {}).items()},
            "items": dict(profile.get("items", {})), "price_band": list(band) if band else None,
            "max_boost": max_boost, "w_vector": 0.0, **weights}


def a_shopper(docs: dict, seed: int) -> dict:
    """A profile over real categories, brands and products of the catalogue, as the builders shape it."""
    rng = random.Random(seed)
    picks = rng.sample(sorted(docs), 12)
    return {"categories": {docs[d]["category"]: round(rng.uniform(0.2, 1.0), 4) for d in picks[:4]},
            "brands": {docs[d]["brand"].upper(): round(rng.uniform(0.2, 1.0), 4) for d in picks[4:8]},
            "items": {d: round(rng.uniform(0.3, 1.0), 4) for d in picks[8:]},
            "price_band": [0.1, 0.35]}


@pytest.mark.parametrize("seed,max_boost", [(1, 2.0), (2, 0.5), (3, 0.15)])
def test_the_python_boost_gives_the_scores_and_order_of_the_painless_script(client, settings, products, seed, max_boost):
    index, docs = products
    profile = a_shopper(docs, seed)
    rng = random.Random(seed)
    fused = {d: round(rng.random(), 6) for d in docs}
    ranked = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
    body = {"size": len(fused), "_source": source_filter(settings.response_fields),
            "query": {"script_score": {"query": {"ids": {"values": list(fused)}},
                                       "script": {"source": SCRIPT, "lang": "painless",
                                                  "params": old_script_params(profile, fused, max_boost, DEFAULT_WEIGHTS)}}}}
    hits = client.search(index=index, body=body)["hits"]["hits"]
    by_script = {h["_id"]: h["_score"] for h in hits}
    sources = {h["_id"]: h["_source"] for h in hits}

    reranked, boosts = personalise(ranked, sources, profile, max_boost, DEFAULT_WEIGHTS)

    assert sum(b > 0 for b in boosts.values()) >= 8  # categories, brands (other case), items and prices all count
    assert dict(reranked) == pytest.approx(by_script, abs=1e-5)  # the script's scores are float32
    assert [d for d, _ in reranked] == [d for d, _ in sorted(by_script.items(), key=lambda kv: (-kv[1], kv[0]))]


def test_the_fields_the_boost_reads_are_fetched_and_vectors_never(settings):
    fetched = source_filter(settings.response_fields)
    assert {"id", "category", "brand", "price_norm"} <= set(fetched["includes"])
    assert fetched["excludes"] == ["*_vector", "vector_copy"] and not any(f.endswith("_vector") for f in fetched["includes"])
