"""Recommendations through the middleware: for-you (profile k-NN or popular), similar items, also-bought."""

import threading
import uuid
from collections import Counter

import numpy as np
import pytest
import requests
from opensearchpy import helpers

from shopsearch.index.profiles import put_profile
from shopsearch.index.ubi import ensure_ubi_indices
from shopsearch.learn.recommend import max_per_category
from shopsearch.privacy import pseudonym
from shopsearch.workers.dispatch import run_ingest
from shopsearch.index.vectors import with_vectors

from .conftest import DATA

SHOPPER = "rec-alice"


@pytest.fixture(scope="module")
def shop(services, settings, client):
    """300 real Myntra products (23 of them watches) in a catalogue of their own."""
    name = f"test_rec_{uuid.uuid4().hex[:8]}"
    run_ingest(settings, DATA / "fashion" / "products.tsv", name, mapping="fashion", limit=300)
    client.indices.refresh(index=name)
    yield name
    client.indices.delete(index=f"{name}-v*", ignore_unavailable=True, allow_no_indices=True)
    for index in (settings.ubi_events_index, settings.profiles_index):  # the node has no _delete_by_query
        if client.indices.exists(index=index):
            hits = helpers.scan(client, index=index, query={"query": {"term": {"catalogue": name}}}, _source=False)
            helpers.bulk(client, ({"_op_type": "delete", "_index": index, "_id": h["_id"]} for h in hits), refresh=True)


@pytest.fixture(scope="module")
def web(services, settings):
    """The full app over real HTTP, with the recommend blueprint wired if app.py does not yet."""
    from werkzeug.serving import make_server

    from shopsearch.plugin import recommend
    from shopsearch.plugin.app import create_app
    app = create_app(settings)
    if "recommend" not in app.blueprints:
        recommend.init_app(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    session = requests.Session()
    yield lambda path, **params: session.get(f"http://127.0.0.1:{server.server_port}{path}", params=params, timeout=60)
    server.shutdown()


def products(client, shop, **term):
    hits = client.search(index=shop, body={"size": 300, "query": {"term": term}, "sort": [{"id": "asc"}]})["hits"]["hits"]
    return [with_vectors(h["_source"]) for h in hits]


def ids(response):
    return [h["id"] for h in response.json()["hits"]]


def categories(response):
    return [h.get("category") for h in response.json()["hits"]]


def write_purchases(client, settings, shop, purchases):
    """Purchase events stored as the events route stores them: pseudonymous shopper ids."""
    ensure_ubi_indices(client, settings)
    actions = [{"_index": settings.ubi_events_index, "_id": uuid.uuid4().hex,
                "_source": {"event_id": uuid.uuid4().hex, "user_id": pseudonym(user, settings.pseudonym_salt),
                            "catalogue": shop, "action_name": "purchase", "object_id": item, "timestamp": when}}
               for user, item, when in purchases]
    helpers.bulk(client, actions, refresh=True)


@pytest.fixture(scope="module")
def watch_lover(client, settings, shop):
    """A shopper whose profile vector is the mean of three watches' vectors; one of them bought."""
    watches = products(client, shop, category="Watches")[:3]
    mean = np.mean([w["fused_vector"] for w in watches], axis=0)
    meta = client.indices.get_mapping(index=shop)
    model_version = next(iter(meta.values()))["mappings"]["_meta"].get("model_version")
    put_profile(client, settings, shop, SHOPPER, {"vector": (mean / np.linalg.norm(mean)).tolist(),
                                                  "categories": {"Watches": 1.0}, "model_version": model_version},
                refresh=True)
    write_purchases(client, settings, shop, [(SHOPPER, watches[0]["id"], "2024-05-01T10:00:00Z")])
    return [w["id"] for w in watches]


# --- for you ---------------------------------------------------------------------------------
def test_for_you_recommends_near_the_profile_with_no_category_above_its_cap(web, shop, watch_lover):
    r = web(f"/shop/{shop}/recommend/for-you", user=SHOPPER, size=10)
    assert r.status_code == 200 and r.json()["strategy"] == "profile-knn"
    found = categories(r)
    assert len(found) == 10 and found[0] == "Watches"
    assert found.count("Watches") == max_per_category(10)  # the nearest category, capped
    assert max(Counter(found).values()) <= max_per_category(10)
    assert all("fused_vector" not in h and "text_vector" not in h for h in r.json()["hits"])


def test_for_you_fills_the_list_from_one_category_when_the_filter_leaves_no_other(web, shop, watch_lover):
    r = web(f"/shop/{shop}/recommend/for-you", user=SHOPPER, size=8, category="Watches")
    assert categories(r) == ["Watches"] * 8


def test_for_you_leaves_out_what_the_shopper_already_bought(web, shop, watch_lover):
    r = web(f"/shop/{shop}/recommend/for-you", user=SHOPPER, size=30, category="Watches")
    assert watch_lover[0] not in ids(r) and set(watch_lover[1:]) <= set(ids(r))


def test_for_you_for_an_unknown_shopper_answers_popular_items(web, shop):
    r = web(f"/shop/{shop}/recommend/for-you", user="nobody-knows-me", size=6)
    body = r.json()
    assert r.status_code == 200 and body["strategy"] == "popular" and body["reason"]
    assert body["user"] == "nobody-knows-me" and len(body["hits"]) == 6
    assert max(Counter(categories(r)).values()) <= max_per_category(6)


# --- similar ---------------------------------------------------------------------------------
def test_similar_items_are_of_the_same_type_and_exclude_the_item_and_its_duplicates(web, client, shop):
    watch = products(client, shop, category="Watches")[5]
    knn = {"size": 2, "_source": False, "query": {"knn": {"fused_vector": {"vector": watch["fused_vector"], "k": 2}}}}
    twin = next(h["_id"] for h in client.search(index=shop, body=knn)["hits"]["hits"] if h["_id"] != watch["id"])
    for d in (watch["id"], twin):
        client.update(index=shop, id=d, body={"doc": {"duplicate_group": "rec-test-twins"}}, refresh=True)
    r = web(f"/shop/{shop}/recommend/similar/{watch['id']}", size=5)
    assert r.status_code == 200 and len(ids(r)) == 5
    assert watch["id"] not in ids(r) and twin not in ids(r)
    assert categories(r).count("Watches") >= 4


def test_similar_items_honour_the_filters(web, client, shop):
    shirt = products(client, shop, category="Shirts")[0]
    r = web(f"/shop/{shop}/recommend/similar/{shirt['id']}", size=10, colour="black")
    assert r.status_code == 200 and ids(r)
    assert all(h["colour"].lower() == "black" for h in r.json()["hits"])


def test_an_item_without_a_vector_has_no_similar_items_and_says_why(web, client, shop):
    client.index(index=shop, id="rec-no-vector", body={"id": "rec-no-vector", "title": "Gift card"}, refresh=True)
    try:
        r = web(f"/shop/{shop}/recommend/similar/rec-no-vector")
        assert r.status_code == 200 and r.json()["hits"] == [] and "vector" in r.json()["reason"]
    finally:
        client.delete(index=shop, id="rec-no-vector", refresh=True)


# --- also bought -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def baskets(client, settings, shop):
    """a is bought with b by two shoppers, with c by one; d is bought by an a-buyer on another day."""
    a, b, c, d = (p["id"] for p in products(client, shop, category="Tshirts")[:4])
    day, later = "2024-05-01T09:00:00Z", "2024-05-01T17:30:00Z"
    write_purchases(client, settings, shop, [
        ("s1", a, day), ("s1", b, later), ("s2", a, day), ("s2", b, day), ("s3", a, day), ("s3", c, later),
        ("s2", d, "2024-06-11T09:00:00Z"), ("s4", b, day), ("s4", c, day)])
    return a, b, c, d


def test_also_bought_puts_the_most_co_purchased_item_first(web, shop, baskets):
    a, b, c, d = baskets
    r = web(f"/shop/{shop}/recommend/also-bought/{a}")
    assert r.status_code == 200
    assert ids(r) == [b, c]  # never a itself; d was bought on another day, so not with a
    assert r.json()["hits"][0]["score"] > r.json()["hits"][1]["score"] and r.json()["hits"][0]["title"]


def test_also_bought_is_cached_and_filtered_after_the_cache(web, client, shop, baskets):
    a, b, c, _ = baskets
    web(f"/shop/{shop}/recommend/also-bought/{a}")
    colour = products(client, shop, id=c)[0]["colour"].lower()
    r = web(f"/shop/{shop}/recommend/also-bought/{a}", colour=colour)
    assert r.json()["cached"] is True
    assert c in ids(r) and all(h["colour"].lower() == colour for h in r.json()["hits"])


def test_an_item_nobody_bought_has_an_empty_also_bought_list(web, client, shop):
    unsold = products(client, shop, category="Watches")[-1]["id"]
    r = web(f"/shop/{shop}/recommend/also-bought/{unsold}")
    assert r.status_code == 200 and r.json()["hits"] == []


# --- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("route", ["similar", "also-bought"])
def test_an_unknown_item_is_a_404_json(web, shop, route):
    r = web(f"/shop/{shop}/recommend/{route}/no-such-item")
    assert r.status_code == 404 and r.json()["error"] == "not_found" and "no-such-item" in r.json()["message"]


def test_an_unknown_catalogue_is_a_404(web):
    assert web("/shop/no_such_catalogue/recommend/for-you", user="x").status_code == 404


@pytest.mark.parametrize("params,field", [
    ({}, "user"), ({"user": "u", "size": 0}, "size"), ({"user": "u", "size": 51}, "size"),
    ({"user": "u", "size": "many"}, "size"), ({"user": "u", "in_stock": "perhaps"}, "in_stock"),
    ({"user": "u", "price_min": "cheap"}, "price_min"), ({"user": "u", "q": "watch"}, "q"),
])
def test_bad_parameters_get_a_400_naming_the_field(web, shop, params, field):
    r = web(f"/shop/{shop}/recommend/for-you", **params)
    assert r.status_code == 400 and r.json()["field"] == field


def test_similar_takes_no_user(web, client, shop):
    item = products(client, shop, category="Watches")[0]["id"]
    assert web(f"/shop/{shop}/recommend/similar/{item}", user="u").json()["field"] == "user"
