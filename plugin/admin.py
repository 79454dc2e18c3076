"""``/admin``: operations that need the admin token (setting ``admin_token``).

* ``DELETE /admin/users/<id>`` — forget a shopper: their events, recorded queries and profiles;
* ``POST /admin/profiles/<catalogue>/update`` — rebuild profiles now (``{"users": [...]}`` of shop
  ids, or every shopper with events since ``{"since": ISO time}``), through the Celery task;
* ``POST /admin/catalogues/<catalogue>/reindex`` — build, verify and swap in a new version
  (``{"model": ..., "source": ..., "mapping": ..., "swap": true}``) through the Celery task
  ``shopsearch.rollout.reindex`` on the ``rollout`` queue: 202 with the task id, 503 when no
  worker consumes that queue;
* ``POST /admin/catalogues/<catalogue>/promote`` (``{"index": "vN"}``) and
  ``POST /admin/catalogues/<catalogue>/rollback`` — move the alias (see ``shopsearch.rollout``);
* ``GET /admin/status[?catalogue=...]`` — alias -> index -> model, versions, rollout states, events.
"""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, jsonify, request

from shopsearch.privacy import pseudonym
from shopsearch.index.ubi import forget_user

from shopsearch.plugin.errors import BadRequest, NotFound, Unavailable
from shopsearch.plugin.safety import parse_json_body, require_admin_token
from shopsearch.workers.app import make_app
from shopsearch.index.versions import IndexVersionError
from shopsearch.learn.rollout import RolloutError, RolloutNotFound
from pathlib import Path
from shopsearch.index.versions import IndexVersionError, check_catalogue_name
from shopsearch.learn.rollout import ROLLOUT_QUEUE, resolve_model
from shopsearch.learn.rollout import promote as promote_version
from shopsearch.learn.rollout import rollback as rollback_alias
from shopsearch.learn.rollout import status as rollout_status

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


# --- model rollout ---------------------------------------------------------------------------

def _rollout_call(fn, *args):
    """Run a rollout function, its refusals translated for the error table."""
    try:
        return fn(current_app.config["SHOPSEARCH"], *args, client=_client())
    except RolloutNotFound as e:
        raise NotFound(str(e)) from None
    except (RolloutError, IndexVersionError) as e:
        raise BadRequest(str(e)) from None


def _optional_string(body: dict, name: str) -> str | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise BadRequest(f"{name} must be a non-empty string", field=name)
    return value


@bp.post("/catalogues/<catalogue>/reindex")
def reindex(catalogue: str):

    settings = current_app.config["SHOPSEARCH"]
    try:
        check_catalogue_name(catalogue)
    except IndexVersionError as e:
        raise BadRequest(str(e), field="catalogue") from None
    body = parse_json_body()
    model, source, mapping = (_optional_string(body, n) for n in ("model", "source", "mapping"))
    swap = body.get("swap", True)
    if not isinstance(swap, bool):
        raise BadRequest("swap must be true or false", field="swap")
    if source is not None and not Path(source).expanduser().is_file():
        raise BadRequest(f"source file {source} does not exist on the server", field="source")
    app = make_app(settings)
    replies = app.control.inspect(timeout=1.0).active_queues() or {}
    if not any(q["name"] == ROLLOUT_QUEUE for queues in replies.values() for q in queues):
        raise Unavailable(f"no Celery worker consumes the {ROLLOUT_QUEUE!r} queue: add it to worker_queues "
                          f"(e.g. 'encode;celery,ingest;{ROLLOUT_QUEUE}') and run `shopsearch services up`", retry_after=30)
    task = app.send_task("shopsearch.rollout.reindex", queue=ROLLOUT_QUEUE, kwargs={
        "catalogue": catalogue, "model": resolve_model(settings, model), "source": source, "mapping": mapping, "swap": swap})
    return jsonify(task_id=task.id, catalogue=catalogue), 202


@bp.post("/catalogues/<catalogue>/promote")
def promote(catalogue: str):
    index = parse_json_body(required=True).get("index")
    if not isinstance(index, str) or not index.strip():
        raise BadRequest("index must name a version (<catalogue>-vN, vN or N)", field="index")
    return jsonify(_rollout_call(promote_version, catalogue, index))


@bp.post("/catalogues/<catalogue>/rollback")
def rollback(catalogue: str):
    return jsonify(_rollout_call(rollback_alias, catalogue))


@bp.get("/status")
def status():
    catalogue = request.args.get("catalogue") or None
    return jsonify(_rollout_call(rollout_status, catalogue))
