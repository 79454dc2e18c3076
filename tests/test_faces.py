"""The middleware's two faces: the public face answers shoppers only; the internal face carries
the pass-through and /admin. ``shopsearch serve`` runs each on its own listener (real gunicorn,
real OpenSearch)."""

import os
import socket
import subprocess
import sys

import pytest
import requests
from opensearchpy import helpers

from shopsearch.ops import serve
from shopsearch.ops.services.process import ServiceError, wait_until


@pytest.fixture
def shop(client, catalogue):
    """A catalogue alias over ``<catalogue>-v1`` with three shoes (BM25 only: no vectors needed)."""
    index = f"{catalogue}-v1"
    client.indices.create(index=index, body={"mappings": {"properties": {"title": {"type": "text"}}}})
    helpers.bulk(client, [{"_index": index, "_id": str(i), "title": f"black running shoe {i}"} for i in range(3)],
                 refresh=True)
    client.indices.put_alias(index=index, name=catalogue)
    return catalogue


OPENSEARCH_PATHS = ["/", "/_cluster/health", "/_cluster/settings", "/_cat/indices", "/_nodes", "/_scripts/x",
                    "/ubi_events/_search", "/_aliases", "/_bulk", "/_msearch", "/%5Fcat/indices"]


@pytest.mark.parametrize("path", OPENSEARCH_PATHS)
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_the_public_face_forwards_nothing_to_opensearch_even_with_the_admin_token(public_url, admin_headers, path,
                                                                                  method):
    r = requests.request(method, public_url + path, headers=admin_headers, data=b"{}", timeout=30)
    assert r.status_code in (404, 405), (path, r.status_code, r.text[:200])
    assert r.json()["error"] in ("not_found", "method_not_allowed")


def test_a_catalogue_index_is_read_through_the_internal_face_but_not_the_public_one(public_url, proxy_url, shop):
    assert requests.get(f"{proxy_url}/{shop}/_count", timeout=30).json()["count"] == 3
    assert requests.get(f"{public_url}/{shop}/_count", timeout=30).status_code == 404


def test_admin_routes_exist_only_on_the_internal_face(public_url, proxy_url, admin_headers):
    assert requests.get(f"{proxy_url}/admin/status", headers=admin_headers, timeout=60).status_code == 200
    assert requests.get(f"{public_url}/admin/status", headers=admin_headers, timeout=60).status_code == 404


def test_the_public_face_takes_no_admin_credential_for_a_shoppers_explain(public_url, proxy_url, admin_headers, shop):
    params = {"q": "shoe", "user": "alice", "explain": "true", "strategy": "bm25"}
    refused = requests.get(f"{public_url}/shop/{shop}/search", params=params, headers=admin_headers, timeout=60)
    assert refused.status_code == 403
    assert refused.json()["field"] == "explain" and "internal face" in refused.json()["message"]
    assert requests.get(f"{proxy_url}/shop/{shop}/search", params=params, headers=admin_headers,
                        timeout=60).status_code == 200


def test_shoppers_search_and_post_their_events_on_the_public_face(public_url, shop):
    answer = requests.get(f"{public_url}/shop/{shop}/search", params={"q": "running shoe", "user": "bob",
                                                                     "strategy": "bm25"}, timeout=60).json()
    assert [hit["id"] for hit in answer["hits"]]
    event = {"user_id": "bob", "action_name": "click", "query_id": answer["query_id"],
             "object_id": answer["hits"][0]["id"], "position": 1}
    r = requests.post(f"{public_url}/events", json=[event], headers={"X-Event-Token": answer["event_token"]},
                      timeout=30)
    assert r.status_code == 202
    assert requests.get(f"{public_url}/healthz", timeout=60).json()["status"] == "ok"


def test_metrics_are_on_the_internal_face_and_off_the_public_one(public_url, proxy_url):
    assert requests.get(f"{proxy_url}/metrics", timeout=30).status_code == 200
    assert requests.get(f"{public_url}/metrics", timeout=30).status_code == 404


def test_each_faces_openapi_document_lists_only_its_own_routes(public_url, proxy_url):
    public = requests.get(f"{public_url}/openapi.json", timeout=30).json()["paths"]
    internal = requests.get(f"{proxy_url}/openapi.json", timeout=30).json()["paths"]
    assert "/shop/{catalogue}/search" in public and "/events" in public
    assert not [p for p in public if p.startswith("/admin") or "{path}" in p]
    assert any(p.startswith("/admin") for p in internal) and any("{path}" in p for p in internal)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_runs_both_faces_on_their_own_listeners(services, settings, shop, tmp_path, admin_headers):
    ADMIN_TOKEN = admin_headers["X-Admin-Token"]
    local = settings.replace(proxy_port=_free_port(), internal_port=_free_port(), proxy_workers=1, proxy_threads=2,
                             admin_token=ADMIN_TOKEN)
    env_settings = {"SHOPSEARCH_PROXY_PORT": str(local.proxy_port), "SHOPSEARCH_INTERNAL_PORT": str(local.internal_port),
                    "SHOPSEARCH_PROXY_WORKERS": "1", "SHOPSEARCH_PROXY_THREADS": "2", "SHOPSEARCH_ADMIN_TOKEN": ADMIN_TOKEN,
                    "SHOPSEARCH_PROXY_GC_THRESHOLD": "12345"}
    old = {k: os.environ.get(k) for k in env_settings}
    os.environ.update(env_settings)  # the gunicorn children read their settings from the environment
    try:
        faces = serve.start(local, log_dir=tmp_path)
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    try:
        public, internal = faces
        assert (public.name, internal.name) == ("public", "internal")
        assert public.url.endswith(f":{local.proxy_port}") and internal.url.endswith(f":{local.internal_port}")
        assert requests.get(f"{internal.url}/{shop}/_count", timeout=30).json()["count"] == 3
        assert requests.get(f"{public.url}/{shop}/_count", timeout=30).status_code == 404
        hits = requests.get(f"{public.url}/shop/{shop}/search", params={"q": "shoe", "strategy": "bm25"},
                            timeout=60).json()["hits"]
        assert len(hits) == 3
        # each face's worker loaded the live catalogues as it started (warm_catalogues, plugin/serving.py)
        warmed = f"warmed catalogue {shop}: {{'index': '{shop}-v1'"
        for face in faces:
            wait_until(lambda: warmed in (tmp_path / f"{face.name}.log").read_text(), 120, f"the {face.name} face's warm-up")
            # and collects garbage at the threshold its settings give (proxy_gc_threshold), not Python's 700
            assert "garbage collector thresholds (12345, " in (tmp_path / f"{face.name}.log").read_text()
    finally:
        serve.stop(faces)
    assert all(face.process.poll() is not None for face in faces)


def test_serve_refuses_to_start_without_real_secrets(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "SHOPSEARCH_HOME": str(tmp_path), "SHOPSEARCH_PSEUDONYM_SALT": "change-me",
           "SHOPSEARCH_ADMIN_TOKEN": "x" * 32}
    done = subprocess.run([sys.executable, "-m", "shopsearch", "serve"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "pseudonym_salt" in done.stderr and "SHOPSEARCH_PSEUDONYM_SALT" in done.stderr


def test_a_face_that_cannot_start_is_an_error_with_its_log(settings, tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = settings.replace(proxy_port=squatter.getsockname()[1])
        with pytest.raises(ServiceError, match="public face"):
            serve.start(taken, faces=("public",), log_dir=tmp_path, timeout=60)
