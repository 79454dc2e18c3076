"""The storefront's JSON routes, under ``/storefront``: what the page needs beyond ``/shop`` and ``/events``.

- ``GET /storefront/api/<catalogue>/search``: the shopper search (the parameters of
  ``/shop/<catalogue>/search``, the same ranking) with facet counts (``query/facets.py``) over the
  ranked results, its ``query_id`` and, for a shopper, the ``event_token`` their clicks need;
- ``GET /storefront/api/<catalogue>/suggest?q=``: logged queries, then titles (``query/suggest.py``);
- ``GET /storefront/api/<catalogue>/items/<id>``: one product's fields, for its page;
- ``GET /storefront/api/config``: the catalogue shown by default (setting ``storefront_catalogue``);
- ``GET /storefront/api/<catalogue>/showcase``: suggested queries and demo shoppers (``showcase.py``);
- ``GET /storefront/images/<catalogue>/<id>``: the product's picture from the catalogue's image
  folder (only the file the index names for that product, and only if it is an image).

Hits name their picture by ``image_url``; the server path in ``image`` is never shown.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from flask import Blueprint, current_app, jsonify, redirect, request, send_file
from opensearchpy import NotFoundError

from shopsearch.ingest.images import looks_like_image
from shopsearch.learn.recommend import item_source
from shopsearch.plugin.cluster import client
from shopsearch.plugin.errors import NotFound
from shopsearch.plugin.events import record_search, shopper_token
from shopsearch.plugin.schemas import Answer, SearchParams, contract, parse_params
from shopsearch.plugin.shop import parse_search_request, searcher
from shopsearch.plugin.storefront.contracts import Showcase, StorefrontResults, SuggestParams, Suggestions
from shopsearch.plugin.storefront.showcase import read_showcase
from shopsearch.query.facets import facet_body, price_ranges, read_facets
from shopsearch.query.suggest import merge_suggestions, query_suggestion_body, read_buckets, title_suggestion_body

bp = Blueprint("storefront_api", __name__, url_prefix="/storefront")
ERRORS = (400, 404, 502)
ITEM_FIELDS = ["id", "title", "brand", "price", "image", "category", "category_path", "colour", "material", "gender",
               "rating", "in_stock", "attributes", "description"]


def image_url(catalogue: str, hit: dict) -> dict:
    """``hit`` with ``image_url`` (the storefront's picture route) in place of the server's image path."""
    out = {k: v for k, v in hit.items() if k != "image"}
    out["image_url"] = f"/storefront/images/{catalogue}/{hit['id']}" if hit.get("image") else None
    return out


def facets_of(catalogue: str, index: str, hits: list[dict]) -> dict:
    """Facet counts of the ranked ``hits`` (one ``ids`` search with aggregations)."""
    if not hits:
        return {}
    body = facet_body([h["id"] for h in hits], price_ranges(h.get("price") for h in hits))
    return read_facets(client().search(index=index, body=body))


@bp.get("/api/<catalogue>/search")
@contract(query=SearchParams, answer=StorefrontResults, errors=(400, 403, 404, 409, 502, 504))
def search(catalogue: str):
    """The shopper search with facets: one search down to the deepest result asked, paged here.

    The ranked list is the one ``/shop/<catalogue>/search`` pages through: that search also
    retrieves ``max(candidate_depth, (page + 1) * size)`` candidates per list.
    """
    req = parse_search_request(request.args.to_dict())
    settings = current_app.config["SHOPSEARCH"]
    deep = replace(req, page=0, size=max(settings.candidate_depth, (req.page + 1) * req.size))
    result = searcher().search(catalogue, deep)
    ranked = result["hits"]
    page = ranked[req.page * req.size:(req.page + 1) * req.size]
    answer = {**result, "page": req.page, "size": req.size, "hits": [image_url(catalogue, h) for h in page],
              "facets": facets_of(catalogue, result["index"], ranked), "facets_over": len(ranked)}
    answer["query_id"] = record_search(catalogue, req.user, answer)  # impressions: this page's hits
    if req.user:
        answer["event_token"] = shopper_token(req.user)
    return jsonify(answer)


@bp.get("/api/<catalogue>/suggest")
@contract(query=SuggestParams, answer=Suggestions, errors=ERRORS)
def suggest(catalogue: str):
    """Completions of what the shopper typed: frequent logged queries, then catalogue titles."""
    params = parse_params(SuggestParams, request.args.to_dict())
    settings = current_app.config["SHOPSEARCH"]
    live = searcher().live(catalogue)
    found = client().msearch(body=[
        {"index": settings.ubi_queries_index, "ignore_unavailable": True},
        query_suggestion_body(catalogue, params.q, params.size),
        {"index": live.index}, title_suggestion_body(params.q, params.size)])["responses"]
    queries = read_buckets(found[0], "queries") if "error" not in found[0] else []
    titles = read_buckets(found[1], "titles") if "error" not in found[1] else []
    return jsonify(catalogue=catalogue, q=params.q, suggestions=merge_suggestions(queries, titles, params.size))


@bp.get("/api/<catalogue>/items/<item_id>")
@contract(answer=Answer, errors=ERRORS)
def item(catalogue: str, item_id: str):
    """One product's fields for its page (404 naming the item when the catalogue lacks it)."""
    live = searcher().live(catalogue)
    source = item_source(client(), live.index, catalogue, item_id, ITEM_FIELDS)
    return jsonify(image_url(catalogue, {"id": item_id, **source}))


@bp.get("/api/config")
@contract(answer=Answer, errors=())
def config():
    """What the page needs before anything else: the catalogue it shows by default."""
    settings = current_app.config["SHOPSEARCH"]
    return jsonify(catalogue=settings.storefront_catalogue, page_size=24, max_result_depth=settings.max_result_depth)


@bp.get("/api/<catalogue>/showcase")
@contract(answer=Showcase, errors=ERRORS)
def showcase(catalogue: str):
    """The catalogue's suggested queries and demo shoppers (empty lists when none were prepared)."""
    return jsonify(catalogue=catalogue, **read_showcase(current_app.config["SHOPSEARCH"], catalogue))


@bp.get("/images/<catalogue>/<item_id>")
@contract(errors=(404,))
def image(catalogue: str, item_id: str):
    """The product's picture: the file its document names, when it is still there and is an image."""
    live = searcher().live(catalogue)
    try:
        ref = client().get(index=live.index, id=item_id, _source_includes=["image"])["_source"].get("image")
    except NotFoundError:
        ref = None
    if ref and str(ref).startswith(("http://", "https://")):
        return redirect(ref)
    path = Path(ref) if ref else None
    if path is None or not path.is_file():
        raise NotFound(f"item {item_id!r} of catalogue {catalogue!r} has no picture", field="item_id")
    with open(path, "rb") as f:
        if not looks_like_image(f.read(16)):
            raise NotFound(f"item {item_id!r} of catalogue {catalogue!r} has no picture", field="item_id")
    return send_file(path, max_age=3600)
