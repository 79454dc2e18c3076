"""Respond: the ranked candidates become the shopper's page, with an ``explain`` part when asked.

Pure functions. A hit shows the fields of ``response_fields`` (:func:`shown_fields`), never a
vector; with ``explain`` it also shows every field ranking read. A query that spelling correction
changed says so: ``did_you_mean`` is the text searched instead (and ``filters_applied`` names each
word changed). ``explain`` shows, per hit, the retrieval scores (``bm25``, ``vector``), the
fused score before personalisation (``fused``), the personal ``boost`` and the cross-encoder
score (``rerank``, strategy ``hybrid-rerank``); for the whole answer the requests sent (vectors
elided), the pipeline that answered, and every ranking feature of every hit
(``hooks.ranking_features``), keyed by hit id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shopsearch import hooks
from shopsearch.index.vectors import is_vector_field


@dataclass
class Answer:
    """What a pipeline leaves for the response: the ranking and how it came about."""
    ranked: list = field(default_factory=list)
    sources: dict = field(default_factory=dict)
    components: dict = field(default_factory=dict)   # bm25, vector, rerank, boost: id -> score
    bodies: list = field(default_factory=list)       # the requests sent, for explain
    degraded: str | None = None
    applied: list = field(default_factory=list)      # notes of query understanding
    did_you_mean: str | None = None                  # the corrected query searched instead of the shopper's


def candidate(d: str, score: float, answer: Answer) -> dict:
    """One candidate as ranking features read it: its id, scores and source fields.

    >>> candidate("a", 0.5, Answer(components={"bm25": {"a": 3.0}}, sources={"a": {"popularity_norm": 0.2}}))
    {'id': 'a', 'score': 0.5, 'bm25': 3.0, 'vector': None, 'source': {'popularity_norm': 0.2}}
    """
    c = answer.components
    return {"id": d, "score": score, "bm25": c.get("bm25", {}).get(d), "vector": c.get("vector", {}).get(d),
            "source": answer.sources.get(d, {})}


def features(d: str, score: float, answer: Answer) -> dict[str, Any]:
    """Every registered ranking feature of one candidate (None where it does not apply)."""
    c = candidate(d, score, answer)
    return {name: feature(c) for name, feature in hooks.ranking_features()}


def hit_explain(d: str, score: float, components: dict) -> dict:
    """A hit's component scores: retrieval, fused, personal boost (and cross-encoder when re-ranked)."""
    boost = components.get("boost", {}).get(d, 0.0)
    out = {"bm25": components.get("bm25", {}).get(d), "vector": components.get("vector", {}).get(d),
           "fused": round(float(score) - boost, 6), "boost": boost}
    for part in ("rerank", "learned"):  # the cross-encoder score; the ranker's score, features, contributions
        if part in components:
            out[part] = components[part].get(d)
    return out


def shown_fields(response_fields: str | None) -> frozenset[str] | None:
    """The fields a hit shows, from the ``response_fields`` setting (None: every non-vector field).

    >>> sorted(shown_fields("title, price,fused_vector"))
    ['price', 'title']
    """
    if response_fields is None:
        return None
    return frozenset(f.strip() for f in response_fields.split(",") if f.strip() and not is_vector_field(f.strip()))


def hit_fields(source: dict, shown: frozenset[str] | None) -> dict:
    """A candidate's fields as its hit shows them: the ``shown`` ones (None: all), never a vector.

    >>> hit_fields({"title": "T", "price_norm": 0.2, "text_vector": [0.1]}, frozenset({"title"}))
    {'title': 'T'}
    """
    return {k: v for k, v in source.items()
            if not is_vector_field(k) and (shown is None or k in shown)}


def respond(live, req, answer: Answer, pipeline: str, shown: frozenset[str] | None = None) -> dict:
    """The response body of one search: ``live`` the index answered, ``req`` the shopper's request,
    ``shown`` the fields each hit shows (:func:`shown_fields`; ``explain`` shows all it has)."""
    page = answer.ranked[req.page * req.size:(req.page + 1) * req.size]
    hits = []
    for d, score in page:
        hit = {"id": d, "score": round(float(score), 6),
               **hit_fields(answer.sources.get(d, {}), None if req.explain else shown)}
        if req.explain:
            hit["explain"] = hit_explain(d, score, answer.components)
        hits.append(hit)
    out = {"catalogue": live.meta.get("catalogue"), "index": live.index, "model_version": live.meta.get("model_version"),
           "q": req.q, "strategy": req.strategy, "total": len(answer.ranked), "page": req.page, "size": req.size,
           "hits": hits, "degraded": answer.degraded is not None, "filters_applied": answer.applied}
    if answer.did_you_mean is not None:
        out["did_you_mean"] = answer.did_you_mean
    if answer.degraded:
        out["reason"] = answer.degraded
    if req.explain:
        out["explain"] = {"requests": [_shorten(b) for b in answer.bodies], "pipeline": pipeline,
                          "features": {d: features(d, score, answer) for d, score in page}}
    return out


def _shorten(body):
    """A request for ``explain``, with every vector elided (k-NN query vectors, profile vectors).

    >>> _shorten({"knn": {"vector": [0.0] * 9, "k": 5}})
    {'knn': {'vector': '<9 floats>', 'k': 5}}
    """
    if isinstance(body, dict):
        return {k: (f"<{len(v)} floats>" if k == "vector" and isinstance(v, list) and len(v) > 8 else _shorten(v))
                for k, v in body.items()}
    if isinstance(body, list):
        return [_shorten(v) for v in body]
    return body
