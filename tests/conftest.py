"""Session fixtures: the project's own services, started (or reused) once, never mocked.

The session runs services of its own (``--services own``, the default): a home, data
directories and ports derived from this clone's path (:func:`isolate`), so a benchmark, a demo
or another checkout on the machine keeps its services whatever the tests stop and start; at the
end it stops what it started, nothing else (``--keep-services`` leaves them for the next run).
``--services env`` uses the services the environment's settings name instead.

If a service cannot start, every test that needs it fails with the service's log tail; nothing
is skipped.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest

from shopsearch.ops import services as services_mod
from shopsearch.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
# The admin credential of the proxies the tests serve (writes through the pass-through need it).
ADMIN_TOKEN = "test-admin-token"
DATA = ROOT.parent / "shared" / "data"


def pytest_addoption(parser):
    parser.addoption("--services", choices=("own", "env"), default="own",
                     help="own: the session's own services, home and ports (default); env: those the settings name")
    parser.addoption("--keep-services", action="store_true", help="Leave the session's own services running at the end.")


def isolate(base_home: Path, root: Path = ROOT) -> dict[str, str]:
    """The settings of a test session of its own for the clone at ``root`` (pure): home, ports, directories.

    One slot of 100 per clone path; the port ranges of the slots do not meet (OpenSearch HTTP
    24000+, its transport 24100+, Redis 24200+; RabbitMQ, derived from Redis, 23493+, its Erlang
    ports 43493+ and 22190+).
    """
    digest = hashlib.sha256(str(root).encode()).hexdigest()
    slot = int(digest, 16) % 100
    home = base_home / "test-sessions" / digest[:10]
    # as root, OpenSearch runs as a service user that cannot enter /root (services/opensearch.py)
    data = Path("/var/lib/shopsearch") / f"test-{digest[:10]}" if os.geteuid() == 0 else home / "opensearch"
    return {"SHOPSEARCH_HOME": str(home), "SHOPSEARCH_OPENSEARCH_URL": f"http://127.0.0.1:{24000 + slot}",
            "SHOPSEARCH_OPENSEARCH_DIR": str(data), "SHOPSEARCH_REDIS_URL": f"redis://127.0.0.1:{24200 + slot}/0",
            "SHOPSEARCH_BROKER_URL": "", "SHOPSEARCH_RESULT_BACKEND": "", "SHOPSEARCH_VECTOR_CACHE_URL": "",
            "SHOPSEARCH_PROXY_PORT": str(24300 + slot)}


def pytest_configure(config):
    """The session's own services (unless ``--services env``), then the install's own secrets, before
    any process (workers included) reads the settings."""
    from shopsearch import local_secrets
    if config.getoption("services") == "own":
        os.environ.update(isolate(load_settings().home_path))
    local_secrets.create(load_settings().home)


@pytest.fixture(scope="session")
def settings():
    return load_settings()


@pytest.fixture(scope="session")
def services(settings, request):
    before = {name: st.get("running") and bool(st.get("pid")) for name, st in services_mod.status(settings).items()}
    try:
        started = services_mod.up(settings)
    except services_mod.ServiceError as e:
        pytest.fail(f"the project's services could not start:\n{e}", pytrace=False)
    yield started
    if request.config.getoption("services") == "own" and not request.config.getoption("keep_services"):
        mine = tuple(name for name, running in before.items() if not running)
        if mine:  # down() with no names stops every service
            services_mod.down(settings, mine)


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
