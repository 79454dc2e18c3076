"""docker/'s security, for real: a node with OpenSearch's security plugin on, secured by the
files the compose deployment uses (``tests/secured_node.py``: docker/security/init.sh's
certificates and users, its roles and the compose file's ``plugins.security.*`` settings).
Each project user can do its job over TLS and nothing more; the proxy's faces work as their
least-privilege users (searches, search by photo, events, the click-log indices, forgetting a
shopper, promote and rollback); the workers learn from the click logs as theirs; the internal face's pass-through
forwards the caller's own credentials and never lends its own."""

import io
import json
import os
import socket
import uuid
from pathlib import Path

import pytest

from shopsearch.cluster import connect
from shopsearch.index.api_keys import create_key
from shopsearch.index.ubi import ensure_ubi_indices
from shopsearch.ingest.in_process import InProcessRunner
from shopsearch.ingest.pipeline import run_ingest
from shopsearch.learn.popularity import update_popularity
from shopsearch.learn.profile_update import recent_catalogues, update_profiles
from shopsearch.learn.reindex import reindex
from shopsearch.learn.training_data import collect
from shopsearch.plugin.app import create_app
from shopsearch.privacy import pseudonym
from shopsearch.workers.tasks import ensure_click_logs

from . import secured_node
from .conftest import DATA

ADMIN_TOKEN = "secured-cluster-admin-token"


def _free_port() -> int:
    for port in range(9290, 9390):  # the transport port is port + 100: both must be free
        if all(socket.socket().connect_ex(("127.0.0.1", p)) != 0 for p in (port, port + 100)):
            return port
    raise RuntimeError("no free port pair for the secured node")


@pytest.fixture(scope="module")
def node(settings, tmp_path_factory):
    base = Path("/var/lib/shopsearch") if os.geteuid() == 0 else tmp_path_factory.mktemp("secured")
    started = secured_node.start(settings, base / f"secured-{uuid.uuid4().hex[:8]}", _free_port())
    yield started
    secured_node.stop(started)


def _as(settings, node, user: str):
    return settings.replace(opensearch_url=node.url_as(user), opensearch_ca_certs=str(node.ca), admin_token=ADMIN_TOKEN)


@pytest.fixture(scope="module")
def shop(settings, node):
    """50 real products with their pictures ingested over TLS by the workers' user, through the ingest pipeline."""
    worker = _as(settings, node, "shopsearch-worker")
    client = connect(worker, timeout=120)
    summary = run_ingest(worker, DATA / "fashion" / "products.tsv", "secshop", mapping="fashion", limit=50,
                         images=DATA / "fashion", runner=InProcessRunner(worker, client))
    assert summary.indexed == 50
    return "secshop"


def test_nobody_gets_in_without_credentials_and_nothing_is_plain_http(node):
    import http.client
    import urllib.request
    assert node.request("GET", "/", user=None)[0] == 401
    with pytest.raises((http.client.HTTPException, OSError)):
        urllib.request.urlopen(node.url.replace("https://", "http://") + "/", timeout=10).read()


SETTINGS_BODY = json.dumps({"transient": {"cluster.routing.allocation.enable": "none"}}).encode()
SCRIPT_BODY = json.dumps({"script": {"lang": "painless", "source": "1"}}).encode()


@pytest.mark.parametrize("user", ["shopsearch-public", "shopsearch-internal", "shopsearch-worker"])
def test_no_project_user_can_change_cluster_settings_scripts_or_snapshots(node, shop, user):
    assert node.request("PUT", "/_cluster/settings", user, SETTINGS_BODY)[0] == 403
    assert node.request("PUT", "/_scripts/planted", user, SCRIPT_BODY)[0] == 403
    assert node.request("PUT", "/_snapshot/planted", user, b'{"type": "fs", "settings": {"location": "/tmp"}}')[0] == 403
    assert node.request("GET", "/.opendistro_security/_search", user)[0] == 403


@pytest.fixture(scope="module")
def click_logs(settings, node):
    """The public face started on the fresh node, before anything wrote to the click logs."""
    assert node.request("GET", "/ubi_queries")[0] == 404 and node.request("GET", "/ubi_events")[0] == 404
    app = create_app(_as(settings, node, "shopsearch-public").replace(event_flush_seconds=0.2), face="public")
    app.extensions["shopsearch.events"].close()
    return app


def test_the_public_user_reads_catalogues_and_writes_events_but_cannot_touch_a_catalogue(node, shop, click_logs):
    user = "shopsearch-public"
    assert node.request("GET", f"/{shop}/_search?q=shirt", user)[0] == 200
    assert node.request("POST", "/ubi_events/_doc", user, b'{"action_name": "click"}')[0] == 201
    assert node.request("PUT", f"/{shop}/_doc/planted", user, b'{"title": "planted"}')[0] == 403
    assert node.request("PUT", f"/{shop}/_mapping", user, b'{"properties": {"x": {"type": "keyword"}}}')[0] == 403
    assert node.request("POST", "/_aliases", user, json.dumps(
        {"actions": [{"remove": {"index": f"{shop}-v1", "alias": shop}}]}).encode())[0] == 403
    assert node.request("DELETE", f"/{shop}-v1", user)[0] == 403


def test_the_internal_user_moves_aliases_but_cannot_write_or_delete_a_catalogue(node, shop):
    user = "shopsearch-internal"
    move = {"actions": [{"add": {"index": f"{shop}-v1", "alias": f"{shop}-probe"}}]}
    assert node.request("POST", "/_aliases", user, json.dumps(move).encode())[0] == 200
    assert node.request("PUT", f"/{shop}/_doc/planted", user, b'{"title": "planted"}')[0] == 403
    assert node.request("DELETE", f"/{shop}-v1", user)[0] == 403


def test_the_public_face_serves_shoppers_over_tls_as_its_least_privilege_user(settings, node, shop):
    app = create_app(_as(settings, node, "shopsearch-public").replace(event_flush_seconds=0.2), face="public")
    web = app.test_client()
    assert web.get("/healthz").get_json()["cluster"] in ("green", "yellow")
    answer = web.get(f"/shop/{shop}/search", query_string={"q": "shirt", "user": "zoe"}).get_json()
    assert answer["hits"], answer
    click = {"user_id": "zoe", "action_name": "click", "query_id": answer["query_id"],
             "object_id": answer["hits"][0]["id"], "position": 1, "event_id": f"secured-{uuid.uuid4().hex}"}
    assert web.post("/events", json=[click], headers={"X-Event-Token": answer["event_token"]}).status_code == 202
    app.extensions["shopsearch.events"].flush()
    status, body = node.request("GET", f"/ubi_events/_doc/{click['event_id']}")
    assert status == 200 and json.loads(body)["found"]
    app.extensions["shopsearch.events"].close()


def test_the_public_face_searches_by_photo_as_its_least_privilege_user(settings, node, shop):
    """Search by photo reads what a text search does not: the version's ``_meta`` (the image
    projection's file), k-NN on ``image_vector`` and the facet counts, all as the public user."""
    ingested = [line.split("\t")[0] for line in (DATA / "fashion" / "products.tsv").read_text().splitlines()[1:51]]
    pictured = [item for item in ingested if (DATA / "fashion" / "images" / f"{item}.jpg").exists()]
    app = create_app(_as(settings, node, "shopsearch-public").replace(event_flush_seconds=0.2), face="public")
    try:
        picture = (DATA / "fashion" / "images" / f"{pictured[0]}.jpg").read_bytes()
        answer = app.test_client().post(f"/storefront/api/{shop}/photo", data={"image": (io.BytesIO(picture), "photo.jpg"),
                                                                               "user": "pia"})
        assert answer.status_code == 200, answer.get_json()
        body = answer.get_json()
        assert body["strategy"] == "photo" and body["query_id"] and body["event_token"]
        assert pictured[0] in [h["id"] for h in body["hits"][:3]]
    finally:
        app.extensions["shopsearch.events"].close()


def test_the_internal_face_forwards_the_callers_credentials_and_never_lends_its_own(settings, node, shop):
    local = _as(settings, node, "shopsearch-internal").replace(passthrough_forward_auth=True)
    app = create_app(local, face="internal")
    web = app.test_client()

    def basic(user):
        import base64
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secured_node.PASSWORDS[user]}".encode()).decode()}

    # the caller's own rights decide: the public user may not, the operators' admin may
    assert web.put("/_scripts/planted", data=SCRIPT_BODY, headers=basic("shopsearch-public"),
                   content_type="application/json").status_code == 403
    assert web.put("/_scripts/planted", data=SCRIPT_BODY, headers=basic("admin"),
                   content_type="application/json").status_code == 200
    # the proxy's admin token opens the pass-through, but the request reaches the cluster without
    # any credential: the proxy's own user is never lent to it
    assert web.get("/_cluster/settings", headers={"X-Admin-Token": ADMIN_TOKEN}).status_code == 401
    # and without any credential the allow-list refuses before anything is forwarded
    assert web.put("/_scripts/planted", data=SCRIPT_BODY, content_type="application/json").status_code == 403
    # a catalogue read on the allow-list still works for anyone (forwarded without credentials,
    # so a secured cluster asks for them)
    assert web.get(f"/{shop}/_count").status_code == 401
    assert web.get(f"/{shop}/_count", headers=basic("shopsearch-public")).get_json()["count"] == 50


def test_the_click_log_indices_get_their_mappings_from_the_faces_and_their_pipeline_from_the_workers(
        settings, node, click_logs):
    """The faces' users may create the click-log indices but not put an ingest pipeline or change
    index settings; the workers' user may, and does at each worker's start. So the indices have
    their strict mappings before any search is recorded, and then the events' ``stored_at``
    pipeline and the query log's refresh interval."""
    def mapping(index: str) -> dict:
        status, body = node.request("GET", f"/{index}/_mapping")
        assert status == 200, body
        return json.loads(body)[index]["mappings"]

    def index_settings(index: str) -> dict:
        return json.loads(node.request("GET", f"/{index}/_settings")[1])[index]["settings"]["index"]

    assert mapping("ubi_queries")["dynamic"] == "strict" and mapping("ubi_events")["dynamic"] == "strict"
    assert mapping("ubi_queries")["properties"]["impressions"]["type"] == "nested"
    assert index_settings("ubi_queries")["refresh_interval"] == "30s"  # given when the face made it
    public = connect(_as(settings, node, "shopsearch-public"), timeout=30)
    assert ensure_ubi_indices(public, settings) == ["the events' stored_at pipeline", "the query log's refresh interval"]
    assert "default_pipeline" not in index_settings("ubi_events")

    assert ensure_click_logs(_as(settings, node, "shopsearch-worker")) == []  # what a worker does at its start
    assert index_settings("ubi_events")["default_pipeline"] == "shopsearch_stored_at"
    status, body = node.request("POST", "/ubi_events/_doc?refresh=true", "shopsearch-public",
                                json.dumps({"action_name": "click", "event_id": "stamped"}).encode())
    assert status == 201, body
    stored = json.loads(node.request("GET", f"/ubi_events/_doc/{json.loads(body)['_id']}")[1])["_source"]
    assert stored["stored_at"]  # stamped by the cluster's clock, whoever wrote it


def test_the_internal_face_forgets_a_shopper_as_its_own_user(settings, node, shop, click_logs):
    """``DELETE /admin/users/<id>`` (a shopper's right to be forgotten) on the secured cluster: the
    internal face's user finds and deletes the shopper's events, recorded queries and profile."""
    public = create_app(_as(settings, node, "shopsearch-public").replace(event_flush_seconds=0.2), face="public")
    web = public.test_client()
    answer = web.get(f"/shop/{shop}/search", query_string={"q": "shirt", "user": "wendy"}).get_json()
    click = {"user_id": "wendy", "action_name": "click", "query_id": answer["query_id"],
             "object_id": answer["hits"][0]["id"], "position": 1, "event_id": f"forget-{uuid.uuid4().hex}"}
    assert web.post("/events", json=[click], headers={"X-Event-Token": answer["event_token"]}).status_code == 202
    public.extensions["shopsearch.events"].close()
    internal = create_app(_as(settings, node, "shopsearch-internal"), face="internal")
    try:
        gone = internal.test_client().delete("/admin/users/wendy", headers={"X-Admin-Token": ADMIN_TOKEN})
        assert gone.status_code == 200, gone.get_json()
        assert gone.get_json()["deleted"]["ubi_events"] == 1 and gone.get_json()["deleted"]["ubi_queries"] == 1
    finally:
        internal.extensions["shopsearch.events"].close()
    assert node.request("GET", f"/ubi_events/_doc/{click['event_id']}")[0] == 404


def test_the_internal_face_promotes_and_rolls_back_as_its_own_user(settings, node, shop):
    """``/admin`` promote and rollback on the secured cluster, as the internal face's user: a second
    version (made by the workers' user) goes behind the alias, then the first comes back."""
    worker = _as(settings, node, "shopsearch-worker")
    built = reindex(worker, shop, runner=InProcessRunner(worker, connect(worker, timeout=120)), swap=False)
    assert (built["index"], built["step"]) == (f"{shop}-v2", "verified"), built
    internal = create_app(_as(settings, node, "shopsearch-internal"), face="internal")
    web, admin = internal.test_client(), {"X-Admin-Token": ADMIN_TOKEN}
    try:
        promoted = web.post(f"/admin/catalogues/{shop}/promote", headers=admin, json={"index": f"{shop}-v2"})
        assert promoted.status_code == 200, promoted.get_json()
        assert (promoted.get_json()["index"], promoted.get_json()["previous"]) == (f"{shop}-v2", f"{shop}-v1")
        back = web.post(f"/admin/catalogues/{shop}/rollback", headers=admin, json={})
        assert back.status_code == 200, back.get_json()
        assert back.get_json()["index"] == f"{shop}-v1"
    finally:
        internal.extensions["shopsearch.events"].close()
    aliased = json.loads(node.request("GET", f"/_alias/{shop}")[1])
    assert list(aliased) == [f"{shop}-v1"]


def test_the_workers_learn_from_the_click_logs_as_their_own_user(settings, node, shop, click_logs):
    """A shopper's purchase through the public face, then what the workers' tasks make of the click
    logs, as the workers' user: the periodic run finds the catalogue, the shopper's profile, the
    catalogue's popularity, the training data of ``shopsearch train --clicks-since``, and the public
    face's "for you" from that profile."""
    public = create_app(_as(settings, node, "shopsearch-public").replace(event_flush_seconds=0.2), face="public")
    web = public.test_client()
    answer = web.get(f"/shop/{shop}/search", query_string={"q": "shirt", "user": "pam"}).get_json()
    bought = answer["hits"][0]["id"]
    purchase = {"user_id": "pam", "action_name": "purchase", "query_id": answer["query_id"], "object_id": bought,
                "position": 1}
    assert web.post("/events", json=[purchase], headers={"X-Event-Token": answer["event_token"]}).status_code == 202
    public.extensions["shopsearch.events"].close()
    worker = _as(settings, node, "shopsearch-worker")
    client = connect(worker, timeout=60)
    assert shop in recent_catalogues(client, worker, "2000-01-01T00:00:00Z")
    profiles = update_profiles(client, worker, shop, users=[pseudonym("pam", worker.pseudonym_salt)])
    assert profiles["profiles_updated"] == 1
    assert update_popularity(client, worker, shop)["products_updated"] >= 1
    data = collect(client, worker, shop, since="2000-01-01T00:00:00Z")
    assert bought in {e.positive_id for e in data.train + data.valid}
    public = create_app(_as(settings, node, "shopsearch-public"), face="public")  # and the shopper's profile serves
    try:
        for_you = public.test_client().get(f"/shop/{shop}/recommend/for-you", query_string={"user": "pam"})
        assert for_you.status_code == 200 and for_you.get_json()["hits"], for_you.get_json()
        assert for_you.get_json()["strategy"] == "profile-knn"  # from the profile, not the cold-start fallback
    finally:
        public.extensions["shopsearch.events"].close()


def test_an_admin_api_key_opens_admin_on_the_secured_cluster(settings, node, shop):
    """The internal face looks API keys up as its own user (``shopsearch-keys``, hashes only): an
    operator's admin key opens ``/admin``, a key nobody made is refused, neither is a 500."""
    operators = _as(settings, node, "admin")
    _, secret = create_key(connect(operators, timeout=60), operators, f"ops-{uuid.uuid4().hex[:6]}", "admin")
    internal = create_app(_as(settings, node, "shopsearch-internal"), face="internal")
    web = internal.test_client()
    try:
        assert web.get("/admin/status", headers={"X-Api-Key": secret}).status_code == 200
        forged = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
        assert web.get("/admin/status", headers={"X-Api-Key": forged}).status_code == 401
    finally:
        internal.extensions["shopsearch.events"].close()


def test_a_face_whose_user_lacks_a_right_says_so_with_a_502_not_a_500(settings, node, shop):
    """A misconfigured deployment: the internal face run with the public face's user. An admin route
    that user may not serve answers 502 ``opensearch_refused``, telling the operator where to look."""
    wrong = create_app(_as(settings, node, "shopsearch-public"), face="internal")
    try:
        answer = wrong.test_client().post(f"/admin/catalogues/{shop}/promote", headers={"X-Admin-Token": ADMIN_TOKEN},
                                          json={"index": f"{shop}-v1"})
        assert answer.status_code == 502 and answer.get_json()["error"] == "opensearch_refused", answer.get_json()
        assert "role" in answer.get_json()["message"]
    finally:
        wrong.extensions["shopsearch.events"].close()
