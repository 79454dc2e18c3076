"""App factory: ``create_app(settings, face)``, one app per face, each on its own listener.

* ``public``: the shopper API (search, recommend, events, health, the storefront). No
  pass-through, no ``/admin``, and no admin credential is accepted on it: a path it does not
  answer is a 404, never a request to OpenSearch. This is the face to expose.
* ``internal``: the OpenSearch-compatible face for the shop's own systems: the allow-listed
  pass-through (``ext.shopsearch`` opt-in included), ``/admin``, ``/metrics`` and the shopper API
  too (an operator's explain of a shopper's search needs the admin credential there).

``shopsearch serve`` runs both (``shopsearch/ops/serve.py``), under gunicorn:
``gunicorn -c python:shopsearch.plugin.serving "shopsearch.plugin.app:create_app(face='public')"``.

Boundary modules first (``errors``, ``observability``, ``safety``, ``openapi``), the app's
OpenSearch client (``cluster``), then blueprints per concern. The pass-through is registered
last: Werkzeug prefers the more specific routes of the other blueprints over its catch-all.
"""

from __future__ import annotations

from flask import Flask

from shopsearch.errors import SettingsError
from shopsearch.plugin import (admin, cluster, errors, events, health, observability, openapi, passthrough, recommend,
                               safety, shop, storefront)
from shopsearch.settings import Settings, check_secrets, load_settings

FACES = ("public", "internal")


def create_app(settings: Settings | None = None, face: str = "public") -> Flask:
    """The middleware's ``face`` for ``settings`` (default: read from the environment and the settings file)."""
    if face not in FACES:
        raise SettingsError(f"face must be one of {', '.join(FACES)}, not {face!r}", field="face")
    settings = settings or load_settings()
    check_secrets(settings)  # no working default secrets: a clear error naming the setting
    app = Flask("shopsearch.plugin")
    app.config["SHOPSEARCH"] = settings
    app.config["SHOPSEARCH_FACE"] = face
    internal = face == "internal"
    errors.init_app(app)          # the one table from exceptions to JSON answers
    observability.init_app(app, metrics=internal or settings.public_metrics)  # request ids, access log, /metrics
    safety.init_app(app)          # body limit, pass-through allow-list, which credentials this face takes
    openapi.init_app(app)         # /openapi.json (the document is made last, from every route)
    cluster.init_app(app)         # the app's one OpenSearch client and raw HTTP session
    health.init_app(app)
    shop.init_app(app)
    recommend.init_app(app)       # /shop/<catalogue>/recommend/...
    events.init_app(app)          # query ids, impressions and POST /events, through a buffered writer
    storefront.init_app(app, admin=internal)  # the shop's page at / (browsers), /storefront/...; its admin page inside
    if internal:
        admin.init_app(app)       # /admin: token required
        passthrough.init_app(app)
    openapi.publish(app)          # from the url map and the contracts (plugin/schemas.py)
    return app
