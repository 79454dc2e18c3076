"""Races between writers, on real services: each test makes the interleaving happen (another
writer acts between a read and a write) and checks that nothing written is lost."""

import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from opensearchpy import ConflictError, helpers

from shopsearch.errors import ConcurrentChange
from shopsearch.index import meta as meta_mod
from shopsearch.index.profiles import get_profile
from shopsearch.index.ubi import ensure_ubi_indices, forget_user
from shopsearch.index.versions import create_version, live_index, switch_alias
from shopsearch.learn import popularity
from shopsearch.learn.profile_update import update_profiles
from shopsearch.learn.rollout_state import read_meta, record
from shopsearch.workers.dispatch import reindex, run_ingest

from .conftest import DATA

PRODUCTS = DATA / "homedepot" / "products.tsv"


def _refresh_interval(client, index):
    got = client.indices.get_settings(index=index, name="index.refresh_interval")
    return got[index]["settings"].get("index", {}).get("refresh_interval")


# --- _meta ------------------------------------------------------------------------------------------

def test_two_writers_changing_meta_at_once_keep_both_changes(client, catalogue):
    index = create_version(client, catalogue, {"mappings": {"_meta": {"model": "m"}}})
    other_done = threading.Event()

    def slow_change(meta):
        # a second writer starts while this one holds what it read
        threading.Thread(target=lambda: (meta_mod.update_meta(client, index, {"b": 2}), other_done.set())).start()
        other_done.wait(timeout=3)  # without the lock it finishes now, and this write would erase it
        meta["a"] = 1

    meta_mod.update_meta(client, index, slow_change)
    assert other_done.wait(timeout=30)
    assert {"model": "m", "a": 1, "b": 2}.items() <= read_meta(client, index).items()


def test_a_lock_left_by_a_dead_holder_is_taken_once_its_lease_is_past(client, catalogue):
    index = create_version(client, catalogue, {"mappings": {"_meta": {}}})
    meta_mod._ensure_locks_index(client)
    client.index(index=meta_mod.LOCKS_INDEX, id=f"meta:{index}", refresh=True,
                 body={"owner": "dead", "expires": time.time() - 1})
    meta_mod.update_meta(client, index, {"a": 1})
    assert read_meta(client, index)["a"] == 1


def test_a_rollout_state_recorded_while_popularity_counts_is_kept(client, settings, catalogue, monkeypatch):
    summary = run_ingest(settings, PRODUCTS, catalogue, mapping="homedepot", limit=5)
    index = summary.index
    some_id = client.search(index=index, body={"size": 1})["hits"]["hits"][0]["_id"]
    ensure_ubi_indices(client, settings)
    client.index(index=settings.ubi_events_index, refresh=True, body={
        "event_id": uuid.uuid4().hex, "user_id": "u", "catalogue": catalogue, "action_name": "click",
        "object_id": some_id, "timestamp": "2026-01-01T00:00:00Z"})
    real_write = popularity.update_keeping_vectors

    def write_while_a_rollback_records(*args, **kwargs):  # another writer between popularity's read and write
        record(client, index, previous="history-rollback-needs")
        return real_write(*args, **kwargs)
    monkeypatch.setattr(popularity, "update_keeping_vectors", write_while_a_rollback_records)
    popularity.update_popularity(client, settings, catalogue)
    meta = read_meta(client, index)
    assert meta["rollout"]["previous"] == "history-rollback-needs"
    assert "popularity_events" in meta["scales"]


# --- alias ------------------------------------------------------------------------------------------

def test_an_alias_move_fails_when_another_writer_moved_it_since_it_was_read(client, catalogue):
    v1 = create_version(client, catalogue, {})
    v2 = create_version(client, catalogue, {}, point_alias=False)
    v3 = create_version(client, catalogue, {}, point_alias=False)
    seen = live_index(client, catalogue)
    switch_alias(client, catalogue, v3)  # another writer, after our read
    with pytest.raises(ConcurrentChange, match="no longer points at"):
        switch_alias(client, catalogue, v2, expected=seen)
    assert sorted(client.indices.get_alias(name=catalogue)) == [v3]  # one version, the other writer's
    assert seen == v1


# --- reindex ----------------------------------------------------------------------------------------

def test_items_ingested_during_a_reindex_are_in_the_new_version(client, settings, catalogue):
    first = run_ingest(settings, PRODUCTS, catalogue, mapping="homedepot", limit=20)
    assert first.complete
    from shopsearch.errors import RolloutInterrupted
    with pytest.raises(RolloutInterrupted):
        reindex(settings, catalogue, stop_before="verify")  # the new version is filled, not yet swapped
    later = run_ingest(settings, PRODUCTS, catalogue, mapping="homedepot", limit=30)  # 10 more items, into live
    assert later.complete and later.index == first.index
    state = reindex(settings, catalogue)
    assert state["step"] == "swapped" and live_index(client, catalogue) == state["index"] != first.index
    client.indices.refresh(index=state["index"])
    assert client.count(index=state["index"])["count"] == 30


def test_a_rerun_turns_refresh_back_on_after_a_run_killed_while_it_was_off(client, settings, catalogue):
    first = run_ingest(settings, PRODUCTS, catalogue, mapping="homedepot", limit=10)
    # what a writer killed during its bulk writes leaves behind
    client.indices.put_settings(index=first.index, body={"index": {"refresh_interval": "-1"}})
    again = run_ingest(settings, PRODUCTS, catalogue, mapping="homedepot", limit=10)
    assert again.skipped_unchanged == 10 and again.encoded == 0
    assert _refresh_interval(client, first.index) != "-1"


def test_a_resumed_reindex_turns_refresh_back_on(client, settings, catalogue):
    assert run_ingest(settings, PRODUCTS, catalogue, mapping="homedepot", limit=10).complete
    from shopsearch.errors import RolloutInterrupted
    with pytest.raises(RolloutInterrupted):
        reindex(settings, catalogue, stop_before="verify")
    target = [v for v in client.indices.get(index=f"{catalogue}-v*") if v != live_index(client, catalogue)][0]
    client.indices.put_settings(index=target, body={"index": {"refresh_interval": "-1"}})  # a crash's leftover
    with pytest.raises(RolloutInterrupted):
        reindex(settings, catalogue, stop_before="swap")
    assert _refresh_interval(client, target) != "-1"


# --- forgetting a shopper ---------------------------------------------------------------------------

def test_forgetting_a_shopper_deletes_again_what_changed_while_it_was_deleting(client, settings, caplog):
    """A shopper's event rewritten while ``delete_by_query`` works through their 20,000 events is a
    version conflict that the pass skips: the next pass deletes it, so nothing of the shopper is left."""
    ensure_ubi_indices(client, settings)
    who = f"forgotten_{uuid.uuid4().hex[:8]}"
    ids = [f"{who}-{i}" for i in range(20_000)]
    at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    helpers.bulk(client, ({"_index": settings.ubi_events_index, "_id": i, "_source": {
        "event_id": i, "user_id": who, "catalogue": "forget_race", "action_name": "impression", "object_id": "p",
        "timestamp": at, "received_at": at}} for i in ids), chunk_size=2_000, refresh=True)
    done: dict = {}

    def forget():
        try:
            done["counts"] = forget_user(client, settings, who)
        except ConcurrentChange as e:  # what five passes in a row with a conflict would say
            done["error"] = e

    forgetting = threading.Thread(target=forget)
    caplog.set_level("INFO", logger="shopsearch.index.ubi")
    forgetting.start()
    changed = 0
    while forgetting.is_alive() and not changed:  # once the pass is under way: rewrite events it has not reached
        tasks = client.tasks.list(actions="*delete/byquery", detailed=True)["nodes"]
        status = [task["status"] for node in tasks.values() for task in node["tasks"].values()]
        if any(s.get("deleted", 0) >= 1_000 for s in status):
            left = [d for d in client.mget(index=settings.ubi_events_index, body={"ids": ids[-2_000:]})["docs"]
                    if d.get("found")]
            for doc in left[-50:]:  # written again as it was read: a new version under the pass
                try:
                    client.index(index=settings.ubi_events_index, id=doc["_id"], body=doc["_source"],
                                 if_seq_no=doc["_seq_no"], if_primary_term=doc["_primary_term"])
                    changed += 1
                except ConflictError:  # deleted meanwhile: not written again
                    continue
        time.sleep(0.002)
    forgetting.join(timeout=120)
    assert changed, "the delete finished before any event could be rewritten under it"
    assert "error" not in done, done
    assert done["counts"][settings.ubi_events_index] == len(ids)
    assert "changed while they were deleted; deleting them again" in caplog.text
    client.indices.refresh(index=settings.ubi_events_index)
    assert client.count(index=settings.ubi_events_index, body={"query": {"term": {"user_id": who}}})["count"] == 0


# --- profiles ---------------------------------------------------------------------------------------

def test_a_late_event_reaches_the_profile_at_the_next_build(client, settings, catalogue):
    summary = run_ingest(settings, PRODUCTS, catalogue, mapping="homedepot", limit=5)
    ids = [h["_id"] for h in client.search(index=summary.index, body={"size": 2})["hits"]["hits"]]
    ensure_ubi_indices(client, settings)
    who = f"shopper_{uuid.uuid4().hex[:8]}"
    now = datetime.now(timezone.utc)

    def purchase(object_id, hours_ago):
        client.index(index=settings.ubi_events_index, refresh=True, body={
            "event_id": uuid.uuid4().hex, "user_id": who, "catalogue": catalogue, "action_name": "purchase",
            "object_id": object_id, "timestamp": (now - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")})

    purchase(ids[0], 1)
    assert update_profiles(client, settings, catalogue, users=[who])["profiles_updated"] == 1
    purchase(ids[1], 3)  # made before that build, stored after it (a phone that was offline)
    update_profiles(client, settings, catalogue, users=[who])
    profile = get_profile(client, settings, catalogue, who)
    assert profile["events"] == 2
    assert set(profile["items"]) == set(ids)


def test_an_event_stored_before_the_stamp_existed_reaches_the_profile_once(client, settings, catalogue):
    """Events a middleware wrote before any worker set up the ``stored_at`` pipeline (or into an
    events index a face made again) carry only the middleware's ``received_at``: a profile that
    was built before them still takes each of them in, and only once."""
    summary = run_ingest(settings, PRODUCTS, catalogue, mapping="homedepot", limit=5)
    ids = [h["_id"] for h in client.search(index=summary.index, body={"size": 3})["hits"]["hits"]]
    ensure_ubi_indices(client, settings)
    who = f"shopper_{uuid.uuid4().hex[:8]}"

    def purchase(object_id, **unstamped):
        at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        client.index(index=settings.ubi_events_index, refresh=True, **unstamped, body={
            "event_id": uuid.uuid4().hex, "user_id": who, "catalogue": catalogue, "action_name": "purchase",
            "object_id": object_id, "timestamp": at, "received_at": at})

    purchase(ids[0])  # stamped by the events index's default pipeline
    assert update_profiles(client, settings, catalogue, users=[who])["profiles_updated"] == 1
    time.sleep(0.01)
    purchase(ids[1], pipeline="_none")  # no stamp: as before the first worker's set-up
    assert update_profiles(client, settings, catalogue, users=[who])["profiles_updated"] == 1
    assert get_profile(client, settings, catalogue, who)["events"] == 2
    assert update_profiles(client, settings, catalogue, users=[who])["profiles_updated"] == 0  # nothing new
    time.sleep(0.01)
    purchase(ids[2])
    update_profiles(client, settings, catalogue, users=[who])
    profile = get_profile(client, settings, catalogue, who)
    assert profile["events"] == 3 and set(profile["items"]) == set(ids)
