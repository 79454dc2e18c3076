"""Shopper query building: the OpenSearch request bodies of one search, pure functions on plain data.

BM25 (:func:`bm25_body`) and k-NN (:func:`knn_body`) run over the same filters (the shopper's
explicit ones, :func:`request_filters`, and those query understanding found); a browse query
also asks for its category's most popular products (:func:`popular_body`), a known shopper for
their own products that answer the query (:func:`personal_body`). Fusion is in ``fuse.py``.

>>> bm25_body("red shoes", 5)["query"]["bool"]["must"][0]["multi_match"]["query"]
'red shoes'
"""

from __future__ import annotations


TEXT_FIELDS = ["title^3", "title.zh^3", "brand.text^2", "description", "description.zh"]

# The text fields whose matches the learned ranker reads (``features.py``), by feature name: the
# one place to add a field (e.g. colour / material text fields) to the ranker's named matches.
FEATURE_FIELDS = {"title": "title", "brand": "brand.text", "description": "description"}


def feature_clauses(q: str) -> list[dict]:
    """Named queries whose matches the learned ranker reads as features (``hit.matched_queries``).

    Per field of :data:`FEATURE_FIELDS` a ``match``; on the title also all terms, the phrase,
    the terms within three positions (proximity) and a fuzzy match (typos, ``brakets``).

    >>> [c[next(iter(c))][next(iter(c[next(iter(c))]))]["_name"] for c in feature_clauses("2x6 bracket")][:3]
    ['title', 'brand', 'description']
    """
    out = [{"match": {field: {"query": q, "_name": name}}} for name, field in FEATURE_FIELDS.items()]
    title = FEATURE_FIELDS["title"]
    out += [{"match": {title: {"query": q, "operator": "and", "_name": "title_all"}}},
            {"match_phrase": {title: {"query": q, "_name": "title_phrase"}}},
            {"match_phrase": {title: {"query": q, "slop": 3, "_name": "title_near"}}},
            {"match": {title: {"query": q, "fuzziness": "AUTO", "operator": "and", "_name": "title_fuzzy"}}}]
    return out


def bm25_body(q: str, size: int, filters: list[dict] | None = None, boosts: list[dict] | None = None,
              named: bool = False) -> dict:
    """A BM25 ``multi_match`` over the English and Chinese text fields; ``boosts`` are optional should clauses.

    ``named``: the :func:`feature_clauses` ride along in filter context beside ``match_all``, so
    they neither filter nor change a score; each hit then lists the ones it matches. (OpenSearch
    2.19's ``_msearch`` does not return named queries' scores, only their names: issue #19102.)
    """
    must = {"multi_match": {"query": q, "fields": TEXT_FIELDS, "type": "best_fields"}}
    query: dict = {"must": [must], "filter": list(filters or [])}
    if named:
        query["filter"].append({"bool": {"should": feature_clauses(q) + [{"match_all": {}}]}})
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
