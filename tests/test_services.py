"""The project starts its own OpenSearch (with k-NN), Redis and Celery worker on 127.0.0.1."""

import os
import socket

import pytest

from shopsearch.ops import services as services_mod
from shopsearch.ops.services import opensearch
from shopsearch.ops.services import redis
from shopsearch.ops.services.process import ServiceError


def test_status_reports_every_service_running(services, settings):
    status = services_mod.status(settings)
    assert set(status) == {"opensearch", "redis", "rabbitmq", "worker"}
    assert all(s["running"] for s in status.values()), status


def test_opensearch_runs_with_the_knn_plugin_and_is_green(services, settings):
    st = opensearch.status(settings)
    assert "opensearch-knn" in st["plugins"]
    assert st["health"] == "green"
    assert st["version"] == settings.opensearch_version


def test_opensearch_does_not_run_as_root(services, settings):
    pid = int(opensearch.layout(settings).pidfile.read_text())
    assert os.stat(f"/proc/{pid}").st_uid != 0


def test_starting_twice_is_idempotent(services, settings):
    first = services_mod.up(settings)
    again = services_mod.up(settings)
    assert {n: s["pid"] for n, s in again.items()} == {n: s["pid"] for n, s in first.items()}
    assert all(first[n]["pid"] for n in first)


@pytest.mark.parametrize("service", [redis, opensearch])
def test_a_port_already_taken_gives_a_clear_error(services, settings, tmp_path, service):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        elsewhere = settings.replace(home=str(tmp_path), opensearch_dir=str(tmp_path / "os"),
                                     redis_url=f"redis://127.0.0.1:{port}/0",
                                     opensearch_url=f"http://127.0.0.1:{port}")
        with pytest.raises(ServiceError, match=rf"port 127\.0\.0\.1:{port} is already taken"):
            service.start(elsewhere)


def test_bench_ingest_counts_the_cpu_of_each_service_the_pipeline_runs_on(services, settings):
    from shopsearch.ops.bench_ingest import service_pids
    from shopsearch.ops.cpu import family_cpu_seconds
    from shopsearch.ops.services import worker
    pids, not_here = service_pids(settings)
    assert not_here == []
    assert set(pids) == {"opensearch", *(f"worker {g}" for g in worker.groups(settings))}
    assert pids["opensearch"] == int(opensearch.layout(settings).pidfile.read_text())
    assert all(family_cpu_seconds(pid) > 0 for pid in pids.values())  # a started JVM and Python workers have run
    assert family_cpu_seconds(2 ** 22 + 1) is None  # above Linux's largest pid: no such process
