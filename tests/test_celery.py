"""A task sent from the test process runs in the separate worker process, through Redis."""

import os

from shopsearch.services import worker


def test_a_task_runs_in_the_worker_process_via_redis(celery_app, settings):
    result = celery_app.send_task("shopsearch.ping", args=[{"hello": "worker"}])
    answer = result.get(timeout=60)
    assert answer["echo"] == {"hello": "worker"}
    assert answer["pid"] != os.getpid()
    # the prefork pool child that ran it belongs to the project's worker process
    worker_pid = worker.status(settings)["pid"]
    with open(f"/proc/{answer['pid']}/stat") as f:
        parent = int(f.read().rsplit(")", 1)[1].split()[1])
    assert parent == worker_pid


def test_the_worker_consumes_the_ingest_and_encode_queues(celery_app, services):
    queues = celery_app.control.inspect(timeout=5).active_queues()
    names = {q["name"] for qs in queues.values() for q in qs}
    assert {"ingest", "encode", "celery"} <= names
