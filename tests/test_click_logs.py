"""Click logs, profiles and personalisation, end to end through the middleware and the real worker."""

import os
import signal
import subprocess
import sys
import uuid

import pytest
import requests

from shopsearch.ops.services.process import wait_until
from shopsearch.plugin.app import create_app
from shopsearch.privacy import pseudonym
from shopsearch.workers.dispatch import run_ingest

from .conftest import DATA

TOKEN = "test-admin-token"
BACKEND = {"X-Admin-Token": TOKEN}  # the shop's own backend posts events for any shopper
RUN = uuid.uuid4().hex[:8]  # shopper ids unique to this run: click logs persist between runs


def shopper(name: str) -> str:
    return f"{name}-{RUN}"


@pytest.fixture(scope="module")
def store(services, settings, client):
    name = f"test_click_logs_{RUN}"  # its click logs must not meet those of earlier runs
    run_ingest(settings, DATA / "fashion" / "products.tsv", name, mapping="fashion", limit=400)
    yield name
    client.indices.delete(index=f"{name}-v*", ignore_unavailable=True, allow_no_indices=True)
    from opensearchpy import helpers
    for index in (settings.ubi_events_index, settings.ubi_queries_index):
        client.indices.refresh(index=index)
        hits = helpers.scan(client, index=index, query={"query": {"term": {"catalogue": name}}}, _source=False)
        helpers.bulk(client, ({"_op_type": "delete", "_index": index, "_id": h["_id"]} for h in hits), raise_on_error=False)


@pytest.fixture(scope="module")
def app(settings, store):
    return create_app(settings.replace(admin_token=TOKEN, event_flush_seconds=0.2, result_cache_seconds=0), face="internal")


@pytest.fixture
def web(app):
    return app.test_client()


def stored_events(client, settings, user):
    client.indices.refresh(index=settings.ubi_events_index)
    body = {"query": {"term": {"user_id": pseudonym(user, settings.pseudonym_salt)}}, "size": 1000}
    return [h["_source"] for h in client.search(index=settings.ubi_events_index, body=body)["hits"]["hits"]]


def serve_proxy(port: int, tmp_path) -> subprocess.Popen:
    """The middleware under gunicorn (one worker) that flushes events only hourly, once healthy."""
    env = {**os.environ, "SHOPSEARCH_EVENT_FLUSH_SECONDS": "3600", "SHOPSEARCH_PROXY_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", "--graceful-timeout",
                             "30", "shopsearch.plugin.app:create_app(face='internal')"], env=env, stdout=open(tmp_path / "log", "wb"),
                            stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok, 120, "proxy",
                   log=tmp_path / "log", alive=lambda: proc.poll() is None)
    except BaseException:
        proc.kill()
        raise
    return proc


def post_clicks(port: int, settings, who: str, n: int) -> int:
    """``n`` clicks of one shopper posted by the shop's backend (the admin credential); the status."""
    events = [{"user_id": who, "action_name": "click", "object_id": str(i), "position": 1} for i in range(n)]
    return requests.post(f"http://127.0.0.1:{port}/events", json=events, timeout=30,
                         headers={"X-Admin-Token": settings.admin_token}).status_code


def flush(app):
    app.extensions["shopsearch.events"].flush()


def test_search_events_profile_personalised_search_for_that_shopper_only(web, app, store, client, settings):
    first = web.get(f"/shop/{store}/search", query_string={"q": "black", "size": 20, "user": shopper("carol")}).get_json()
    assert first["query_id"]
    watches = [h for h in web.get(f"/shop/{store}/search", query_string={"q": "watch", "size": 5}).get_json()["hits"]
               if h.get("category") == "Watches"]
    events = [{"query_id": first["query_id"], "user_id": shopper("carol"), "action_name": action, "object_id": w["id"], "position": n}
              for n, w in enumerate(watches, 1) for action in ("click", "purchase")]
    r = web.post("/events", json={"events": events}, headers={"X-Event-Token": first["event_token"]})
    assert r.status_code == 202 and r.get_json()["accepted"] == len(events)
    flush(app)
    update = web.post(f"/admin/profiles/{store}/update", json={"users": [shopper("carol")], "wait": True},
                      headers={"Authorization": f"Bearer {TOKEN}"})
    assert update.status_code == 200 and update.get_json()["profiles_updated"] == 1
    plain = web.get(f"/shop/{store}/search", query_string={"q": "black", "size": 10, "user": shopper("dave")}).get_json()
    personal = web.get(f"/shop/{store}/search", query_string={"q": "black", "size": 10, "user": shopper("carol"), "explain": "true"},
                       headers=BACKEND).get_json()
    count = lambda res: sum(h.get("category") == "Watches" for h in res["hits"])
    assert count(personal) > count(plain)
    assert any(h["explain"]["boost"] > 0 for h in personal["hits"])
    unaffected = web.get(f"/shop/{store}/search", query_string={"q": "black", "size": 10, "user": shopper("dave")}).get_json()
    assert [h["id"] for h in unaffected["hits"]] == [h["id"] for h in plain["hits"]]


@pytest.mark.parametrize("event,field", [
    ({"action_name": "click", "object_id": "1"}, "user_id"),
    ({"user_id": "u", "object_id": "1"}, "action_name"),
    ({"user_id": "u", "action_name": "teleport", "object_id": "1"}, "action_name"),
    ({"user_id": "u", "action_name": "click", "object_id": "1", "position": "first"}, "position"),
    ({"user_id": "u", "action_name": "click", "object_id": "1", "timestamp": "yesterday-ish"}, "timestamp"),
    ({"user_id": "u", "action_name": "click", "object_id": "1", "colour": "red"}, "colour"),
])
def test_a_bad_event_is_a_400_naming_the_field(web, event, field):
    r = web.post("/events", json=[{"user_id": "ok", "action_name": "click", "object_id": "9"}, event])
    assert r.status_code == 400
    assert field in r.get_json()["field"] and r.get_json()["field"].startswith("events[1]")


def test_a_huge_batch_is_refused_whole(web, client, settings):
    events = [{"user_id": "huge", "action_name": "click", "object_id": str(i)} for i in range(1001)]
    r = web.post("/events", json=events)
    assert r.status_code == 400 and r.get_json()["field"] == "events"


def test_unknown_query_ids_are_accepted_but_flagged_and_duplicates_stored_once(web, app, client, settings):
    event = {"query_id": "no-such-query", "user_id": shopper("erin"), "action_name": "click", "object_id": "42",
             "position": 3, "timestamp": "2026-11-01T10:00:00Z"}
    r = web.post("/events", json=[event, event], headers=BACKEND)
    assert r.status_code == 202 and len(r.get_json()["unknown_query_ids"]) == 1
    web.post("/events", json=event, headers=BACKEND)
    flush(app)
    stored = stored_events(client, settings, shopper("erin"))
    assert len(stored) == 1 and stored[0]["unknown_query_id"] is True
    assert stored[0]["user_id"] != shopper("erin")  # only the pseudonym is stored


def test_forgetting_a_shopper_removes_events_queries_and_profile(web, app, store, client, settings):
    web.get(f"/shop/{store}/search", query_string={"q": "shoes", "user": shopper("frank")})
    web.post("/events", json={"user_id": shopper("frank"), "action_name": "purchase", "object_id": "15970", "catalogue": store},
             headers=BACKEND)
    flush(app)
    web.post(f"/admin/profiles/{store}/update", json={"users": [shopper("frank")], "wait": True}, headers={"X-Admin-Token": TOKEN})
    assert stored_events(client, settings, shopper("frank"))
    assert web.delete(f"/admin/users/{shopper('frank')}").status_code in (401, 403)
    r = web.delete(f"/admin/users/{shopper('frank')}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    assert stored_events(client, settings, shopper("frank")) == []
    who = pseudonym(shopper("frank"), settings.pseudonym_salt)
    # events still waiting in the buffer (and its journal on disk) are forgotten too
    buffer = app.extensions["shopsearch.events"]
    web.post("/events", json={"user_id": shopper("frank"), "action_name": "click", "object_id": "15971"}, headers=BACKEND)
    assert web.delete(f"/admin/users/{shopper('frank')}", headers=BACKEND).status_code == 200
    flush(app)
    assert stored_events(client, settings, shopper("frank")) == []
    assert not any(who in p.read_text() for p in buffer.spill_dir.glob("journal-*.jsonl"))
    for index in (settings.ubi_queries_index, settings.profiles_index):
        client.indices.refresh(index=index)
        assert client.count(index=index, body={"query": {"term": {"user_id" if "ubi" in index else "user": who}}})["count"] == 0


def test_events_buffered_when_the_middleware_stops_are_all_stored(services, settings, client, tmp_path):
    port = 18000 + os.getpid() % 1000
    proc = serve_proxy(port, tmp_path)
    try:
        assert post_clicks(port, settings, shopper("grace"), 50) == 202
        assert stored_events(client, settings, shopper("grace")) == []  # still in the buffer: the flush interval is an hour
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert len(stored_events(client, settings, shopper("grace"))) == 50


def test_popularity_from_click_logs_lifts_what_shoppers_buy_for_everyone(web, app, store, client, settings, celery_app):
    from shopsearch.query.searcher import SearchRequest, Searcher
    searcher = Searcher(client, settings.replace(popularity_weight=0.3, result_cache_seconds=0))
    before = [h["id"] for h in searcher.search(store, SearchRequest(q="shirt", size=40))["hits"]]
    target = before[-1]
    buys = [{"user_id": shopper(f"buyer{n}"), "action_name": "purchase", "object_id": target, "catalogue": store}
            for n in range(5)]
    assert web.post("/events", json=buys, headers=BACKEND).status_code == 202
    flush(app)
    counts = celery_app.send_task("shopsearch.profiles.popularity", args=[store]).get(timeout=120)
    assert counts["products_updated"] >= 1
    assert client.get(index=store, id=target)["_source"]["popularity_norm"] > 0
    after = [h["id"] for h in searcher.search(store, SearchRequest(q="shirt", size=40))["hits"]]
    assert after.index(target) < before.index(target)


def test_the_periodic_run_updates_profiles_of_shoppers_with_new_events(web, app, store, client, settings, celery_app):
    from shopsearch.index.profiles import get_profile
    from shopsearch.workers.app import beat_schedule
    schedule = beat_schedule(settings)["profiles-periodic"]
    assert schedule["task"] == "shopsearch.profiles.update_recent"
    assert schedule["schedule"] == settings.profile_update_seconds > 0
    who = shopper(f"periodic-{uuid.uuid4().hex[:6]}")
    item = client.search(index=store, body={"size": 1, "query": {"match_all": {}}})["hits"]["hits"][0]["_id"]
    assert web.post("/events", json={"user_id": who, "action_name": "purchase", "object_id": item,
                                     "catalogue": store}, headers=BACKEND).status_code == 202
    flush(app)
    # what beat sends every profile_update_seconds, sent now: the shopper's profile appears
    done = celery_app.send_task(schedule["task"], args=schedule["args"]).get(timeout=300)
    assert done[store]["profiles_updated"] >= 1 and "popularity" in done[store]
    profile = get_profile(client, settings, store, pseudonym(who, settings.pseudonym_salt))
    assert profile and item in profile["items"]


def test_an_event_naming_no_catalogue_is_refused_and_one_stored_anyway_does_not_stop_the_periodic_run(
        web, app, store, client, settings):
    """``POST /events`` refuses a catalogue that is no catalogue's name (400, naming the field); one
    written straight to the index all the same is skipped by the periodic run, which still finds
    the catalogues with new events."""
    from shopsearch.learn.profile_update import recent_catalogues
    since = "2000-01-01T00:00:00Z"
    bad = {"user_id": shopper("nameless"), "action_name": "click", "object_id": "p", "catalogue": "Not-A-Catalogue"}
    refused = web.post("/events", json=bad, headers=BACKEND)
    assert refused.status_code == 400 and refused.get_json()["field"] == "events[0].catalogue", refused.get_json()
    assert web.post("/events", json={**bad, "catalogue": store}, headers=BACKEND).status_code == 202
    flush(app)
    at = "2026-01-01T00:00:00.000Z"
    written = client.index(index=settings.ubi_events_index, refresh=True, body={
        **bad, "event_id": uuid.uuid4().hex, "timestamp": at, "received_at": at})
    try:
        found = recent_catalogues(client, settings, since)
        assert store in found and "Not-A-Catalogue" not in found
    finally:
        client.delete(index=settings.ubi_events_index, id=written["_id"], refresh=True)


def test_a_killed_middleware_loses_no_accepted_event(services, settings, client, store, tmp_path):
    """A 202 means on disk: SIGKILL before any flush, and the next middleware stores them all; a
    search's query record (written without waiting for an fsync) survives the kill too."""
    port = 19000 + os.getpid() % 1000
    proc = serve_proxy(port, tmp_path)
    try:
        searched = [requests.get(f"http://127.0.0.1:{port}/shop/{store}/search", params={"q": q}, timeout=60).json()
                    for q in ("shoes", "red watch", "black bag")]
        assert post_clicks(port, settings, shopper("heidi"), 40) == 202
    finally:
        # the worker and the arbiter at once: a worker that outlived its arbiter by a second (a
        # loaded machine) would notice and exit gracefully, flushing what this test wants unflushed
        subprocess.run(["pkill", "-9", "-f", f"127.0.0.1:{port}"], check=False)
        proc.kill()
        proc.wait(timeout=60)
    wait_until(lambda: subprocess.run(["pgrep", "-f", f"127.0.0.1:{port}"], capture_output=True).returncode != 0, 30,
               "the killed worker")
    assert stored_events(client, settings, shopper("heidi")) == []
    app = create_app(settings)  # replays the journals of processes that are gone
    app.extensions["shopsearch.events"].flush()
    assert len(stored_events(client, settings, shopper("heidi"))) == 40
    client.indices.refresh(index=settings.ubi_queries_index)
    for answer in searched:
        assert client.exists(index=settings.ubi_queries_index, id=answer["query_id"]), answer["query_id"]


def test_events_must_carry_the_token_of_that_shoppers_search(web, app, store, client, settings):
    ivan, judy = shopper("ivan"), shopper("judy")
    token = web.get(f"/shop/{store}/search", query_string={"q": "shoes", "user": ivan}).get_json()["event_token"]
    click = lambda who: {"user_id": who, "action_name": "click", "object_id": "15970", "catalogue": store}
    assert ivan not in token  # the token holds the pseudonym, never the raw id
    refused = web.post("/events", json=click(ivan))
    assert refused.status_code == 401 and refused.get_json()["field"] == "X-Event-Token"
    assert web.post("/events", json=click(ivan), headers={"X-Event-Token": token + "x"}).status_code == 401
    spoofed = web.post("/events", json=[click(ivan), click(judy)], headers={"X-Event-Token": token})
    assert spoofed.status_code == 403 and spoofed.get_json()["field"] == "events[1].user_id"
    assert web.post("/events", json=click(ivan), headers={"X-Event-Token": token}).status_code == 202
    flush(app)
    assert len(stored_events(client, settings, ivan)) == 1 and stored_events(client, settings, judy) == []


def test_an_expired_token_is_refused(web, settings):
    from shopsearch.privacy import event_token
    who = pseudonym("kim", settings.pseudonym_salt)
    old = event_token(who, settings.pseudonym_salt, 1_000_000_000)
    r = web.post("/events", json={"user_id": "kim", "action_name": "click", "object_id": "1"}, headers={"X-Event-Token": old})
    assert r.status_code == 401 and "expired" in r.get_json()["message"]


def test_one_client_posting_too_fast_gets_429_with_retry_after(services, settings, store):
    web = create_app(settings.replace(events_per_minute=5)).test_client()
    token = web.get(f"/shop/{store}/search", query_string={"q": "shoes", "user": "leo"}).get_json()["event_token"]
    events = [{"user_id": "leo", "action_name": "click", "object_id": str(i)} for i in range(4)]
    assert web.post("/events", json=events, headers={"X-Event-Token": token}).status_code == 202
    r = web.post("/events", json=events, headers={"X-Event-Token": token})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


def test_a_full_buffer_answers_503_with_retry_after_and_keeps_what_it_holds(services, settings, client):
    from opensearchpy import OpenSearch
    down = OpenSearch(hosts=["http://127.0.0.1:9"], timeout=1)  # nothing listens there: every flush fails
    from shopsearch.learn.event_writer import BulkBuffer
    from shopsearch.errors import Overloaded
    import tempfile
    buffer = BulkBuffer(down, tempfile.mkdtemp(), interval=3600, max_pending=3)
    buffer.add_many([("ubi_events", str(i), {"user_id": "x"}) for i in range(3)])
    with pytest.raises(Overloaded) as full:
        buffer.add("ubi_events", "4", {"user_id": "x"})
    assert full.value.status == 503 and full.value.headers["Retry-After"]
    buffer.flush()
    assert buffer.pending() == 3
    buffer.close()
    assert sum(1 for p in buffer.spill_dir.glob("journal-*.jsonl") for _ in p.open()) == 3


def test_events_posted_while_opensearch_is_down_are_stored_once_it_is_back(services, settings, client, store):
    """The events a running middleware accepted during an outage; and those of a middleware that
    started during it, which makes the click-log indices, with their mappings, before its first
    send (a write to an index that does not exist would make one with guessed mappings)."""
    from shopsearch.ops.services import opensearch
    app = create_app(settings.replace(event_flush_seconds=0.2, result_cache_seconds=0), face="public")
    web = app.test_client()
    who = shopper("oscar")
    answer = web.get(f"/shop/{store}/search", query_string={"q": "shoes", "user": who}).get_json()
    events = [{"user_id": who, "action_name": "click", "query_id": answer["query_id"], "object_id": str(i),
               "position": i + 1} for i in range(30)]
    late = settings.replace(ubi_queries_index=f"test_ubi_queries_late_{RUN}", ubi_events_index=f"test_ubi_events_late_{RUN}",
                            admin_token=TOKEN, event_flush_seconds=0.2)
    opensearch.stop(settings)
    try:
        assert web.get(f"/shop/{store}/search", query_string={"q": "shoes"}).status_code == 503
        accepted = web.post("/events", json=events, headers={"X-Event-Token": answer["event_token"]})
        assert accepted.status_code == 202 and accepted.get_json()["accepted"] == 30
        started_late = create_app(late, face="internal")
        posted = started_late.test_client().post("/events", headers=BACKEND, json=[
            {"user_id": who, "action_name": "purchase", "object_id": "7", "event_id": f"late-{RUN}"}])
        assert posted.status_code == 202
    finally:
        opensearch.start(settings)
    wait_until(lambda: len(stored_events(client, settings, who)) == 30, 120, "the events posted during the outage")
    assert sorted(e["object_id"] for e in stored_events(client, settings, who)) == sorted(str(i) for i in range(30))
    try:
        wait_until(lambda: len(stored_events(client, late, who)) == 1, 120, "the late middleware's event")
        made = client.indices.get_mapping(index=late.ubi_events_index)[late.ubi_events_index]["mappings"]
        assert made["dynamic"] == "strict" and made["properties"]["action_name"]["type"] == "keyword"
        assert client.indices.exists(index=late.ubi_queries_index)
    finally:
        started_late.extensions["shopsearch.events"].close()
        client.indices.delete(index=[late.ubi_queries_index, late.ubi_events_index], ignore_unavailable=True)
    app.extensions["shopsearch.events"].close()


def test_a_search_record_is_written_at_once_and_fsynced_at_the_next_send_an_event_before_its_202(services):
    from opensearchpy import OpenSearch
    from shopsearch.learn.event_writer import BulkBuffer
    import tempfile
    down = OpenSearch(hosts=["http://127.0.0.1:9"], timeout=1)  # nothing listens there: every send fails
    buffer = BulkBuffer(down, tempfile.mkdtemp(), interval=3600)
    buffer.add("ubi_queries", "q1", {"user_query": "shoes"}, sync=False)
    journal = buffer._journal
    assert journal.unsynced and '"q1"' in journal.current.read_text()  # in the file: a killed process keeps it
    buffer.flush()  # the background thread's send: the segment is fsync'd and closed before anything is sent
    assert not journal.unsynced and journal.current is None
    buffer.add("ubi_events", "e1", {"user_id": "x"})  # an event: fsync'd before add returns
    assert not journal.unsynced
    buffer.close()
    assert buffer.pending() == 2  # OpenSearch never answered: both wait, and both stay on disk
    assert sum(len(p.read_text().splitlines()) for p in buffer.spill_dir.glob("journal-*.jsonl")) == 2


def test_the_query_log_refreshes_at_its_own_pace_and_an_older_index_takes_it(services, settings, client):
    """``ubi_queries`` is searched by batch readers that refresh first, so it need not refresh every
    second (each refresh is a segment to write and merge on the search path's cores)."""
    from shopsearch.index.ubi import ensure_ubi_indices

    s = settings.replace(ubi_queries_index=f"test_ubi_queries_{RUN}", ubi_events_index=f"test_ubi_events_{RUN}")

    def interval() -> str:
        found = client.indices.get_settings(index=s.ubi_queries_index, name="index.refresh_interval")
        return found[s.ubi_queries_index]["settings"]["index"]["refresh_interval"]

    try:
        client.indices.create(index=s.ubi_queries_index, body={"settings": {"index": {"refresh_interval": "1s"}}})
        ensure_ubi_indices(client, s)  # an index an earlier version made
        assert interval() == "30s"
        client.indices.delete(index=s.ubi_queries_index)
        ensure_ubi_indices(client, s.replace(ubi_queries_refresh_seconds=0))  # made anew: only on request
        assert interval() == "-1"
        assert client.indices.get_mapping(index=s.ubi_queries_index)[s.ubi_queries_index]["mappings"]["dynamic"] == "strict"
    finally:
        client.indices.delete(index=[s.ubi_queries_index, s.ubi_events_index], ignore_unavailable=True)
