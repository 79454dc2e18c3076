"""Search by photo: ``POST /storefront/api/<catalogue>/photo``, a multipart form with the file
``image`` and optional words ``q``, a shopper ``user`` and the filters of a search.

The picture is encoded by the catalogue's image encoder (``encoders/image.py``, EfficientNet-Lite0,
the one its documents were encoded with) and mapped into the text space by the catalogue's
learned projection (``ingest/fuse.py``; its file is named in the index's ``_meta``); then
``query/photo.py``: k-NN on ``image_vector`` and ``text_vector`` in one ``_msearch``, fused, and
with words the ordinary shopper search of those words fused in. The answer has the shape of a
search (``query_id``, ``event_token``, hits with ``image_url``), ``strategy: photo``; it is recorded
in the query log like any search, so clicks on it are events like any other.

The encoder loads in the proxy process on the first photo (torch; a few seconds), once.
"""

from __future__ import annotations

import io
from functools import lru_cache

from flask import Blueprint, Flask, current_app, jsonify, request

from shopsearch.encoders.image import image_encoder
from shopsearch.errors import SearchError
from shopsearch.ingest.fuse import Projection
from shopsearch.plugin.cluster import client
from shopsearch.plugin.errors import BadRequest
from shopsearch.plugin.events import record_search, shopper_token
from shopsearch.plugin.schemas import contract, parse_params
from shopsearch.plugin.shop import searcher
from shopsearch.plugin.storefront.api import facets_of, image_url
from shopsearch.plugin.storefront.contracts import PhotoParams, StorefrontResults
from shopsearch.query.build import request_filters
from shopsearch.query.photo import photo_bodies, photo_ranked, with_words
from shopsearch.query.respond import hit_fields
from shopsearch.query.searcher import SearchRequest

bp = Blueprint("storefront_photo", __name__, url_prefix="/storefront")


def init_app(app: Flask) -> None:
    """Register the photo route."""
    app.register_blueprint(bp)


@lru_cache(maxsize=8)
def projection(path: str) -> Projection:
    """A catalogue's image -> text projection, loaded once per file."""
    return Projection.load(path)


def photo_vector(data: bytes, projection_path: str, device: str) -> list[float]:
    """The photo's vector in the catalogue's text space; BadRequest naming ``image`` when it is no picture."""
    features, ok = image_encoder(device).encode_paths([io.BytesIO(data)])
    if not ok[0]:
        raise BadRequest("the file 'image' is not a picture that can be read (JPEG, PNG, GIF or WEBP)", field="image")
    return projection(projection_path).project(features)[0].tolist()


@bp.post("/api/<catalogue>/photo")
@contract(query=PhotoParams, answer=StorefrontResults, errors=(400, 404, 409, 413, 502))
def photo_search(catalogue: str):
    """Products that look like the uploaded photo (and match the typed words, if any)."""
    settings = current_app.config["SHOPSEARCH"]
    params = parse_params(PhotoParams, request.form.to_dict())
    upload = request.files.get("image")
    if upload is None:
        raise BadRequest("a photo is required: send it as the multipart file field 'image'", field="image")
    data = upload.read()
    if not data:
        raise BadRequest("the file 'image' is empty", field="image")
    live = searcher().live(catalogue)
    path = (live.meta.get("projection") or {}).get("path")
    if not path:
        raise SearchError(f"catalogue {catalogue!r} has no pictures to compare with (it was ingested without "
                          "images, so it has no image projection)", 409, "conflict", field="image")
    filters = request_filters(**params.filter_values())
    vector = photo_vector(data, path, settings.device)
    k = settings.candidate_depth
    body = []
    for search_body in photo_bodies(vector, k, filters, searcher().source):
        body += [{"index": live.index}, search_body]
    found = client().msearch(body=body)["responses"]
    for answer in found:
        if "error" in answer:
            raise SearchError(f"OpenSearch refused the photo's k-NN search: {answer['error'].get('type')}", 502,
                              "opensearch_error")
    sources = {h["_id"]: h["_source"] for answer in found for h in answer["hits"]["hits"]}
    image_scores, text_scores = ({h["_id"]: h["_score"] for h in answer["hits"]["hits"]} for answer in found)
    ranked = photo_ranked(image_scores, text_scores)
    if params.q.strip():
        words = searcher().search(catalogue, SearchRequest(q=params.q.strip(), user=params.user, size=k,
                                                           **params.filter_values()))
        sources.update({h["id"]: h for h in words["hits"]})
        ranked = with_words([(h["id"], h["score"]) for h in words["hits"]], ranked)
    hits = [image_url(catalogue, {"id": d, "score": round(float(s), 6), **hit_fields(sources[d], searcher().shown)})
            for d, s in ranked[:params.size]]
    answer = {"catalogue": catalogue, "index": live.index, "model_version": live.meta.get("model_version"),
              "q": params.q.strip(), "strategy": "photo", "total": len(ranked), "page": 0, "size": params.size,
              "hits": hits, "degraded": False, "filters_applied": [],
              "facets": facets_of(catalogue, live.index, [{"id": d, "price": sources[d].get("price")} for d, _ in ranked]),
              "facets_over": len(ranked)}
    answer["query_id"] = record_search(catalogue, params.user, answer)
    if params.user:
        answer["event_token"] = shopper_token(params.user)
    return jsonify(answer)
