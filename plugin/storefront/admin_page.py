"""The admin page: ``GET /storefront/admin`` (the page) and ``GET /storefront/api/admin/overview``
(its figures, admin credential required: ``Authorization: Bearer`` or ``X-Admin-Token``).

The page itself holds no data, so it is served to anyone; it asks for the admin token, keeps it
in the tab's ``sessionStorage`` and sends it with the one request for the figures, which answers
401 without it. The overview is: each catalogue's alias, index versions, live model and rollout
states (``learn/rollout.status``, as ``/admin/status``), the model registry's evaluation figures
(each model's gate numbers, plotted by the page) and event counts per hour and action over the
last two days.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, current_app, jsonify, send_from_directory

from shopsearch.learn.recommend import search_events
from shopsearch.learn.registry import ModelRegistry
from shopsearch.learn.rollout import status as rollout_status
from shopsearch.plugin.cluster import client
from shopsearch.plugin.safety import require_admin_token
from shopsearch.plugin.schemas import Answer, contract

bp = Blueprint("storefront_admin", __name__, url_prefix="/storefront")
HOURS = 48
STATIC = Path(__file__).parent / "static"


def init_app(app: Flask) -> None:
    """Register the admin page and its figures."""
    app.register_blueprint(bp)


@bp.get("/admin")
@contract(errors=())
def page():
    """The admin page (it asks for the token; the figures need it)."""
    return send_from_directory(STATIC, "admin.html", max_age=0)


def events_per_hour(hours: int = HOURS) -> list[dict]:
    """``[{"hour", "action", "count"}]`` of the events received in the last ``hours`` hours."""
    found = search_events(client(), current_app.config["SHOPSEARCH"], {"size": 0, "query": {"range": {
        "timestamp": {"gte": f"now-{hours}h"}}}, "aggs": {"hours": {"date_histogram": {
            "field": "timestamp", "fixed_interval": "1h", "min_doc_count": 1}, "aggs": {"actions": {
                "terms": {"field": "action_name", "size": 10}}}}}})
    if found is None:
        return []
    return [{"hour": b["key_as_string"], "action": a["key"], "count": a["doc_count"]}
            for b in found["aggregations"]["hours"]["buckets"] for a in b["actions"]["buckets"]]


def evaluations() -> list[dict]:
    """Each registered model's evaluation figures: its gate decision and numbers, newest last."""
    out = []
    for meta in ModelRegistry.from_settings(current_app.config["SHOPSEARCH"]).list():
        gate = meta.get("gate") or {}
        out.append({"version": meta["version"], "status": meta.get("status"), "created_at": meta.get("created_at"),
                    "decision": gate.get("decision"), "numbers": gate.get("numbers") or {},
                    "metrics": meta.get("metrics") or {}})
    return out


@bp.get("/api/admin/overview")
@require_admin_token
@contract(answer=Answer, errors=(401, 403))
def overview():
    """Catalogues, versions, live model, rollout states, evaluation figures, events per hour."""
    settings = current_app.config["SHOPSEARCH"]
    return jsonify(status=rollout_status(settings, None, client=client()), evaluations=evaluations(),
                   events_per_hour=events_per_hour(), hours=HOURS)
