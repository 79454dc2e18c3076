"""Shopper query building: the OpenSearch request bodies of one search, pure functions on plain data.

BM25 (:func:`bm25_body`) and k-NN (:func:`knn_body`) run over the same filters (the shopper's
explicit ones, :func:`request_filters`, and those query understanding found); a browse query
also asks for its category's most popular products (:func:`popular_body`), a known shopper for
their profile (:func:`profile_body`) and their own products that answer the query
(:func:`personal_lookup_body`: a terms lookup on the profile, so neither needs the profile first
and a personalised search stays one ``_msearch``). Fusion is in ``fuse.py``.

Every body fetches only what the result list shows plus what ranking needs, never a vector: from
doc values where the index keeps each of those fields exactly (:func:`fetch_for`, ``index/fetch.py``:
a hit's stored fields cost more to read than the search that found it), else from ``_source``
(:func:`source_filter`).

>>> bm25_body("red shoes", 5)["query"]["bool"]["must"][0]["multi_match"]["query"]
'red shoes'
"""

from __future__ import annotations

from shopsearch.errors import SettingsError
from shopsearch.index.fetch import Fetch, plan_fetch, source_fetch
from shopsearch.index.vectors import SOURCE_WITHOUT_VECTORS, is_vector_field
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


NO_VECTORS = SOURCE_WITHOUT_VECTORS  # the k-NN fields and their compact copy (index/vectors.py)
# what ranking reads from a candidate beyond what the page shows: the personal boost (category,
# brand, price_norm), the popularity boost and browse blend, and the re-ranker's item text
# and the learned ranker's features (``features.py``: price band, colour / material words, rating)
RANKING_FIELDS = ("id", "title", "brand", "category", "category_path", "price", "price_norm", "popularity_norm",
                  "rating_norm", "colour", "material")
# what the search does not read of a profile: its vector (no boost term uses it since #13) and the
# builder's sufficient statistics (vector sum, price samples)
PROFILE_EXCLUDES = ["vector", "stats.vector_sum", "stats.prices"]
PROFILE_ITEMS_FIELD = "item_ids"  # the profile's products, strongest first: the path of the terms lookup
PERSONAL_SIZE = 500               # at most this many of them (the profile keeps 500)
# candidate requests do not count their matches (an answer's total is its ranked candidates):
# the same hits and scores on 300 Home Depot queries, a hybrid _msearch 2 % cheaper
NO_TOTAL = {"track_total_hits": False}

def source_filter(response_fields: str | list[str] | None) -> dict:
    """``_source`` of every sub-request: the fields a result list shows plus what ranking needs, never vectors.

    >>> source_filter("title,price")["includes"]
    ['brand', 'category', 'category_path', 'colour', 'id', 'material', 'popularity_norm', 'price', 'price_norm', 'rating_norm', 'title']
    >>> source_filter(None)
    {'excludes': ['*_vector', 'vector_copy']}
    """
    if response_fields is None:
        return {"excludes": list(NO_VECTORS["excludes"])}
    return {"includes": sorted(set(shown_names(response_fields)) | set(RANKING_FIELDS)),
            "excludes": list(NO_VECTORS["excludes"])}


def hit_fields(fetch: dict | None = None) -> dict:
    """The part of a candidate request that says what each hit brings: ``fetch`` (an
    ``index.fetch.Fetch.body``: doc values, or a ``_source`` filter), default every field but the vectors.

    >>> hit_fields()
    {'_source': {'excludes': ['*_vector', 'vector_copy']}}
    >>> hit_fields({"_source": False, "stored_fields": "_none_", "docvalue_fields": ["id"]})["stored_fields"]
    '_none_'
    """
    return dict(fetch) if fetch is not None else {"_source": NO_VECTORS}


def fetch_for(properties: dict, response_fields: str | None) -> Fetch:
    """How the candidates of an index with mapping ``properties`` bring what the result list shows
    plus what ranking reads: doc values when all of them have an exact column, else ``_source``
    (``index/fetch.py``; ``response_fields`` None: every field, from ``_source``).

    >>> props = {n: {"type": "keyword"} for n in RANKING_FIELDS}
    >>> fetch_for(props, "id,title").from_source, fetch_for({}, "id,title").from_source
    (False, True)
    """
    source = source_filter(response_fields)
    if response_fields is None:
        return source_fetch(source)
    return plan_fetch(properties, source["includes"], shown=shown_names(response_fields), source=source)


def shown_names(response_fields: str | list[str]) -> list[str]:
    """The field names of the ``response_fields`` setting, vectors left out.

    >>> shown_names("title, price,fused_vector")
    ['title', 'price']
    """
    names = response_fields.split(",") if isinstance(response_fields, str) else list(response_fields)
    return [n.strip() for n in names if n.strip() and not is_vector_field(n.strip())]


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
              fields: tuple[str, ...] = TEXT_FIELDS,
              tie_breaker: float = 0.0, fuzzy: dict | None = None, fetch: dict | None = None) -> dict:
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
    query: dict = {"must": [must], "filter": list(filters or [])}
    if boosts:
        query["should"] = boosts
    return {"size": size, **NO_TOTAL, **hit_fields(fetch), "query": {"bool": query}}


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


def knn_body(vector: list[float], size: int, k: int, filters: list[dict] | None = None, field: str = "fused_vector",
             fetch: dict | None = None) -> dict:
    """A k-NN query with the filters applied inside the k-NN search (Lucene efficient filtering)."""
    knn: dict = {"vector": vector, "k": k}
    if filters:
        knn["filter"] = {"bool": {"filter": filters}}
    return {"size": size, **NO_TOTAL, **hit_fields(fetch), "query": {"knn": {field: knn}}}


def category_clause(category: str) -> dict:
    """Products whose leaf category or any level of whose category path is ``category``."""
    return {"bool": {"should": [{"term": {"category": category}}, {"term": {"category_path": category}}],
                     "minimum_should_match": 1}}


def popular_body(size: int, filters: list[dict], fetch: dict | None = None) -> dict:
    """The most popular products passing ``filters`` (a browse query's candidates), id as tie-break."""
    return {"size": size, **NO_TOTAL, **hit_fields(fetch), "query": {"bool": {"filter": filters}},
            "sort": [{"popularity_norm": {"order": "desc", "missing": "_last"}}, {"id": "asc"}]}


def personal_body(q: str, ids: list[str], filters: list[dict], text_must: bool = True,
                  fields: tuple[str, ...] = TEXT_FIELDS, fetch: dict | None = None) -> dict:
    """The shopper's own products ``ids`` that answer the query: same text match and filters.

    Retrieval alone would miss a shopper's usual product when a hundred others score higher;
    asking for it by id, still under the query, brings it into the candidates to be boosted.
    (A profile stored before ``item_ids`` existed is asked this way, a second request; see
    :func:`personal_lookup_body` for the one-request form.)
    """
    return _personal(q, {"ids": {"values": ids}}, len(ids), filters, text_must, hit_fields(fetch), fields)


def personal_lookup_body(q: str, profiles_index: str, profile_doc: str, filters: list[dict], text_must: bool = True,
                         fields: tuple[str, ...] = TEXT_FIELDS, fetch: dict | None = None) -> dict:
    """:func:`personal_body` without knowing the profile: the ids come from a terms lookup on the
    profile document's ``item_ids`` (no profile, or none there: no hits).

    >>> personal_lookup_body("tea", "profiles", "shop:u1", [])["query"]["bool"]["filter"][0]
    {'terms': {'_id': {'index': 'profiles', 'id': 'shop:u1', 'path': 'item_ids'}}}
    """
    lookup = {"terms": {"_id": {"index": profiles_index, "id": profile_doc, "path": PROFILE_ITEMS_FIELD}}}
    return _personal(q, lookup, PERSONAL_SIZE, filters, text_must, hit_fields(fetch), fields)


def _personal(q: str, which: dict, size: int, filters: list[dict], text_must: bool, fetched: dict,
              fields: tuple[str, ...] = TEXT_FIELDS) -> dict:
    query: dict = {"filter": list(filters) + [which]}
    if text_must:
        query["must"] = [text_match(q, fields)]
    return {"size": size, **NO_TOTAL, **fetched, "query": {"bool": query}}


def profile_body(profile_doc: str) -> dict:
    """The shopper's profile document (by id, in the profiles index), read inside the search's ``_msearch``.

    >>> profile_body("shop:u1")["query"]
    {'ids': {'values': ['shop:u1']}}
    """
    return {"size": 1, "_source": {"excludes": PROFILE_EXCLUDES}, "query": {"ids": {"values": [profile_doc]}}}


def plain_bm25_body(q: str, size: int, source: dict | None = None) -> dict:
    """The baseline a shop runs without shopsearch: one ``multi_match`` over the text fields."""
    return {"size": size, "_source": source or NO_VECTORS,
            "query": {"multi_match": {"query": q, "fields": ["title", "title.zh", "description", "description.zh"]}}}


def request_filters(price_min: float | None = None, price_max: float | None = None, category: str | None = None,
                    brand: str | None = None, colour: str | None = None, in_stock: bool | None = None,
                    gender: str | None = None) -> list[dict]:
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
    if gender:
        out.append({"term": {"gender": gender}})
    return out
