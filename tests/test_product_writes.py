"""A shop's own writes of a catalogue's products through the pass-through are applied as an ingest
would apply them: the product keeps (or gets) its vectors and scaled numbers, a bad one is refused
with its reason and nothing is written. Real proxy over real HTTP, real OpenSearch, real workers."""

import json

import pytest
import redis
import requests
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from shopsearch.errors import Rejected
from shopsearch.index import api_keys
from shopsearch.index.catalogue import create_catalogue_version
from shopsearch.index.vectors import read_with_vectors, update_keeping_vectors
from shopsearch.ingest.normalise import apply_scale, fit_catalogue_scales
from shopsearch.ingest.product_rules import WRITABLE, changed_product, check_writable, clean_product
from shopsearch.ingest.product_writes import Write, write_products
from shopsearch.plugin.app import create_app
from shopsearch.workers.dispatch import run_ingest, runner

from .conftest import DATA

PRODUCTS = DATA / "homedepot" / "products.tsv"


@pytest.fixture
def shop(settings, client, catalogue):
    """A catalogue of six real Home Depot products, ingested; ``(catalogue, its version, a product id)``."""
    index = run_ingest(settings, PRODUCTS, catalogue, mapping="homedepot", limit=6).index
    product = client.search(index=index, body={"size": 1, "sort": ["id"]})["hits"]["hits"][0]["_id"]
    return catalogue, index, product


def _nearest(client, index, vector, k=3):
    body = {"size": k, "_source": False, "query": {"knn": {"fused_vector": {"vector": vector, "k": k}}}}
    return [h["_id"] for h in client.search(index=index, body=body)["hits"]["hits"]]


def test_a_price_and_stock_change_keeps_the_products_vectors_and_scales_the_new_price(
        shop, client, proxy_url, admin_headers):
    catalogue, index, product = shop
    before = read_with_vectors(client, index, [product])[product]

    r = requests.post(f"{proxy_url}/{catalogue}/_update/{product}?refresh=true", headers=admin_headers, timeout=60,
                      json={"doc": {"price": "1,299.00", "in_stock": False}})

    assert r.status_code == 200, r.text
    assert r.json()["result"] == "updated" and r.json()["_index"] == index and r.json()["_seq_no"] >= 0
    after = read_with_vectors(client, index, [product])[product]
    assert after["price"] == 1299.0 and after["in_stock"] is False
    scales = client.indices.get_mapping(index=index)[index]["mappings"]["_meta"]["scales"]
    assert after["price_norm"] == apply_scale(1299.0, scales["price"])  # scaled as ingest scales a price
    assert after["fused_vector"] == before["fused_vector"] and after["title"] == before["title"]
    assert _nearest(client, index, before["fused_vector"])[0] == product  # the update API would have dropped it
    again = requests.post(f"{proxy_url}/{catalogue}/_update/{product}", headers=admin_headers, timeout=60,
                          json={"doc": {"price": 1299}})
    assert again.json()["result"] == "noop" and again.json()["_seq_no"] == r.json()["_seq_no"]


def test_a_new_title_is_encoded_again_on_the_workers(shop, client, proxy_url, admin_headers, encoder):
    catalogue, index, product = shop
    before = read_with_vectors(client, index, [product])[product]

    r = requests.post(f"{proxy_url}/{catalogue}/_update/{product}?refresh=true", headers=admin_headers, timeout=120,
                      json={"doc": {"title": "Cordless Hammer Drill"}})

    assert r.status_code == 200 and r.json()["result"] == "updated", r.text
    after = read_with_vectors(client, index, [product])[product]
    assert after["title"] == "Cordless Hammer Drill" and after["fused_vector"] != before["fused_vector"]
    assert after["content_hash"] != before["content_hash"] and after["model_version"] == before["model_version"]
    query = encoder.encode(["Cordless Hammer Drill"])[0].tolist()
    assert _nearest(client, index, query)[0] == product


def test_a_whole_product_written_with_put_is_cleaned_encoded_and_found_by_its_vector(
        shop, client, proxy_url, admin_headers, encoder):
    catalogue, index, _ = shop
    product = {"title": "Galvanized Steel Garden Hose Reel", "brand": "Suncast", "price": "$49.99",
               "category_path": "Outdoors > Garden", "in_stock": True}

    r = requests.put(f"{proxy_url}/{catalogue}/_doc/new-reel?refresh=true", headers=admin_headers, timeout=120,
                     json=product)

    assert r.status_code == 201 and r.json()["result"] == "created", r.text
    stored = read_with_vectors(client, index, ["new-reel"])["new-reel"]
    assert stored["price"] == 49.99 and 0 <= stored["price_norm"] <= 1 and stored["in_stock"] is True
    assert stored["category_path"] == ["Outdoors", "Outdoors > Garden"] and stored["category"] == "Garden"
    assert stored["model_version"] and stored["content_hash"]
    query = encoder.encode(["garden hose reel"])[0].tolist()
    assert _nearest(client, index, query)[0] == "new-reel"


def test_a_change_written_meanwhile_is_kept_when_a_new_title_is_encoded_on_the_workers(shop, client, settings):
    catalogue, index, product = shop
    workers = runner(settings, chunk_timeout=120)

    class MeanwhileRunner:
        """The real workers; while the title is read and decided, the shop marks the product out of stock."""
        calls = 0

        def encode_and_write(self, payloads):
            MeanwhileRunner.calls += 1
            if MeanwhileRunner.calls == 1:
                meanwhile, = write_products(client, workers, [Write(index, product, {"in_stock": False}, change=True)])
                assert meanwhile.result == "updated"
            return workers.encode_and_write(payloads)

    answer, = write_products(client, MeanwhileRunner(), [Write(catalogue, product, {"title": "Cordless Hammer Drill"},
                                                                change=True)], refresh=True)

    assert answer.result == "updated" and MeanwhileRunner.calls == 2  # refused over the older copy, decided again
    stored = read_with_vectors(client, index, [product])[product]
    assert stored["title"] == "Cordless Hammer Drill" and stored["in_stock"] is False  # neither write lost
    assert answer.seq_no == client.get(index=index, id=product)["_seq_no"]


def test_a_create_of_a_product_written_meanwhile_is_a_409_and_leaves_that_product(shop, client, settings):
    catalogue, index, _ = shop
    workers = runner(settings, chunk_timeout=120)

    class MeanwhileRunner:
        """The real workers; while the new product is encoded, another client writes the same id."""
        def encode_and_write(self, payloads):
            other, = write_products(client, workers, [Write(index, "new-1", {"title": "Garden Hose Reel"})])
            assert other.result == "created"
            return workers.encode_and_write(payloads)

    answer, = write_products(client, MeanwhileRunner(), [Write(catalogue, "new-1", {"title": "Copper Pipe Fitting"},
                                                                create=True)], refresh=True)

    assert answer.error.status == 409 and "already in" in str(answer.error)
    assert client.get(index=index, id="new-1")["_source"]["title"] == "Garden Hose Reel"


class RetriedRunner:
    """The real workers, answering as a worker does that retried its chunk after writing it (a 503
    mid-chunk): the chunk is written once, then sent again, and its conditional write meets the first."""

    def __init__(self, workers):
        self.workers, self.calls = workers, 0

    def encode_and_write(self, payloads):
        self.calls += 1
        if self.calls == 1:
            list(self.workers.encode_and_write(payloads))  # the attempt that wrote before it failed
        return self.workers.encode_and_write(payloads)


def test_a_change_and_a_create_a_worker_wrote_before_retrying_its_chunk_answer_updated_and_created(
        shop, client, settings):
    catalogue, index, product = shop
    workers = runner(settings, chunk_timeout=120)

    changed, = write_products(client, RetriedRunner(workers), [Write(catalogue, product, {"title": "Angle Grinder"},
                                                                     change=True)], refresh=True)
    created, = write_products(client, RetriedRunner(workers), [Write(catalogue, "new-2", {"title": "Tile Saw"},
                                                                     create=True)], refresh=True)

    assert changed.result == "updated" and changed.encoded  # not "noop": the product changed, by this write
    assert created.result == "created"  # not a 409: the product there is the one this write created
    assert read_with_vectors(client, index, [product])[product]["title"] == "Angle Grinder"
    assert client.get(index=index, id="new-2")["_source"]["title"] == "Tile Saw"
    assert created.seq_no == client.get(index=index, id="new-2")["_seq_no"]


def test_a_product_written_through_the_alias_during_a_rollout_reaches_the_version_being_built(
        shop, client, settings, proxy_url, admin_headers):
    catalogue, index, _ = shop
    meta = client.indices.get_mapping(index=index)[index]["mappings"]["_meta"]
    building = create_catalogue_version(client, settings, catalogue, switch=False, extra_meta={
        "scales": meta["scales"], "rollout": {"origin": index, "step": "filled"}})

    r = requests.put(f"{proxy_url}/{catalogue}/_doc/late?refresh=true", headers=admin_headers, timeout=120,
                     json={"title": "Brass Cabinet Knob", "price": 3.99})

    assert r.status_code == 201 and r.json()["_index"] == index, r.text
    for version in (index, building):
        stored = read_with_vectors(client, version, ["late"])["late"]
        assert stored["price"] == 3.99 and len(stored["fused_vector"]) == meta["text_dim"]
    assert list(client.indices.get_alias(name=catalogue)) == [index]


def test_a_product_no_worker_encodes_in_time_is_a_503_saying_so_and_is_not_written(shop, client, settings):
    catalogue, index, _ = shop
    unheard = settings.redis_url.rsplit("/", 1)[0] + "/9"  # a broker no worker consumes from
    app = create_app(settings.replace(admin_token="t" * 40, product_write_timeout=1.0, broker_url=unheard),
                     face="internal")
    try:
        r = app.test_client().put(f"/{catalogue}/_doc/slow", json={"title": "Copper Pipe Fitting"},
                                  headers={"X-Admin-Token": "t" * 40})
    finally:
        redis.Redis.from_url(unheard).flushdb()  # the queued chain, which no worker will take

    assert r.status_code == 503 and "could not be encoded and written" in r.json["message"], r.json
    assert "TimeoutError" in r.json["message"]
    assert not client.exists(index=index, id="slow")


def test_an_ingest_that_writes_a_product_again_keeps_its_stock_and_its_popularity_from_events(
        shop, client, settings, proxy_url, admin_headers, tmp_path):
    catalogue, index, product = shop
    requests.post(f"{proxy_url}/{catalogue}/_update/{product}", headers=admin_headers, timeout=60,
                  json={"doc": {"in_stock": False}}).raise_for_status()
    update_keeping_vectors(client, index, {product: {"popularity": 5.0, "popularity_norm": 0.25}}, refresh=True)
    rows = PRODUCTS.read_text(encoding="utf-8").splitlines()[:7]
    changed = tmp_path / "products.tsv"  # the same products, the first one renamed, beside the same side tables
    for table in ("colors.tsv", "materials.tsv"):
        (tmp_path / table).symlink_to(PRODUCTS.parent / table)
    changed.write_text("\n".join([rows[0]] + [f"{product}\tRenamed Angle Bracket"] + [
        r for r in rows[1:] if not r.startswith(product)]) + "\n", encoding="utf-8")

    summary = run_ingest(settings, changed, catalogue, mapping="homedepot")

    assert summary.encoded == 1 and summary.indexed == 1
    stored = read_with_vectors(client, index, [product])[product]
    assert stored["title"] == "Renamed Angle Bracket"
    assert stored["in_stock"] is False and stored["popularity"] == 5.0 and stored["popularity_norm"] == 0.25


def test_a_bad_product_is_refused_with_its_reason_and_nothing_is_written(shop, client, proxy_url, admin_headers):
    catalogue, index, product = shop
    seq_no = client.get(index=index, id=product)["_seq_no"]
    refusals = [
        ("PUT", f"/{catalogue}/_doc/bad", {"title": "Hose", "price": "-3"}, 400, "price"),
        ("PUT", f"/{catalogue}/_doc/bad", {"price": 3}, 400, "title"),
        ("POST", f"/{catalogue}/_update/{product}", {"doc": {"price_norm": 0.9}}, 400, "price_norm"),
        ("POST", f"/{catalogue}/_update/{product}", {"doc": {"in_stock": "yes"}}, 400, "in_stock"),
        ("POST", f"/{catalogue}/_update/{product}", {"script": {"source": "ctx._source.price = 1"}}, 400, "script"),
        ("POST", f"/{catalogue}/_update/{product}", {"doc": {"price": 2}, "doc_as_upsert": True}, 400, "doc_as_upsert"),
        ("POST", f"/{catalogue}/_update/{product}?if_seq_no=1", {"doc": {"price": 2}}, 400, "if_seq_no"),
        ("POST", f"/{catalogue}/_update/missing", {"doc": {"price": 2}}, 404, "missing"),
        ("PUT", f"/{catalogue}/_create/{product}", {"title": "Again", "price": 3}, 409, "already"),
    ]
    for method, path, body, status, said in refusals:
        r = requests.request(method, proxy_url + path, json=body, headers=admin_headers, timeout=60)
        assert r.status_code == status, (path, body, r.status_code, r.text)
        assert said in r.json()["message"], (path, r.json())
    assert client.get(index=index, id=product)["_seq_no"] == seq_no
    assert not client.exists(index=index, id="bad")


def test_a_bulk_applies_its_product_lines_in_order_answers_each_and_forwards_the_rest(
        shop, client, proxy_url, admin_headers, encoder):
    catalogue, index, product = shop
    other = f"{catalogue}-notes"
    before = read_with_vectors(client, index, [product])[product]
    lines = [
        {"update": {"_index": catalogue, "_id": product}}, {"doc": {"in_stock": False}},
        {"index": {"_index": catalogue, "_id": "b1"}}, {"title": "Cedar Fence Picket"},
        {"update": {"_index": catalogue, "_id": "b1"}}, {"doc": {"price": "12.50"}},
        {"index": {"_index": catalogue, "_id": "bad"}}, {"title": "Hose", "price": "-3"},
        {"index": {"_index": other, "_id": "n1"}}, {"line": "not a product"},
        {"delete": {"_index": catalogue, "_id": "b1"}},
        {"index": {"_index": catalogue, "_id": "b1"}}, {"title": "Cedar Fence Picket", "price": 9},
    ]
    body = "".join(json.dumps(line) + "\n" for line in lines)

    try:
        r = requests.post(f"{proxy_url}/_bulk?refresh=true", data=body, timeout=120,
                          headers={**admin_headers, "Content-Type": "application/x-ndjson"})
        assert r.status_code == 200, r.text
        items = [next(iter(i.items())) for i in r.json()["items"]]
        assert [(action, item["status"]) for action, item in items] == [
            ("update", 200), ("index", 201), ("update", 200), ("index", 400), ("index", 201), ("delete", 200),
            ("index", 201)]
        assert r.json()["errors"] is True and "price_negative" in items[3][1]["error"]["type"]
        assert client.get(index=other, id="n1")["_source"] == {"line": "not a product"}  # forwarded
    finally:
        client.indices.delete(index=other, ignore_unavailable=True)
    changed = read_with_vectors(client, index, [product, "b1"])
    assert changed[product]["in_stock"] is False and changed[product]["fused_vector"] == before["fused_vector"]
    assert changed["b1"]["price"] == 9.0 and "fused_vector" in changed["b1"]  # the last of b1's lines, encoded
    assert not client.exists(index=index, id="bad")
    query = encoder.encode(["cedar fence picket"])[0].tolist()
    assert _nearest(client, index, query)[0] == "b1"


def test_a_write_key_changes_a_product_the_same_way_and_a_read_key_cannot(shop, client, settings, proxy_url):
    catalogue, index, product = shop
    before = read_with_vectors(client, index, [product])[product]
    _, writer = api_keys.create_key(client, settings, "test-product-writer", "write")
    _, reader = api_keys.create_key(client, settings, "test-product-reader", "read")
    try:
        refused = requests.post(f"{proxy_url}/{catalogue}/_update/{product}", headers={"X-Api-Key": reader},
                                json={"doc": {"in_stock": False}}, timeout=60)
        r = requests.post(f"{proxy_url}/{catalogue}/_update/{product}?refresh=wait_for",
                          headers={"X-Api-Key": writer}, json={"doc": {"in_stock": False}}, timeout=60)
    finally:
        api_keys.revoke_key(client, settings, "test-product-writer")
        api_keys.revoke_key(client, settings, "test-product-reader")

    assert refused.status_code == 403
    assert r.status_code == 200 and r.json()["result"] == "updated", r.text
    after = read_with_vectors(client, index, [product])[product]
    assert after["in_stock"] is False and after["fused_vector"] == before["fused_vector"]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=6)


@hypothesis_settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(st.sampled_from(WRITABLE), JSON, max_size=6))
def test_any_json_product_is_cleaned_or_refused_with_a_reason_never_an_error(fields):
    scales = fit_catalogue_scales([{"price": 1.0}, {"price": 100.0}])
    try:
        check_writable(fields, "7")
        clean_product({**fields, "id": "7"}, scales, 5.0)
        changed_product({"id": "7", "title": "Mug"}, fields, scales, 5.0)
    except Rejected as e:
        assert e.reason and e.detail
