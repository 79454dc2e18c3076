"""Field weights of the shopper BM25 query, tuned on judgments (``shopsearch eval fields``).

Each query's per-field BM25 scores are fetched once (:func:`field_scores`: every field's own top
``depth``, then each candidate's score on every field, through named queries), with the k-NN
list of the shopper search's own retrieval; then every weight setting of the grid is scored
offline (:func:`hybrid_ranking`): the ``best_fields`` score ``max_f(w_f·s_f) + tie·(sum − max)``
plus the understood facet boosts, min-max fused with k-NN and the popularity boost added, as
the ``hybrid`` pipeline does. With ``tie = 0`` the offline BM25 list equals the one OpenSearch
would return (a document in the weighted top ``depth`` is in the top ``depth`` of its best field);
with a tie breaker it is a close approximation. The weights chosen are checked with a real
``eval search`` on other queries.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from shopsearch.evaluation.metrics import ndcg_at_k
from shopsearch.query.fuse import add_popularity, rank


@dataclass
class QueryScores:
    """One query's candidates: per-field BM25 scores, facet-boost scores, k-NN list, popularity."""
    fields: dict[str, dict[str, float]]      # doc -> {field: BM25 score}
    boosts: dict[str, float]                 # doc -> summed facet boost
    knn: list[tuple[str, float]]
    popularity: dict[str, dict]              # doc -> {"popularity_norm": x}


def field_weights(fields: Sequence[str]) -> dict[str, float]:
    """``{"title": 3.0, ...}`` from ``multi_match`` fields.

    >>> field_weights(["title^3", "colour.text"])
    {'title': 3.0, 'colour.text': 1.0}
    """
    return {f.partition("^")[0]: float(f.partition("^")[2] or 1.0) for f in fields}


def field_scores(client, index: str, text: str, names: Sequence[str], filters: list[dict], boosts: list[dict],
                 depth: int) -> tuple[dict[str, dict[str, float]], dict[str, float], dict[str, dict]]:
    """Per-field BM25 scores of every document in any field's top ``depth`` (two requests)."""
    lines = []
    for name in names:
        lines += [{"index": index}, {"size": depth, "_source": False,
                                     "query": {"bool": {"must": [{"match": {name: text}}], "filter": filters}}}]
    pool = sorted({h["_id"] for r in client.msearch(body=lines)["responses"] for h in r.get("hits", {}).get("hits", [])})
    if not pool:
        return {}, {}, {}
    should = [{"match": {name: {"query": text, "_name": name}}} for name in names]
    should += [{"constant_score": {**b["constant_score"], "_name": f"boost:{i}"}} for i, b in enumerate(boosts)]
    # popularity from doc values: a document's _source holds its vectors, slow to load and parse
    body = {"size": len(pool), "_source": False, "docvalue_fields": ["popularity_norm"],
            "query": {"bool": {"filter": [{"ids": {"values": pool}}] + filters, "should": should}}}
    hits = client.search(index=index, body=body, params={"include_named_queries_score": "true"})["hits"]["hits"]
    per_field, boost, sources = {}, {}, {}
    for h in hits:
        matched = h.get("matched_queries") or {}
        per_field[h["_id"]] = {n: float(matched[n]) for n in names if n in matched}
        boost[h["_id"]] = sum(float(v) for k, v in matched.items() if k.startswith("boost:"))
        popularity = (h.get("fields") or {}).get("popularity_norm") or [0.0]
        sources[h["_id"]] = {"popularity_norm": popularity[0]}
    return per_field, boost, sources


def fields_with_data(client, index: str, names: Sequence[str]) -> list[str]:
    """The fields some document of the index has (the others score nothing and need no request)."""
    return [n for n in names if client.count(index=index, body={"query": {"exists": {"field": n}}})["count"] > 0]


def bm25_ranking(scores: QueryScores, weights: Mapping[str, float], tie: float, depth: int) -> list[tuple[str, float]]:
    """The ``best_fields`` BM25 list under ``weights`` (documents matching no weighted field left out).

    >>> s = QueryScores({"a": {"title": 2.0}, "b": {"title": 1.0, "colour.text": 3.0}}, {}, [], {})
    >>> bm25_ranking(s, {"title": 3.0, "colour.text": 0.5}, 0.0, 10)
    [('a', 6.0), ('b', 3.0)]
    >>> bm25_ranking(s, {"title": 3.0, "colour.text": 0.5}, 1.0, 10)
    [('a', 6.0), ('b', 4.5)]
    """
    out = []
    for d, per in scores.fields.items():
        weighted = [weights.get(f, 0.0) * v for f, v in per.items() if weights.get(f, 0.0) > 0]
        if not weighted:
            continue
        best = max(weighted)
        out.append((d, best + tie * (sum(weighted) - best) + scores.boosts.get(d, 0.0)))
    out.sort(key=lambda kv: (-kv[1], kv[0]))
    return out[:depth]


def hybrid_ranking(scores: QueryScores, weights: Mapping[str, float], tie: float, depth: int, vector_weight: float,
                   popularity_weight: float) -> list[str]:
    """The ``hybrid`` ranking under ``weights``: min-max fusion, depth cut, popularity boost."""
    fused = rank("minmax", bm25_ranking(scores, weights, tie, depth), scores.knn, vector_weight)[:depth]
    return [d for d, _ in add_popularity(fused, scores.popularity, popularity_weight)]


def grid(base: Mapping[str, float], tuned: Sequence[str], values: Sequence[float],
         ties: Sequence[float]) -> list[tuple[dict[str, float], float]]:
    """Every (weights, tie breaker): ``base`` weights with each ``tuned`` field set to each of ``values``.

    >>> [(w["colour.text"], t) for w, t in grid({"title": 3.0}, ["colour.text"], [0, 1], [0.0])]
    [(0, 0.0), (1, 0.0)]
    """
    out = []
    for combo in itertools.product(values, repeat=len(tuned)):
        for tie in ties:
            out.append(({**base, **dict(zip(tuned, combo))}, tie))
    return out


def mean_ndcg(per_query: Mapping[str, QueryScores], judged: Mapping[str, Mapping[str, float]],
              rank_one: Callable[[QueryScores], list[str]]) -> float:
    """Mean nDCG@10 of a ranking function over the queries (unscorable queries left out)."""
    values = [v for q, s in per_query.items() if (v := ndcg_at_k(rank_one(s), judged[q], 10)) is not None]
    return sum(values) / max(len(values), 1)


def spec(weights: Mapping[str, float]) -> str:
    """The ``text_fields`` setting for ``weights`` (weight 1 unwritten, weight 0 dropped).

    >>> spec({"title": 3.0, "colour.text": 1.0, "material.text": 0.0, "gender.text": 0.5})
    'title^3,colour.text,gender.text^0.5'
    """
    parts = []
    for f, w in weights.items():
        if w > 0:
            parts.append(f if w == 1 else f"{f}^{w:g}")
    return ",".join(parts)

