"""``/healthz``: the proxy, the cluster behind it, and the query encoder (loaded once per worker)."""

from __future__ import annotations

import requests
from flask import Blueprint, Flask, current_app, jsonify
from shopsearch.encoders.text import text_encoder
from shopsearch.plugin.cluster import upstream

bp = Blueprint("health", __name__)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.get("/healthz")
def healthz():
    settings = current_app.config["SHOPSEARCH"]
    report = {"proxy": "ok"}
    try:
        r = upstream().get(settings.opensearch_url.rstrip("/") + "/_cluster/health", timeout=3)
        report["cluster"] = r.json().get("status", "unknown")
    except (requests.RequestException, ValueError) as e:
        report["cluster"] = f"unreachable: {e.__class__.__name__}"
    try:
        encoder = text_encoder(settings)
        report["encoder"] = {"model": encoder.version, "device": encoder.device, "dimension": encoder.dimension}
    except Exception as e:  # a broken model must show here, not take the health check down
        report["encoder"] = f"unavailable: {e}"
    healthy = report["cluster"] in ("green", "yellow") and isinstance(report["encoder"], dict)
    return jsonify(status="ok" if healthy else "degraded", **report), 200 if healthy else 503
