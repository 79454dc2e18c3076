"""``/openapi.json``: the middleware's API described in OpenAPI 3.1.

The document is a data file, ``plugin/openapi.json``, read once as a package resource. Edit it
when a route, parameter or response changes; ``tests/test_proxy_safety.py`` checks its shape.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from flask import Blueprint, Flask, jsonify

EXTENSION = "shopsearch.openapi"
bp = Blueprint("openapi", __name__)


def init_app(app: Flask) -> None:
    """Serve ``/openapi.json`` (call before the pass-through blueprint)."""
    app.extensions[EXTENSION] = document()
    app.register_blueprint(bp)


@lru_cache(maxsize=1)
def document() -> dict:
    """The OpenAPI document as a dict (the same object every call; do not mutate it)."""
    return json.loads(resources.files(__package__).joinpath("openapi.json").read_text(encoding="utf-8"))


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(document())
