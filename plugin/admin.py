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

from pathlib import Path

from flask import Blueprint, Flask, current_app, jsonify, request

from shopsearch.index.ubi import forget_user
from shopsearch.index.versions import check_catalogue_name
from shopsearch.learn.reindex import ROLLOUT_QUEUE, resolve_model
from shopsearch.learn.rollout import promote as promote_version
from shopsearch.learn.rollout import rollback as rollback_alias
from shopsearch.learn.rollout import status as rollout_status
from shopsearch.plugin.cluster import client
from shopsearch.plugin.errors import BadRequest, Unavailable
from shopsearch.plugin.json_body import parse_json_body
from shopsearch.plugin.safety import require_admin_token
from shopsearch.plugin.schemas import (Answer, ProfileUpdate, PromoteRequest, ReindexRequest, TaskStarted, contract,
                                       parse_params)
from shopsearch.plugin.shop import forget_cached_profiles
from shopsearch.privacy import pseudonym
from shopsearch.workers.app import make_app

bp = Blueprint("admin", __name__, url_prefix="/admin")
bp.before_request(require_admin_token)
ADMIN_ERRORS = (400, 401, 403, 404, 409)


def init_app(app: Flask) -> None:
    """Register the ``/admin`` routes (every one needs the admin token)."""
    app.register_blueprint(bp)


def _flush_events() -> None:
    events = current_app.extensions.get("shopsearch.events")
    if events is not None:
        events.flush()  # the events this process still buffers must be seen by what follows


@bp.delete("/users/<user_id>")
@contract(answer=Answer, errors=ADMIN_ERRORS)
def forget(user_id: str):
    """Forget a shopper: their events, recorded queries and profiles."""
    settings = current_app.config["SHOPSEARCH"]
    who = pseudonym(user_id, settings.pseudonym_salt)
    events = current_app.extensions.get("shopsearch.events")
    dropped = events.forget("user_id", who) if events is not None else 0  # buffered, journalled, spilled
    _flush_events()  # what is written already must be deleted too
    counts = forget_user(client(), settings, who)
    counts["buffered"] = dropped
    forget_cached_profiles()
    return jsonify(forgotten=True, deleted=counts)


@bp.post("/profiles/<catalogue>/update")
@contract(body=ProfileUpdate, answer=TaskStarted, status=202, errors=ADMIN_ERRORS)
def update_profiles(catalogue: str):
    """Rebuild shopper profiles now, through the Celery task."""
    settings = current_app.config["SHOPSEARCH"]
    body = parse_json_body()
    update = parse_params(ProfileUpdate, body)
    pseudonyms = [pseudonym(u, settings.pseudonym_salt) for u in update.users] if update.users is not None else None
    _flush_events()
    task = make_app(settings).send_task("shopsearch.profiles.update", args=[catalogue, pseudonyms, update.since])
    if update.wait:
        result = task.get(timeout=600)
        forget_cached_profiles()
        return jsonify(result)
    forget_cached_profiles()
    return jsonify(task_id=task.id), 202


# --- model rollout (RolloutError, RolloutNotFound, IndexVersionError: rendered by plugin/errors.py) ---

@bp.post("/catalogues/<catalogue>/reindex")
@contract(body=ReindexRequest, answer=TaskStarted, status=202, errors=ADMIN_ERRORS)
def reindex(catalogue: str):
    """Build, verify and swap in a new version, through the Celery task on the rollout queue."""
    settings = current_app.config["SHOPSEARCH"]
    check_catalogue_name(catalogue)
    wanted = parse_params(ReindexRequest, parse_json_body())
    if wanted.source is not None and not Path(wanted.source).expanduser().is_file():
        raise BadRequest(f"source file {wanted.source} does not exist on the server", field="source")
    app = make_app(settings)
    replies = app.control.inspect(timeout=1.0).active_queues() or {}
    if not any(q["name"] == ROLLOUT_QUEUE for queues in replies.values() for q in queues):
        raise Unavailable(f"no Celery worker consumes the {ROLLOUT_QUEUE!r} queue: add it to worker_queues "
                          f"(e.g. 'encode;celery,ingest;{ROLLOUT_QUEUE}') and run `shopsearch services up`", retry_after=30)
    task = app.send_task("shopsearch.rollout.reindex", queue=ROLLOUT_QUEUE, kwargs={
        "catalogue": catalogue, "model": resolve_model(settings, wanted.model), "source": wanted.source,
        "mapping": wanted.mapping, "swap": wanted.swap})
    return jsonify(task_id=task.id, catalogue=catalogue), 202


@bp.post("/catalogues/<catalogue>/promote")
@contract(body=PromoteRequest, answer=Answer, errors=ADMIN_ERRORS)
def promote(catalogue: str):
    """Point the catalogue's alias at one of its versions."""
    wanted = parse_params(PromoteRequest, parse_json_body(required=True))
    return jsonify(promote_version(current_app.config["SHOPSEARCH"], catalogue, wanted.index, client=client()))


@bp.post("/catalogues/<catalogue>/rollback")
@contract(answer=Answer, errors=ADMIN_ERRORS)
def rollback(catalogue: str):
    """Point the catalogue's alias back at the version it served before."""
    return jsonify(rollback_alias(current_app.config["SHOPSEARCH"], catalogue, client=client()))


@bp.get("/status")
@contract(answer=Answer, errors=ADMIN_ERRORS)
def status():
    """Alias -> index -> model, versions, rollout states, events."""
    catalogue = request.args.get("catalogue") or None
    return jsonify(rollout_status(current_app.config["SHOPSEARCH"], catalogue, client=client()))
