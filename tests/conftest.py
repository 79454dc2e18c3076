"""Session fixtures: the project's own services, started (or reused) once, never mocked.

If a service cannot start, every test that needs it fails with the service's log tail; nothing
is skipped.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from shopsearch.ops import services as services_mod
from shopsearch.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
# The admin credential of the proxies the tests serve (writes through the pass-through need it).
ADMIN_TOKEN = "test-admin-token"
DATA = ROOT.parent / "shared" / "data"


def pytest_configure(config):
    """The install's own secrets exist before any process (workers included) reads the settings."""
    from shopsearch import local_secrets
    local_secrets.create(load_settings().home)


@pytest.fixture(scope="session")
def settings():
    return load_settings()


@pytest.fixture(scope="session")
def services(settings):
    try:
        return services_mod.up(settings)
    except services_mod.ServiceError as e:
        pytest.fail(f"the project's services could not start:\n{e}", pytrace=False)


@pytest.fixture(scope="session")
def client(services, settings):
    from shopsearch.cluster import connect
    return connect(settings)


@pytest.fixture(scope="session")
def encoder(settings):
    from shopsearch.encoders.text import text_encoder
    return text_encoder(settings)


@pytest.fixture(scope="session")
def celery_app(services, settings):
    from shopsearch.workers.app import make_app
    return make_app(settings)


@pytest.fixture
def catalogue(client):
    """A fresh catalogue name; its index versions are deleted afterwards."""
    name = f"test_{uuid.uuid4().hex[:10]}"
    yield name
    client.indices.delete(index=f"{name}-v*", ignore_unavailable=True, allow_no_indices=True)


def fashion_rows(limit: int, where=lambda row: True) -> list[dict]:
    """Real rows of the shared Myntra catalogue."""
    import csv
    out = []
    with open(DATA / "fashion" / "products.tsv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if where(row):
                out.append(row)
                if len(out) >= limit:
                    break
    return out


@pytest.fixture(scope="session")
def admin_headers():
    """Headers that carry the admin credential of :func:`proxy_url`'s proxy."""
    return {"X-Admin-Token": ADMIN_TOKEN}


def _serve(app):
    import threading

    from werkzeug.serving import make_server
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


@pytest.fixture(scope="session")
def proxy_url(services, settings):
    """The middleware's internal face (pass-through, /admin, and the shopper API) over real HTTP
    (werkzeug's threaded server) on a free port."""
    from shopsearch.plugin.app import create_app
    server = _serve(create_app(settings.replace(admin_token=ADMIN_TOKEN), face="internal"))
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="session")
def public_url(services, settings):
    """The middleware's public face (the shopper API only) over real HTTP on a free port."""
    from shopsearch.plugin.app import create_app
    server = _serve(create_app(settings.replace(admin_token=ADMIN_TOKEN), face="public"))
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
