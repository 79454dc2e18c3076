"""Shopper query building: the OpenSearch request bodies of one search, pure functions on plain data.

BM25 (:func:`bm25_body`) and k-NN (:func:`knn_body`) run over the same filters (the shopper's
explicit ones, :func:`request_filters`, and those query understanding found); a browse query
also asks for its category's most popular products (:func:`popular_body`), a known shopper for
their own products that answer the query (:func:`personal_body`). Fusion is in ``fuse.py``.

>>> bm25_body("red shoes", 5)["query"]["bool"]["must"][0]["multi_match"]["query"]
'red shoes'
"""

from __future__ import annotations

from shopsearch.errors import SettingsError
from shopsearch.settings import default


def parse_text_fields(spec: str) -> tuple[str, ...]:
    """The ``text_fields`` setting as ``multi_match`` fields: ``field^weight``, weight-0 fields dropped.

    >>> parse_text_fields("title^3, colour.text^0.5 ,material.text^0,description")
    ('title^3', 'colour.text^0.5', 'description')
    """
    out = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, weight = part.partition("^")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise SettingsError(f"text_fields: {part!r} is not field^weight", field="text_fields") from None
        if w < 0 or not name:
            raise SettingsError(f"text_fields: {part!r} needs a field name and a weight >= 0", field="text_fields")
        if w > 0:
            out.append(part)
    if not out:
        raise SettingsError("text_fields names no field with a weight above 0", field="text_fields")
    return tuple(out)


def field_names(fields: tuple[str, ...]) -> list[str]:
    """The field names of ``multi_match`` fields, without weights (per-field features read them).

    >>> field_names(("title^3", "colour.text"))
    ['title', 'colour.text']
    """
    return [f.partition("^")[0] for f in fields]


# The shopper query's text fields and weights: the default of the ``text_fields`` setting (one list).
TEXT_FIELDS = parse_text_fields(default("text_fields"))


def text_match(q: str, fields: tuple[str, ...] = TEXT_FIELDS, tie_breaker: float = 0.0) -> dict:
    """The ``multi_match`` of the shopper's text over ``fields`` (best field, plus ``tie_breaker`` × the others)."""
    match = {"query": q, "fields": list(fields), "type": "best_fields"}
    if tie_breaker:
        match["tie_breaker"] = tie_breaker
    return {"multi_match": match}


def fuzzy_words(q: str, min_length: int = 4) -> str:
    """The words of a query that fuzzy matching may bend: letters only, ``min_length`` or longer.

    Sizes and model numbers ("2x6", "20v", "dw0240") are one edit from other sizes and models.

    >>> fuzzy_words("2x6 metal brakets 20v")
    'metal brakets'
    """
    return " ".join(w for w in q.split() if w.isalpha() and len(w) >= min_length)


def bm25_body(q: str, size: int, filters: list[dict] | None = None, boosts: list[dict] | None = None,
              fields: tuple[str, ...] = TEXT_FIELDS, tie_breaker: float = 0.0, fuzzy: dict | None = None) -> dict:
    """A BM25 ``multi_match`` over the text fields; ``boosts`` are optional should clauses.

    ``fuzzy`` (``{"prefix_length": 1, "weight": 0.5}``) adds a fuzzy ``multi_match`` of the query's
    words (:func:`fuzzy_words`) beside the exact one, either sufficing, so a misspelt word still
    finds its products while exact matches keep the higher score.
    """
    must = text_match(q, fields, tie_breaker)
    bent = fuzzy_words(q) if fuzzy else ""
    if bent:
        loose = text_match(bent, fields, tie_breaker)
        loose["multi_match"].update(fuzziness="AUTO", prefix_length=fuzzy.get("prefix_length", 1),
                                    boost=fuzzy.get("weight", 0.5))
        must = {"bool": {"should": [must, loose], "minimum_should_match": 1}}
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


def category_clause(category: str) -> dict:
    """Products whose leaf category or any level of whose category path is ``category``."""
    return {"bool": {"should": [{"term": {"category": category}}, {"term": {"category_path": category}}],
                     "minimum_should_match": 1}}


def popular_body(size: int, filters: list[dict]) -> dict:
    """The most popular products passing ``filters`` (a browse query's candidates), id as tie-break."""
    return {"size": size, "_source": {"excludes": ["*_vector"]}, "query": {"bool": {"filter": filters}},
            "sort": [{"popularity_norm": {"order": "desc", "missing": "_last"}}, {"id": "asc"}]}


def personal_body(q: str, ids: list[str], filters: list[dict], text_must: bool = True,
                  fields: tuple[str, ...] = TEXT_FIELDS) -> dict:
    """The shopper's own products (from the profile) that answer the query: same text match and filters.

    Retrieval alone would miss a shopper's usual product when a hundred others score higher;
    asking for it by id, still under the query, brings it into the candidates to be boosted.
    """
    query: dict = {"filter": list(filters) + [{"ids": {"values": ids}}]}
    if text_must:
        query["must"] = [text_match(q, fields)]
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
