"""App factory: ``create_app(settings)``; serve with ``gunicorn 'shopsearch.plugin.app:create_app()'``.

Blueprints per concern: ``health`` (/healthz), ``shop`` (/shop/<catalogue>/search), and ``passthrough`` (every other path, forwarded to
OpenSearch unchanged). The pass-through is registered last: Werkzeug prefers the more specific
routes of the other blueprints over its catch-all.
"""

from __future__ import annotations

from flask import Flask

from shopsearch.settings import Settings, load_settings

from . import health, passthrough, shop


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    app = Flask("shopsearch.plugin")
    app.config["SHOPSEARCH"] = settings
    health.init_app(app)
    shop.init_app(app)
    passthrough.init_app(app)
    return app
