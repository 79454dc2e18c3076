"""A task sent from the test process runs in the separate worker process, through Redis."""

import os

from shopsearch.ops.services import worker


def test_a_task_runs_in_the_worker_process_via_redis(celery_app, settings):
    result = celery_app.send_task("shopsearch.ping", args=[{"hello": "worker"}])
    answer = result.get(timeout=60)
    assert answer["echo"] == {"hello": "worker"}
    assert answer["pid"] != os.getpid()
    # the prefork pool child that ran it belongs to one of the project's worker processes
    with open(f"/proc/{answer['pid']}/stat") as f:
        parent = int(f.read().rsplit(")", 1)[1].split()[1])
    assert parent in worker.pids(settings).values()


def test_the_workers_consume_the_ingest_and_encode_queues_in_separate_processes(celery_app, services):
    queues = celery_app.control.inspect(timeout=5).active_queues()
    by_worker = {w: {q["name"] for q in qs} for w, qs in queues.items()}
    encode = [w for w, names in by_worker.items() if names == {"encode"}]
    ingest = [w for w, names in by_worker.items() if {"ingest", "celery"} <= names]
    assert encode and ingest and encode != ingest


def test_every_task_goes_to_its_queue_by_the_apps_routes_alone():
    """Queues are named once, in ``TASK_ROUTES`` (a task's own ``queue`` is deprecated in Celery 5)."""
    from shopsearch.workers import tasks  # noqa: F401  (registers the tasks)
    from shopsearch.workers.app import app
    ours = sorted(name for name in app.tasks if name.startswith("shopsearch."))
    assert {"shopsearch.rollout.reindex", "shopsearch.finetune.step", "shopsearch.encode.chunk"} <= set(ours)
    routed = {name: app.amqp.router.route({}, name)["queue"].name for name in ours}
    assert routed["shopsearch.rollout.reindex"] == routed["shopsearch.finetune.step"] == "rollout"
    assert routed["shopsearch.encode.chunk"] == "encode"
    assert all(q in {"celery", "ingest", "encode", "rollout"} for q in routed.values()), routed
    assert not [name for name in ours if getattr(app.tasks[name], "queue", None)]


def test_a_worker_at_its_start_sets_up_the_click_logs(services, settings, client):
    """What only the workers' user may do on a secured cluster (``ensure_click_logs``): a worker's
    start puts back the query log's refresh interval and the events' ``stored_at`` pipeline."""
    from shopsearch.index.ubi import STORED_AT_PIPELINE, ensure_ubi_indices
    from shopsearch.ops.services.process import wait_until

    ensure_ubi_indices(client, settings)
    client.indices.put_settings(index=settings.ubi_queries_index, body={"index": {"refresh_interval": "1s"}})

    def interval() -> str:
        found = client.indices.get_settings(index=settings.ubi_queries_index, name="index.refresh_interval")
        return found[settings.ubi_queries_index]["settings"]["index"]["refresh_interval"]

    assert interval() == "1s"
    assert worker.kill(settings, "rollout"), "no rollout worker was running"
    worker.start(settings)
    wait_until(lambda: interval() == "30s", 120, "the restarted worker's click-log set-up")
    assert STORED_AT_PIPELINE in client.ingest.get_pipeline(id=STORED_AT_PIPELINE)
