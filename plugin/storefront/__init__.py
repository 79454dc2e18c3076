"""The storefront: a shop's search page served by the proxy at ``/``, from files in this package.

``static/`` holds plain HTML, CSS and JavaScript (no CDN, no build step): ``index.html`` with
``storefront.js`` is the shopper's page (search box with suggestions, results grid, facets,
pages, product page, shopper switcher, search by photo), ``admin.html`` with ``admin.js`` the
admin page. The page talks to the proxy's own public routes: ``/storefront/api/...``
(``api.py``, ``photo.py``), ``/shop/<catalogue>/recommend/...`` and ``POST /events``; the admin
page to ``/storefront/api/admin/overview`` (``admin_page.py``, admin credential required).

``GET /`` is the page only for a browser (a request whose ``Accept`` names ``text/html``);
any other ``GET /`` (an OpenSearch client asking the cluster who it is) still passes through on
the internal face (and is a 404 on the public one). The admin page is on the internal face only.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, request, send_from_directory

from shopsearch.plugin.storefront import admin_page, api, photo

STATIC = Path(__file__).parent / "static"
bp = Blueprint("storefront", __name__, static_folder=str(STATIC), static_url_path="/storefront/static")


def init_app(app: Flask, admin: bool = True) -> None:
    """Register the page, its files and its routes (before the pass-through's catch-all); the
    admin page only with ``admin`` (the internal face: the public one takes no admin credential)."""
    app.register_blueprint(bp)
    app.register_blueprint(api.bp)
    photo.init_app(app)
    if admin:
        admin_page.init_app(app)
    app.before_request(_page_for_browsers)


def wants_page() -> bool:
    """Whether this is a browser asking for ``/`` (``text/html`` named in ``Accept``, not only ``*/*``)."""
    return (request.method == "GET" and request.path == "/"
            and any(kind in ("text/html", "application/xhtml+xml") for kind, _ in request.accept_mimetypes))


def _page_for_browsers():
    if wants_page():
        return send_from_directory(STATIC, "index.html", max_age=0)
    return None
