"""Recommendations: ``GET /shop/<catalogue>/recommend/...`` -> lists that need no query text.

- ``for-you?user=U``: k-NN around the shopper's profile vector (``strategy: profile-knn``), or the
  catalogue's most popular items when there is no usable profile (``strategy: popular``, with a
  ``reason``): a cold start is never an error. Both are diversified (``max(2, size // 3)`` places
  per category, filled up to ``size`` when the catalogue is short of variety). Items the shopper
  has already bought in this catalogue (their most recent ``MAX_BOUGHT_EXCLUDED``) are left
  out: fashion is rarely bought twice, and a list of things already owned wastes the places.
- ``similar/<item_id>``: k-NN around the item's ``fused_vector``; the item and every item of its
  ``duplicate_group`` are excluded inside the k-NN filter. No vector: an empty list with a ``reason``.
- ``also-bought/<item_id>``: co-purchases from the events index (``ubi_events_index``), orders
  being (shopper, UTC day). The neighbour list is cached per (catalogue, item) for
  :data:`ALSO_BOUGHT_TTL` seconds; the shopper's filters are applied after the cache, by one
  ``ids`` + filters search, so every filter combination shares one entry.

The lists are made by ``shopsearch/learn/recommend.py``; this blueprint parses the parameters
(:class:`~.schemas.ForYouParams`, :class:`~.schemas.RecommendParams`: unknown ones are a 400),
calls it with the app's client, and answers. An unknown catalogue or item is a 404. Hits carry
the item's fields without vectors.
"""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, jsonify, request

from shopsearch.learn import recommend as rec
from shopsearch.plugin.cluster import client
from shopsearch.plugin.events import shopper_token
from shopsearch.plugin.schemas import ForYouParams, RecommendParams, Recommendations, contract, parse_params
from shopsearch.plugin.shop import searcher
from shopsearch.query.build import request_filters
from shopsearch.query.caches import TTLCache

bp = Blueprint("recommend", __name__, url_prefix="/shop")
EXTENSION = "shopsearch.recommend"
ALSO_BOUGHT_TTL = 60.0
MAX_BOUGHT_EXCLUDED = rec.MAX_BOUGHT_EXCLUDED
ERRORS = (400, 404, 502)


def init_app(app: Flask) -> None:
    """Register the routes; needs the Searcher that ``shop.init_app`` puts in ``app.extensions``."""
    if "shopsearch.searcher" not in app.extensions:
        raise RuntimeError("recommend.init_app needs shop.init_app to run first (it creates the Searcher)")
    app.extensions[EXTENSION] = TTLCache(1000, ALSO_BOUGHT_TTL)
    app.register_blueprint(bp)


def _params(model: type[RecommendParams]) -> tuple[RecommendParams, list[dict]]:
    params = parse_params(model, request.args.to_dict())
    return params, request_filters(**params.filter_values())


@bp.get("/<catalogue>/recommend/for-you")
@contract(query=ForYouParams, answer=Recommendations, errors=ERRORS)
def for_you(catalogue: str):
    """Items for one shopper: profile k-NN, or the popular items on a cold start."""
    params, filters = _params(ForYouParams)
    live = searcher().live(catalogue)
    profile = searcher().profile(catalogue, params.user)
    answer = rec.for_you(client(), current_app.config["SHOPSEARCH"], live.index, live.meta.get("model_version"),
                         catalogue, params.user, profile, params.size, filters)
    return jsonify({**answer, "event_token": shopper_token(params.user)})


@bp.get("/<catalogue>/recommend/similar/<item_id>")
@contract(query=RecommendParams, answer=Recommendations, errors=ERRORS)
def similar(catalogue: str, item_id: str):
    """Items like one item (its vector's neighbours, its duplicates left out)."""
    params, filters = _params(RecommendParams)
    live = searcher().live(catalogue)
    return jsonify(rec.similar(client(), live.index, catalogue, item_id, params.size, filters))


@bp.get("/<catalogue>/recommend/also-bought/<item_id>")
@contract(query=RecommendParams, answer=Recommendations, errors=ERRORS)
def also_bought(catalogue: str, item_id: str):
    """Items bought together with one item (co-purchases per shopper-day)."""
    params, filters = _params(RecommendParams)
    live = searcher().live(catalogue)
    rec.item_source(client(), live.index, catalogue, item_id, ["id"])  # 404 for an item the catalogue does not have
    cache: TTLCache = current_app.extensions[EXTENSION]
    neighbours = cache.get((catalogue, item_id))
    cached = neighbours is not None
    if not cached:
        neighbours = rec.co_purchases(client(), current_app.config["SHOPSEARCH"], catalogue, item_id)
        cache.put((catalogue, item_id), neighbours)
    hits = rec.also_bought_hits(client(), live.index, neighbours, params.size, filters)
    return jsonify({"catalogue": catalogue, "item": item_id, "strategy": "co-purchase", "hits": hits, "cached": cached})
