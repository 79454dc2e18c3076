"""Shopper search: ``GET/POST /shop/<catalogue>/search`` -> hybrid BM25 + vector results.

Parameters (query string for GET, a JSON object for POST): ``q`` (required), ``user``,
``size`` (1-100), ``page``, ``strategy`` (bm25, dense, hybrid, hybrid-rrf), ``vector_weight``
(0-1), ``price_min``, ``price_max``, ``category``, ``brand``, ``colour``, ``in_stock``,
``explain``. The work is done by :class:`shopsearch.search.Searcher`, the same object that
``shopsearch eval`` uses.
"""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, g, jsonify, request

from shopsearch.cluster import connect
from shopsearch.query.searcher import SearchError, SearchRequest, Searcher

from shopsearch.plugin.events import record_search
from shopsearch.plugin.safety import reject_scripts

bp = Blueprint("shop", __name__, url_prefix="/shop")

_FIELDS = {"q": str, "user": str, "size": int, "page": int, "strategy": str, "vector_weight": float,
           "price_min": float, "price_max": float, "category": str, "brand": str, "colour": str,
           "in_stock": bool, "explain": bool}


def init_app(app: Flask) -> None:
    app.extensions["shopsearch.searcher"] = Searcher(connect(app.config["SHOPSEARCH"]), app.config["SHOPSEARCH"])
    app.register_blueprint(bp)


def searcher() -> Searcher:
    return current_app.extensions["shopsearch.searcher"]


def _convert(name: str, kind: type, raw):
    if raw is None or raw == "":
        return None
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("1", "true", "yes"):
            return True
        if str(raw).lower() in ("0", "false", "no"):
            return False
        raise SearchError(f"{name} must be true or false", 400, field=name)
    if isinstance(raw, (dict, list)) or (kind is not str and isinstance(raw, bool)):
        raise SearchError(f"{name} must be a {kind.__name__}", 400, field=name)
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise SearchError(f"{name} must be a {'number' if kind is float else 'an integer' if kind is int else 'string'}, got {raw!r}", 400, field=name) from None


def parse_search_request(args: dict) -> SearchRequest:
    """Validate shopper parameters into a SearchRequest; raises SearchError (400) naming the field."""
    unknown = sorted(set(args) - set(_FIELDS))
    if unknown:
        raise SearchError(f"unknown parameter(s): {', '.join(unknown)}; allowed: {', '.join(_FIELDS)}", 400, field=unknown[0])
    values = {k: _convert(k, kind, args.get(k)) for k, kind in _FIELDS.items() if k in args}
    q = (values.pop("q", None) or "").strip()
    if not q:
        raise SearchError("q (the shopper's query) is required", 400, field="q")
    if len(q) > 500:
        raise SearchError("q is longer than 500 characters", 400, field="q")
    size = values.pop("size", None)
    page = values.pop("page", None)
    size = 10 if size is None else size
    page = 0 if page is None else page
    if not 1 <= size <= 100 or not 0 <= page <= 100:
        raise SearchError("size must be 1-100 and page 0-100", 400, field="size" if not 1 <= size <= 100 else "page")
    weight = values.get("vector_weight")
    if weight is not None and not 0.0 <= weight <= 1.0:
        raise SearchError("vector_weight must be between 0 and 1", 400, field="vector_weight")
    return SearchRequest(q=q, size=size, page=page, **{k: v for k, v in values.items() if v is not None})


@bp.route("/<catalogue>/search", methods=["GET", "POST"])
def search(catalogue: str):
    """Errors (SearchError, a cluster that cannot be reached) are rendered by plugin/errors.py."""
    if request.method == "POST":
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise SearchError("the body must be a JSON object of search parameters", 400)
        reject_scripts(body)
        args = body
    else:
        args = request.args.to_dict()
    req = parse_search_request(args)
    g.strategy = req.strategy
    result = searcher().search(catalogue, req)
    return jsonify({**result, "query_id": record_search(catalogue, req.user, result)})
