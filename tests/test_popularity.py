"""Popularity from click logs, written into the live catalogue without losing anything else of a
product: its vectors (kept out of the stored ``_source``), or a newer copy an ingest wrote meanwhile."""

import uuid

from shopsearch.index import vectors
from shopsearch.index.ubi import ensure_ubi_indices
from shopsearch.index.vectors import read_with_vectors, update_keeping_vectors
from shopsearch.learn.popularity import update_popularity
from shopsearch.workers.dispatch import run_ingest

from .conftest import DATA

PRODUCTS = DATA / "homedepot" / "products.tsv"


def _nearest(client, index, vector, k=5):
    body = {"size": k, "_source": False, "query": {"knn": {"fused_vector": {"vector": vector, "k": k}}}}
    return [h["_id"] for h in client.search(index=index, body=body)["hits"]["hits"]]


def _click(client, settings, catalogue, product):
    ensure_ubi_indices(client, settings)
    client.index(index=settings.ubi_events_index, refresh=True, body={
        "event_id": uuid.uuid4().hex, "user_id": "u", "catalogue": catalogue, "action_name": "purchase",
        "object_id": product, "timestamp": "2026-01-01T00:00:00Z"})


def test_a_product_shoppers_bought_is_still_found_by_its_vector_after_its_popularity_is_counted(
        client, settings, catalogue):
    index = run_ingest(settings, PRODUCTS, catalogue, mapping="homedepot", limit=8).index
    product = client.search(index=index, body={"size": 1, "sort": ["id"]})["hits"]["hits"][0]["_id"]
    vector = read_with_vectors(client, index, [product])[product]["fused_vector"]
    assert _nearest(client, index, vector)[0] == product
    _click(client, settings, catalogue, product)

    counted = update_popularity(client, settings, catalogue)

    assert counted["products_updated"] == 1
    stored = read_with_vectors(client, index, [product])[product]
    assert stored["popularity"] == 5 and stored["popularity_norm"] > 0
    assert stored["fused_vector"] == vector
    assert _nearest(client, index, vector)[0] == product  # the update API would have dropped it from k-NN


def test_a_count_that_did_not_change_writes_nothing(client, settings, catalogue):
    index = run_ingest(settings, PRODUCTS, catalogue, mapping="homedepot", limit=3).index
    product = client.search(index=index, body={"size": 1})["hits"]["hits"][0]["_id"]
    _click(client, settings, catalogue, product)
    assert update_popularity(client, settings, catalogue)["products_updated"] == 1
    seq_no = client.get(index=index, id=product)["_seq_no"]

    assert update_popularity(client, settings, catalogue)["products_updated"] == 0
    assert client.get(index=index, id=product)["_seq_no"] == seq_no


def test_a_product_an_ingest_rewrote_between_the_read_and_the_write_keeps_the_newer_copy(
        client, settings, catalogue, monkeypatch):
    index = run_ingest(settings, PRODUCTS, catalogue, mapping="homedepot", limit=3).index
    product = client.search(index=index, body={"size": 1})["hits"]["hits"][0]["_id"]
    real_bulk, raced = vectors.helpers.streaming_bulk, []

    def bulk_after_another_writer(*args, **kwargs):  # an ingest writes the product after our read
        if not raced:
            source = client.get(index=index, id=product)["_source"]
            client.index(index=index, id=product, body={**source, "title": "Renamed by a later ingest"}, refresh=True)
            raced.append(True)
        return real_bulk(*args, **kwargs)
    monkeypatch.setattr(vectors.helpers, "streaming_bulk", bulk_after_another_writer)

    assert update_keeping_vectors(client, index, {product: {"popularity": 7}}, refresh=True) == 1

    source = client.get(index=index, id=product)["_source"]
    assert source["title"] == "Renamed by a later ingest" and source["popularity"] == 7


def test_a_missing_product_is_skipped(client, settings, catalogue):
    index = run_ingest(settings, PRODUCTS, catalogue, mapping="homedepot", limit=2).index
    assert update_keeping_vectors(client, index, {"no-such-product": {"popularity": 1}}) == 0
