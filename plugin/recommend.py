"""Recommendations: ``GET /shop/<catalogue>/recommend/...`` -> lists that need no query text.

- ``for-you?user=U``: k-NN around the shopper's profile vector (``strategy: profile-knn``), or the
  catalogue's most popular items when there is no usable profile (``strategy: popular``, with a
  ``reason``): a cold start is never an error. Both are diversified (``max(2, size // 3)`` places
  per category, filled up to ``size`` when the catalogue is short of variety). Items the shopper
  has already bought in this catalogue (their most recent :data:`MAX_BOUGHT_EXCLUDED`) are left
  out: fashion is rarely bought twice, and a list of things already owned wastes the places.
- ``similar/<item_id>``: k-NN around the item's ``fused_vector``; the item and every item of its
  ``duplicate_group`` are excluded inside the k-NN filter. No vector: an empty list with a ``reason``.
- ``also-bought/<item_id>``: co-purchases from the events index (``ubi_events_index``), orders
  being (shopper, UTC day); see ``shopsearch/recommend.py``. The neighbour list is cached per
  (catalogue, item) for :data:`ALSO_BOUGHT_TTL` seconds; the shopper's filters are applied after
  the cache, by one ``ids`` + filters search, so every filter combination shares one entry.

Parameters (query string; unknown ones are a 400): ``size`` (1-50, default 10), ``price_min``,
``price_max``, ``category``, ``brand``, ``colour``, ``in_stock``; ``user`` on for-you (required).
An unknown catalogue or item is a 404. Hits carry the item's fields without vectors.
"""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, jsonify, request
from opensearchpy import NotFoundError, RequestError

from shopsearch.learn import recommend as rec
from shopsearch.query.caches import TTLCache
from shopsearch.privacy import pseudonym
from shopsearch.query.build import request_filters
from shopsearch.query.searcher import Live, SearchError, Searcher

from shopsearch.plugin.errors import BadRequest, NotFound

bp = Blueprint("recommend", __name__, url_prefix="/shop")
EXTENSION = "shopsearch.recommend"
ALSO_BOUGHT_TTL = 60.0
MAX_BOUGHT_EXCLUDED = 500
MAX_SIZE = 50

_FILTERS = {"price_min": float, "price_max": float, "category": str, "brand": str, "colour": str, "in_stock": bool}
_COMMON = {"size": int, **_FILTERS}


def init_app(app: Flask) -> None:
    """Register the routes; needs the Searcher that ``shop.init_app`` puts in ``app.extensions``."""
    if "shopsearch.searcher" not in app.extensions:
        raise RuntimeError("recommend.init_app needs shop.init_app to run first (it creates the Searcher)")
    app.extensions[EXTENSION] = TTLCache(1000, ALSO_BOUGHT_TTL)
    app.register_blueprint(bp)


def searcher() -> Searcher:
    return current_app.extensions["shopsearch.searcher"]


# --- parameters ----------------------------------------------------------------------------
def _convert(name: str, kind: type, raw: str):
    if raw == "":
        return None
    if kind is bool:
        if raw.lower() in ("1", "true", "yes"):
            return True
        if raw.lower() in ("0", "false", "no"):
            return False
        raise BadRequest(f"{name} must be true or false, got {raw!r}", field=name)
    try:
        return kind(raw)
    except ValueError:
        raise BadRequest(f"{name} must be {'a number' if kind is float else 'an integer'}, got {raw!r}", field=name) from None


def parse_params(allowed: dict[str, type]) -> tuple[int, list[dict], dict]:
    """``(size, filter clauses, the other values)`` from the query string; BadRequest names the field."""
    args = request.args.to_dict()
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown parameter(s): {', '.join(unknown)}; allowed: {', '.join(allowed)}", field=unknown[0])
    values = {k: _convert(k, allowed[k], v.strip()) for k, v in args.items()}
    size = values.pop("size", None)
    size = 10 if size is None else size
    if not 1 <= size <= MAX_SIZE:
        raise BadRequest(f"size must be between 1 and {MAX_SIZE}, got {size}", field="size")
    lo, hi = values.get("price_min"), values.get("price_max")
    if lo is not None and hi is not None and lo > hi:
        raise BadRequest("price_min must not exceed price_max", field="price_min")
    filters = request_filters(**{k: values.pop(k, None) for k in _FILTERS})
    return size, filters, values


# --- OpenSearch calls --------------------------------------------------------------------------
def _search(index: str, body: dict) -> list[dict]:
    try:
        return searcher().client.search(index=index, body=body)["hits"]["hits"]
    except RequestError as e:
        raise SearchError(f"OpenSearch rejected the recommendation query: {e.error}", 502, "upstream_error") from None


def _events(body: dict) -> dict | None:
    """A search on the events index; None when the index does not exist (no events yet)."""
    try:
        return searcher().client.search(index=searcher().settings.ubi_events_index, body=body)
    except NotFoundError:
        return None


def _item(live: Live, catalogue: str, item_id: str, fields: list[str]) -> dict:
    try:
        return searcher().client.get(index=live.index, id=item_id, _source_includes=fields)["_source"]
    except NotFoundError:
        raise NotFound(f"item {item_id!r} is not in catalogue {catalogue!r}", field="item_id") from None


def bought_by(catalogue: str, user: str) -> list[str]:
    """Items the shopper has bought in this catalogue (events are keyed by the pseudonym)."""
    who = pseudonym(user, searcher().settings.pseudonym_salt)
    found = _events({"size": 0, "query": {"bool": {"filter": [
        {"term": {"user_id": who}}, {"term": {"action_name": "purchase"}}, {"term": {"catalogue": catalogue}}]}},
        "aggs": {"items": {"terms": {"field": "object_id", "size": MAX_BOUGHT_EXCLUDED,
                                     "order": {"last": "desc"}}, "aggs": {"last": {"max": {"field": "timestamp"}}}}}})
    return [b["key"] for b in found["aggregations"]["items"]["buckets"]] if found else []


def co_purchases(catalogue: str, item_id: str) -> list[tuple[str, float]]:
    """The also-bought neighbours of one item, from the purchases of the shoppers who bought it."""
    where = [{"term": {"action_name": "purchase"}}, {"term": {"catalogue": catalogue}}]
    found = _events({"size": 0, "query": {"bool": {"filter": [*where, {"term": {"object_id": item_id}}]}},
                     "aggs": {"buyers": {"terms": {"field": "user_id", "size": rec.MAX_CO_BUYERS}}}})
    buyers = [b["key"] for b in found["aggregations"]["buyers"]["buckets"]] if found else []
    if not buyers:
        return []
    found = _events({"size": rec.MAX_CO_PURCHASES, "_source": ["user_id", "object_id", "timestamp"],
                     "sort": [{"timestamp": "desc"}],
                     "query": {"bool": {"filter": [*where, {"terms": {"user_id": buyers}}]}}})
    return rec.also_bought(item_id, [h["_source"] for h in found["hits"]["hits"]] if found else [])


# --- routes --------------------------------------------------------------------------------
@bp.get("/<catalogue>/recommend/for-you")
def for_you(catalogue: str):
    size, filters, values = parse_params({"user": str, **_COMMON})
    user = values.get("user")
    if not user:
        raise BadRequest("user (the shopper's id) is required", field="user")
    if len(user) > 200:
        raise BadRequest("user is longer than 200 characters", field="user")
    live = searcher().live(catalogue)
    exclude = bought_by(catalogue, user)
    profile = searcher().profile(catalogue, user)
    reason = None
    if not profile:
        reason = "no profile for this shopper yet"
    elif not profile.get("vector"):
        reason = "the shopper's profile has no vector"
    elif profile.get("model_version") and profile["model_version"] != live.meta.get("model_version"):
        reason = "the shopper's profile was built with another model"  # vectors of two models are not comparable
    depth = rec.CANDIDATES_PER_PLACE * size
    if reason is None:
        body = rec.knn_body(profile["vector"], depth, depth, filters, exclude_ids=exclude)
        strategy = "profile-knn"
    else:
        body = rec.popular_body(depth, filters, exclude_ids=exclude)
        strategy = "popular"
    hits = rec.diversified(_search(live.index, body), size)
    if strategy == "popular":  # sorted, not scored: the popularity is the score
        hits = [{**h, "_score": (h.get("_source") or {}).get("popularity_norm") or 0.0} for h in hits]
    out = {"catalogue": catalogue, "user": user, "strategy": strategy, "hits": [rec.shown(h) for h in hits]}
    if reason:
        out["reason"] = reason
    return jsonify(out)


@bp.get("/<catalogue>/recommend/similar/<item_id>")
def similar(catalogue: str, item_id: str):
    size, filters, _ = parse_params(_COMMON)
    live = searcher().live(catalogue)
    item = _item(live, catalogue, item_id, ["fused_vector", "duplicate_group"])
    out = {"catalogue": catalogue, "item": item_id, "strategy": "item-knn", "hits": []}
    if not item.get("fused_vector"):
        return jsonify({**out, "reason": f"item {item_id!r} has no vector to compare with"})
    body = rec.knn_body(item["fused_vector"], size, rec.CANDIDATES_PER_PLACE * size, filters,
                        exclude_ids=[item_id], duplicate_group=item.get("duplicate_group"))
    out["hits"] = [rec.shown(h) for h in _search(live.index, body)[:size]]
    return jsonify(out)


@bp.get("/<catalogue>/recommend/also-bought/<item_id>")
def also_bought(catalogue: str, item_id: str):
    size, filters, _ = parse_params(_COMMON)
    live = searcher().live(catalogue)
    _item(live, catalogue, item_id, ["id"])  # 404 for an item the catalogue does not have
    cache: TTLCache = current_app.extensions[EXTENSION]
    neighbours = cache.get((catalogue, item_id))
    cached = neighbours is not None
    if not cached:
        neighbours = co_purchases(catalogue, item_id)
        cache.put((catalogue, item_id), neighbours)
    hits = []
    if neighbours:
        scores = dict(neighbours)
        found = {h["_id"]: h for h in _search(live.index, rec.ids_body(list(scores), filters))}
        hits = [rec.shown(found[d], score) for d, score in neighbours if d in found][:size]
    return jsonify({"catalogue": catalogue, "item": item_id, "strategy": "co-purchase", "hits": hits, "cached": cached})
