"""A worker killed with SIGKILL at any moment loses nothing, with production defaults (an hour's
``task_visibility_timeout``): RabbitMQ gives a dead consumer's unacknowledged tasks back at once."""

import threading
import time

from shopsearch.index.versions import list_versions, live_index
from shopsearch.ops.services import worker
from shopsearch.workers.dispatch import run_ingest

from .conftest import DATA

PRODUCTS = DATA / "homedepot" / "products.tsv"


def _written(client, index):
    """Documents written into ``index`` so far, refreshed or not (a run turns refresh off while it writes)."""
    stats = client.indices.stats(index=index, metric="indexing")
    return stats["_all"]["primaries"]["indexing"]["index_total"] if stats["indices"] else 0


def _wait_for(check, seconds=300):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_the_session_runs_with_production_defaults_on_rabbitmq(settings):
    assert settings.task_visibility_timeout == 3600
    assert settings.broker.startswith("amqp://")


def test_a_worker_killed_mid_ingest_loses_and_duplicates_nothing(client, settings, catalogue):
    outcome = {}

    def ingest():
        outcome["summary"] = run_ingest(settings, PRODUCTS, catalogue, mapping="homedepot", limit=600, chunk_size=50)

    thread = threading.Thread(target=ingest)
    thread.start()
    assert _wait_for(lambda: client.indices.exists(index=catalogue) and _written(client, catalogue) >= 50)
    assert thread.is_alive(), "the ingest ended before the kill"
    assert worker.kill(settings), "no worker was running"
    worker.start(settings)
    thread.join(timeout=600)
    summary = outcome["summary"]
    assert summary.complete, summary.as_dict()
    client.indices.refresh(index=catalogue)
    assert client.count(index=catalogue)["count"] == summary.accepted == 600 - summary.superseded - sum(summary.rejected.values())


def test_a_reindex_coordinator_killed_mid_fill_is_delivered_again_and_finishes_its_one_version(
        client, settings, catalogue, celery_app):
    assert run_ingest(settings, PRODUCTS, catalogue, mapping="homedepot", limit=300).complete
    result = celery_app.send_task("shopsearch.rollout.reindex", args=[catalogue, "usem3"])
    target = f"{catalogue}-v2"

    def filling():
        versions = {v.index: v for v in list_versions(client, catalogue)}
        return (target in versions and versions[target].meta.get("rollout", {}).get("run_id") == result.id
                and _written(client, target) > 0)
    assert _wait_for(filling)
    assert worker.kill(settings, "rollout"), "no rollout worker was running"
    killed_at = {v.index: v.meta["rollout"]["step"] for v in list_versions(client, catalogue) if v.index == target}
    assert killed_at == {target: "created"}  # it died while filling
    worker.start(settings)
    state = result.get(timeout=600)
    assert state["index"] == target and state["step"] == "swapped" and state["run_id"] == result.id
    assert [v.index for v in list_versions(client, catalogue)] == [f"{catalogue}-v1", target]  # no third version
    assert live_index(client, catalogue) == target
    client.indices.refresh(index=target)
    assert client.count(index=target)["count"] == client.count(index=f"{catalogue}-v1")["count"]
