"""Suggestions as a shopper types: the queries other shoppers searched most, then catalogue titles
(pure: request bodies and their reading; the storefront sends them).

Logged queries come from ``ubi_queries`` (``user_query``), only those that found something and
were searched at least :data:`MIN_SEARCHES` times, so one shopper's odd query (a name, an
address) is never shown to the next; most frequent first. Titles are the catalogue's own
(``title`` and ``title.zh`` phrase-prefix matches), the most common title first, then the best
match. Both lists are merged without repeats (case-insensitive), queries first.

>>> merge_suggestions([{"text": "black shoes", "count": 5}], [{"text": "Black Shoes", "count": 1},
...                    {"text": "Black Shoes Men", "count": 1}], 5)
[{'text': 'black shoes', 'kind': 'query', 'count': 5}, {'text': 'Black Shoes Men', 'kind': 'title', 'count': 1}]
"""

from __future__ import annotations

MIN_SEARCHES = 2   # a logged query is suggested once shoppers searched it this often
MAX_PREFIX = 100   # characters of typed text looked at


def query_suggestion_body(catalogue: str, prefix: str, size: int, min_searches: int = MIN_SEARCHES) -> dict:
    """Logged queries of ``catalogue`` that start with the typed words (the last one a prefix), by count."""
    return {"size": 0, "query": {"bool": {"filter": [
        {"term": {"catalogue": catalogue}}, {"exists": {"field": "query_response_hit_ids"}},
        {"match_phrase_prefix": {"user_query.text": {"query": prefix[:MAX_PREFIX]}}}]}},
        "aggs": {"queries": {"terms": {"field": "user_query", "size": size, "min_doc_count": min_searches}}}}


def title_suggestion_body(prefix: str, size: int) -> dict:
    """Catalogue titles matching the typed words (English and Chinese analysis), most common title first."""
    text = prefix[:MAX_PREFIX]
    return {"size": 0, "query": {"bool": {"should": [
        {"match_phrase_prefix": {"title": {"query": text}}},
        {"match_phrase_prefix": {"title.zh": {"query": text}}}], "minimum_should_match": 1}},
        "aggs": {"titles": {"terms": {"field": "title.raw", "size": size,
                                      "order": [{"_count": "desc"}, {"best": "desc"}]},
                            "aggs": {"best": {"max": {"script": {"source": "_score"}}}}}}}


def read_buckets(response: dict, name: str) -> list[dict]:
    """``[{"text", "count"}]`` from a terms aggregation of the answer."""
    return [{"text": b["key"], "count": b["doc_count"]}
            for b in (response.get("aggregations") or {}).get(name, {}).get("buckets", [])]


def merge_suggestions(queries: list[dict], titles: list[dict], size: int) -> list[dict]:
    """Logged queries first, then titles, each text once (case-insensitive), at most ``size``."""
    out, seen = [], set()
    for kind, items in (("query", queries), ("title", titles)):
        for item in items:
            key = " ".join(item["text"].lower().split())
            if key and key not in seen:
                seen.add(key)
                out.append({"text": item["text"], "kind": kind, "count": item["count"]})
    return out[:size]
