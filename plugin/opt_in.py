"""Opt-in rewriting of a normal ``POST /<catalogue>/_search``: a body with ``"ext": {"shopsearch": {...}}``
is answered by the shopper search, in OpenSearch's own response shape, so an existing client adopts
shopsearch by adding one field. Everything else in such a body is only read for the query text.

``ext.shopsearch`` accepts the shopper parameters (``q``, ``user``, ``strategy``, ``vector_weight``,
filters, ``explain``); ``size`` and ``from`` come from the body as usual. Without ``q`` the text of
the body's ``match`` / ``multi_match`` / ``query_string`` / ``simple_query_string`` query is used.
"""

from __future__ import annotations

import re

from shopsearch.plugin.errors import BadRequest
from shopsearch.plugin.json_body import parse_json

_SEARCH_PATH = re.compile(r"^(?P<catalogue>[a-z0-9][a-z0-9_]*)/_search$")


def opt_in_request(method: str, path: str, raw_body: bytes) -> tuple[str, dict] | None:
    """``(catalogue, shopper args)`` when this request opts in, else None (pure).

    A body that names ``shopsearch`` is read as JSON here: malformed, too deep, or with an
    ``ext.shopsearch`` that is not an object, it is a :class:`BadRequest` naming the fault.
    """
    m = _SEARCH_PATH.match(path)
    if method != "POST" or not m or b'"shopsearch"' not in raw_body:
        return None
    body = parse_json(raw_body)
    ext = body.get("ext") if isinstance(body, dict) else None
    if not isinstance(ext, dict) or "shopsearch" not in ext:
        return None
    ext = ext["shopsearch"]
    if not isinstance(ext, dict):
        raise BadRequest("ext.shopsearch must be an object of shopper parameters (q, user, strategy, ...)",
                         field="ext.shopsearch")
    args = dict(ext)
    if "q" not in args:
        text = query_text(body.get("query") or {})
        if text:
            args["q"] = text
    size = body.get("size", 10)
    start = body.get("from", 0)
    args.setdefault("size", size)
    if isinstance(size, int) and size > 0 and isinstance(start, int):
        args.setdefault("page", start // size)
    return m.group("catalogue"), args


def query_text(query: dict, depth: int = 0) -> str | None:
    """The shopper's words in a simple OpenSearch query (pure); only text, never another kind.

    >>> query_text({"match": {"title": {"query": "red dress"}}})
    'red dress'
    >>> query_text({"bool": {"must": 5}}) is None
    True
    """
    if not isinstance(query, dict) or depth > 8:
        return None
    for kind in ("multi_match", "query_string", "simple_query_string"):
        if kind in query and isinstance(query[kind], dict):
            return _text(query[kind].get("query"))
    if "match" in query and isinstance(query["match"], dict) and query["match"]:
        value = next(iter(query["match"].values()))
        return _text(value.get("query") if isinstance(value, dict) else value)
    if "bool" in query and isinstance(query["bool"], dict):
        for clause in ("must", "should"):
            subs = query["bool"].get(clause) or []
            for sub in subs if isinstance(subs, list) else [subs]:
                found = query_text(sub, depth + 1)
                if found:
                    return found
    return None


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def as_opensearch_response(result: dict) -> dict:
    """A shopper search result in the shape of an OpenSearch ``_search`` answer."""
    hits = [{"_index": result["index"], "_id": h["id"], "_score": h["score"],
             "_source": {k: v for k, v in h.items() if k not in ("id", "score", "explain")},
             **({"_explanation": h["explain"]} if "explain" in h else {})} for h in result["hits"]]
    return {"took": int(result.get("took_ms", 0)), "timed_out": False,
            "hits": {"total": {"value": result["total"], "relation": "eq"},
                     "max_score": hits[0]["_score"] if hits else None, "hits": hits},
            "ext": {"shopsearch": {k: result.get(k) for k in ("strategy", "model_version", "degraded", "reason",
                                                                "filters_applied", "did_you_mean", "explain") if k in result}}}
