"""OpenSearch stopped and started again under work: an ingest, shopper searches and events.

The session's own node is restarted (its services are the session's, on their own ports)."""

import threading
import time

import pytest

from shopsearch.ops.services import opensearch
from shopsearch.privacy import pseudonym
from shopsearch.workers.dispatch import run_ingest

from .conftest import ADMIN_TOKEN, DATA

PRODUCTS = DATA / "homedepot" / "products.tsv"


def _written(client, index):
    """Documents written into ``index`` so far, refreshed or not (a run turns refresh off while it writes)."""
    stats = client.indices.stats(index=index, metric="indexing")
    return stats["_all"]["primaries"]["indexing"]["index_total"] if stats["indices"] else 0


def _until(check, seconds=180):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except Exception:  # the node is still starting
            pass
        time.sleep(0.5)
    return False


@pytest.fixture
def restart(services, settings):
    """Stop the session's node; ``restart.start()`` brings it back (also after a failed test)."""
    class Restart:
        def stop(self):
            assert opensearch.stop(settings), "the session's OpenSearch was not running"

        def start(self):
            opensearch.start(settings)
    r = Restart()
    yield r
    opensearch.start(settings)


def test_every_item_accepted_during_an_opensearch_restart_ends_indexed(client, settings, catalogue, restart):
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(summary=run_ingest(
        settings, PRODUCTS, catalogue, mapping="homedepot", limit=600, chunk_size=50)))
    thread.start()
    assert _until(lambda: _written(client, catalogue) >= 50)
    assert thread.is_alive(), "the ingest ended before the restart"
    restart.stop()
    restart.start()
    thread.join(timeout=900)
    summary = outcome["summary"]
    assert summary.complete, summary.as_dict()
    client.indices.refresh(index=catalogue)
    assert client.count(index=catalogue)["count"] == summary.accepted


def test_searches_answer_503_in_an_outage_and_events_posted_then_are_stored(client, settings, catalogue, restart):
    from shopsearch.plugin.app import create_app
    assert run_ingest(settings, PRODUCTS, catalogue, mapping="homedepot", limit=30).complete
    app = create_app(settings.replace(admin_token=ADMIN_TOKEN), face="internal")
    web = app.test_client()
    search = lambda q="door lock": web.get(f"/shop/{catalogue}/search", query_string={"q": q})
    assert search().status_code == 200
    restart.stop()
    assert search().get_json()["cached"]  # an answer cached before the outage is still given
    during = search("garden hose")
    assert during.status_code == 503, during.get_json()
    who = f"outage_{catalogue}"
    events = [{"user_id": who, "action_name": "click", "object_id": str(i), "catalogue": catalogue} for i in range(10)]
    posted = web.post("/events", json=events, headers={"X-Admin-Token": ADMIN_TOKEN})
    assert posted.status_code == 202, posted.get_json()
    restart.start()
    assert _until(lambda: search("wood stain").status_code == 200, 60)

    def stored():
        app.extensions["shopsearch.events"].flush()
        client.indices.refresh(index=settings.ubi_events_index)
        return client.count(index=settings.ubi_events_index, body={"query": {"term": {
            "user_id": pseudonym(who, settings.pseudonym_salt)}}})["count"]
    assert _until(lambda: stored() == 10, 60)
