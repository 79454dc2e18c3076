"""``/admin``: operations that need the admin token (setting ``admin_token``).

* ``DELETE /admin/users/<id>`` — forget a shopper: their events, recorded queries and profiles;
* ``POST /admin/profiles/<catalogue>/update`` — rebuild profiles now (``{"users": [...]}`` of shop
  ids, or every shopper with events since ``{"since": ISO time}``), through the Celery task.
"""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, jsonify, request

from shopsearch.events import pseudonym
from shopsearch.ubi import forget_user

from .errors import BadRequest
from .safety import require_admin_token

bp = Blueprint("admin", __name__, url_prefix="/admin")
bp.before_request(require_admin_token)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


def _client():
    return current_app.extensions["shopsearch.searcher"].client


@bp.delete("/users/<user_id>")
def forget(user_id: str):
    settings = current_app.config["SHOPSEARCH"]
    events = current_app.extensions.get("shopsearch.events")
    if events is not None:
        events.flush()  # events still buffered for this shopper must be deleted too
    counts = forget_user(_client(), settings, pseudonym(user_id, settings.pseudonym_salt))
    current_app.extensions["shopsearch.searcher"].profiles.clear()
    return jsonify(forgotten=True, deleted=counts)


@bp.post("/profiles/<catalogue>/update")
def update_profiles(catalogue: str):
    from shopsearch.workers.app import make_app
    settings = current_app.config["SHOPSEARCH"]
    body = request.get_json(silent=True) or {}
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    users = body.get("users")
    if users is not None and (not isinstance(users, list) or not all(isinstance(u, str) for u in users)):
        raise BadRequest("users must be a list of shopper ids", field="users")
    since = body.get("since")
    pseudonyms = [pseudonym(u, settings.pseudonym_salt) for u in users] if users is not None else None
    events = current_app.extensions.get("shopsearch.events")
    if events is not None:
        events.flush()  # the events this process still buffers belong in the profiles
    task = make_app(settings).send_task("shopsearch.profiles.update", args=[catalogue, pseudonyms, since])
    searcher = current_app.extensions["shopsearch.searcher"]
    if body.get("wait"):
        result = task.get(timeout=600)
        searcher.profiles.clear()  # this process's cached profiles (other processes: within 30 s)
        return jsonify(result)
    searcher.profiles.clear()
    return jsonify(task_id=task.id), 202
