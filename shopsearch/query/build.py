"""Shopper query building and fusion: pure functions on plain data.

A shopper search runs two retrievals over the same filters, BM25 and k-NN, then fuses them by
min-max normalising each list's scores and mixing them with the vector weight ``w``::

    fused(d) = (1 - w) * minmax(bm25)(d) + w * minmax(knn)(d)      (missing from a list: 0)

>>> fuse_minmax({"a": 10.0, "b": 5.0}, {"b": 0.9, "c": 0.7}, 0.5)
[('a', 0.5), ('b', 0.5), ('c', 0.0)]
"""

from __future__ import annotations

TEXT_FIELDS = ["title^3", "title.zh^3", "brand.text^2", "description", "description.zh"]


def bm25_body(q: str, size: int, filters: list[dict] | None = None, boosts: list[dict] | None = None) -> dict:
    """A BM25 ``multi_match`` over the English and Chinese text fields; ``boosts`` are optional should clauses."""
    must = {"multi_match": {"query": q, "fields": TEXT_FIELDS, "type": "best_fields"}}
    query: dict = {"must": [must], "filter": filters or []}
    if boosts:
        query["should"] = boosts
    return {"size": size, "_source": {"excludes": ["*_vector"]}, "query": {"bool": query}}


def split_understood_filters(clauses: list[dict], mode: str) -> tuple[list[dict], list[dict]]:
    """``(filters, boosts)`` from the clauses query understanding found, by the ``query_filters`` mode.

    ``boost``: facet terms (colour, brand, gender) only lift matching items, because catalogues'
    facet data is often sparse (a product with no colour is not a wrong answer to "white door");
    a price named in the query still filters. ``filter``: every clause filters. ``off``: none.

    >>> split_understood_filters([{"term": {"colour": "Black"}}, {"range": {"price": {"lte": 50}}}], "boost")
    ([{'range': {'price': {'lte': 50}}}], [{'constant_score': {'filter': {'term': {'colour': 'Black'}}, 'boost': 1.0}}])
    """
    if mode == "off":
        return [], []
    if mode == "filter":
        return list(clauses), []
    filters = [c for c in clauses if "range" in c]
    boosts = [{"constant_score": {"filter": c, "boost": 1.0}} for c in clauses if "range" not in c]
    return filters, boosts


def knn_body(vector: list[float], size: int, k: int, filters: list[dict] | None = None, field: str = "fused_vector") -> dict:
    """A k-NN query with the filters applied inside the k-NN search (Lucene efficient filtering)."""
    knn: dict = {"vector": vector, "k": k}
    if filters:
        knn["filter"] = {"bool": {"filter": filters}}
    return {"size": size, "_source": {"excludes": ["*_vector"]}, "query": {"knn": {field: knn}}}


def minmax(scores: dict[str, float]) -> dict[str, float]:
    """Scores scaled to [0, 1]; a single score (or all equal) becomes 1."""
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    return {d: (s - lo) / (hi - lo) if hi > lo else 1.0 for d, s in scores.items()}


def fuse_minmax(bm25: dict[str, float], knn: dict[str, float], vector_weight: float) -> list[tuple[str, float]]:
    """Weighted min-max fusion, best first; ties broken by id for determinism."""
    a, b = minmax(bm25), minmax(knn)
    fused = {d: (1 - vector_weight) * a.get(d, 0.0) + vector_weight * b.get(d, 0.0) for d in set(a) | set(b)}
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))


def fuse_rrf(bm25: list[str], knn: list[str], vector_weight: float = 0.5, k: int = 60) -> list[tuple[str, float]]:
    """Weighted reciprocal rank fusion of two ranked id lists, best first.

    >>> fuse_rrf(["a", "b"], ["b", "c"], 0.5, k=0)[0][0]
    'b'
    """
    scores: dict[str, float] = {}
    for weight, ranked in ((1 - vector_weight), bm25), (vector_weight, knn):
        for rank, d in enumerate(ranked, start=1):
            scores[d] = scores.get(d, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def category_clause(category: str) -> dict:
    """Products whose leaf category or any level of whose category path is ``category``."""
    return {"bool": {"should": [{"term": {"category": category}}, {"term": {"category_path": category}}],
                     "minimum_should_match": 1}}


def popular_body(size: int, filters: list[dict]) -> dict:
    """The most popular products passing ``filters`` (a browse query's candidates), id as tie-break."""
    return {"size": size, "_source": {"excludes": ["*_vector"]}, "query": {"bool": {"filter": filters}},
            "sort": [{"popularity_norm": {"order": "desc", "missing": "_last"}}, {"id": "asc"}]}


def personal_body(q: str, ids: list[str], filters: list[dict], text_must: bool = True) -> dict:
    """The shopper's own products (from the profile) that answer the query: same text match and filters.

    Retrieval alone would miss a shopper's usual product when a hundred others score higher;
    asking for it by id, still under the query, brings it into the candidates to be boosted.
    """
    query: dict = {"filter": list(filters) + [{"ids": {"values": ids}}]}
    if text_must:
        query["must"] = [{"multi_match": {"query": q, "fields": TEXT_FIELDS, "type": "best_fields"}}]
    return {"size": len(ids), "_source": {"excludes": ["*_vector"]}, "query": {"bool": query}}


def blend_browse(popularity: dict[str, float], text: list[tuple[str, float]], text_weight: float) -> list[tuple[str, float]]:
    """A browse query's ranking: ``(1 - t) * popularity_norm + t * fused text score``, best first.

    >>> blend_browse({"a": 1.0, "b": 0.2}, [("b", 1.0)], 0.1)
    [('a', 0.9), ('b', 0.28)]
    """
    fused = dict(text)
    scores = {d: (1 - text_weight) * popularity.get(d, 0.0) + text_weight * fused.get(d, 0.0)
              for d in set(popularity) | set(fused)}
    return sorted(((d, round(v, 9)) for d, v in scores.items()), key=lambda kv: (-kv[1], kv[0]))


def plain_bm25_body(q: str, size: int) -> dict:
    """The baseline a shop runs without shopsearch: one ``multi_match`` over the text fields."""
    return {"size": size, "_source": {"excludes": ["*_vector"]},
            "query": {"multi_match": {"query": q, "fields": ["title", "title.zh", "description", "description.zh"]}}}


def request_filters(price_min: float | None = None, price_max: float | None = None, category: str | None = None,
                    brand: str | None = None, colour: str | None = None, in_stock: bool | None = None) -> list[dict]:
    """OpenSearch filter clauses for the shopper's explicit filters (pure)."""
    out: list[dict] = []
    if price_min is not None or price_max is not None:
        rng = {k: v for k, v in (("gte", price_min), ("lte", price_max)) if v is not None}
        out.append({"range": {"price": rng}})
    if category:
        out.append(category_clause(category))
    if brand:
        out.append({"term": {"brand": brand}})
    if colour:
        out.append({"term": {"colour": colour}})
    if in_stock is not None:
        out.append({"term": {"in_stock": in_stock}})
    return out


def rank(method: str, bm25: list[tuple[str, float]], knn: list[tuple[str, float]], vector_weight: float,
         rrf_k: int = 60) -> list[tuple[str, float]]:
    """One ranked list from the two candidate lists: ``dense`` (k-NN alone), ``minmax`` or ``rrf``.

    Without k-NN candidates (a SKU query, or a degraded search) the BM25 list is the answer.
    """
    if not knn:
        return list(bm25)
    if method == "dense":
        return list(knn)
    if method == "rrf":
        return fuse_rrf([d for d, _ in bm25], [d for d, _ in knn], vector_weight, rrf_k)
    return fuse_minmax(dict(bm25), dict(knn), vector_weight)


def add_popularity(ranked: list[tuple[str, float]], sources: dict[str, dict], weight: float) -> list[tuple[str, float]]:
    """Fused scores plus ``weight * popularity_norm`` (missing popularity adds nothing), best first.

    >>> [(d, round(s, 2)) for d, s in add_popularity([("a", 0.5), ("b", 0.45)], {"b": {"popularity_norm": 1.0}}, 0.1)]
    [('b', 0.55), ('a', 0.5)]
    """
    popular = {d: float((sources.get(d) or {}).get("popularity_norm") or 0.0) for d, _ in ranked}
    if weight <= 0 or not any(popular.values()):
        return ranked  # nothing to add: the fused order stays exactly as it was
    scored = [(d, s + weight * popular[d]) for d, s in ranked]
    return sorted(scored, key=lambda kv: (-kv[1], kv[0]))
