"""Shopper search: ``GET/POST /shop/<catalogue>/search?q=...`` -> hybrid BM25 + vector results.

The query vector comes from the encoder recorded in the live index's ``_meta``, so query and
documents always share one model.
"""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, jsonify, request
from opensearchpy import NotFoundError

from shopsearch.catalogue_index import live_meta
from shopsearch.cluster import connect
from shopsearch.encoders import text_encoder
from shopsearch.query import bm25_body, fuse_minmax, knn_body

bp = Blueprint("shop", __name__, url_prefix="/shop")


def init_app(app: Flask) -> None:
    app.extensions["shopsearch.client"] = connect(app.config["SHOPSEARCH"])
    app.register_blueprint(bp)


def _arg(name: str, default=None):
    body = request.get_json(silent=True) if request.method == "POST" else None
    return (body or {}).get(name, request.args.get(name, default))


@bp.route("/<catalogue>/search", methods=["GET", "POST"])
def search(catalogue: str):
    q = str(_arg("q", "")).strip()
    if not q:
        return jsonify(error="bad_request", message="q (the shopper's query) is required"), 400
    try:
        size = max(1, min(100, int(_arg("size", 10))))
        weight = float(_arg("vector_weight", 0.5))
    except (TypeError, ValueError):
        return jsonify(error="bad_request", message="size must be an integer and vector_weight a number"), 400
    settings = current_app.config["SHOPSEARCH"]
    client = current_app.extensions["shopsearch.client"]
    try:
        index, mapping = live_meta(client, catalogue)
    except (LookupError, NotFoundError):
        return jsonify(error="not_found", message=f"catalogue {catalogue!r} has no live index"), 404
    model = mapping.get("_meta", {}).get("model", settings.text_model)
    vector = text_encoder(settings.replace(text_model=model)).encode([q])[0].tolist()
    depth = max(50, size)
    bm25 = client.search(index=index, body=bm25_body(q, depth))["hits"]["hits"]
    knn = client.search(index=index, body=knn_body(vector, depth, depth))["hits"]["hits"]
    sources = {h["_id"]: h["_source"] for h in bm25 + knn}
    ranked = fuse_minmax({h["_id"]: h["_score"] for h in bm25}, {h["_id"]: h["_score"] for h in knn}, weight)[:size]
    return jsonify(catalogue=catalogue, index=index, model_version=mapping["_meta"].get("model_version"), q=q,
                   hits=[{"id": d, "score": round(s, 6), **sources[d]} for d, s in ranked])
