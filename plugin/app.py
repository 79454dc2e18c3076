"""App factory: ``create_app(settings)``; serve with ``gunicorn 'shopsearch.plugin.app:create_app()'``.

Boundary modules first (``errors``, ``observability``, ``safety``, ``openapi``), the app's
OpenSearch client (``cluster``), then blueprints
per concern: ``health`` (/healthz), ``shop`` (/shop/<catalogue>/search), and ``passthrough`` (every other path, forwarded to
OpenSearch unchanged). The pass-through is registered last: Werkzeug prefers the more specific
routes of the other blueprints over its catch-all.
"""

from __future__ import annotations

from flask import Flask

from shopsearch.plugin import (admin, cluster, errors, events, health, observability, openapi, passthrough, recommend,
                               safety, shop, storefront)
from shopsearch.settings import Settings, check_secrets, load_settings


def create_app(settings: Settings | None = None) -> Flask:
    """The middleware for ``settings`` (default: read from the environment and the settings file)."""
    settings = settings or load_settings()
    check_secrets(settings)  # no working default secrets: a clear error naming the setting
    app = Flask("shopsearch.plugin")
    app.config["SHOPSEARCH"] = settings
    errors.init_app(app)          # the one table from exceptions to JSON answers
    observability.init_app(app)   # request ids, access log, /metrics (first hook: refused requests count too)
    safety.init_app(app)          # body limit, pass-through deny list
    openapi.init_app(app)         # /openapi.json (the document is made last, from every route)
    cluster.init_app(app)         # the app's one OpenSearch client
    health.init_app(app)
    shop.init_app(app)
    recommend.init_app(app)       # /shop/<catalogue>/recommend/...
    events.init_app(app)          # query ids, impressions and POST /events, through a buffered writer
    admin.init_app(app)           # /admin: token required
    storefront.init_app(app)      # the shop's page at / (browsers), /storefront/...
    passthrough.init_app(app)
    openapi.publish(app)          # from the url map and the contracts (plugin/schemas.py)
    return app
