"""Catalogue ingest end to end: real files, real workers over the real broker, real OpenSearch
(a worker killed mid-ingest: ``test_faults_worker.py``)."""

import csv
import json

import pytest

from shopsearch.workers.dispatch import run_ingest
from shopsearch.index.vectors import with_vectors

from .conftest import DATA, ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "broken_catalogue.jsonl"


def _docs(client, catalogue, size=1000, **query):
    body = {"size": size, "query": query or {"match_all": {}}, "_source": {"excludes": ["*_vector"]}}
    return {h["_id"]: h["_source"] for h in client.search(index=catalogue, body=body)["hits"]["hits"]}


@pytest.fixture(scope="module")
def fashion_with_images(tmp_path_factory):
    """500 real Myntra products that have a picture, as a TSV beside nothing else."""
    src = DATA / "fashion"
    out = tmp_path_factory.mktemp("fashion") / "products.tsv"
    with open(src / "products.tsv", encoding="utf-8", newline="") as f, open(out, "w", encoding="utf-8", newline="") as g:
        reader = csv.DictReader(f, delimiter="\t")
        writer = csv.DictWriter(g, reader.fieldnames, delimiter="\t")
        writer.writeheader()
        n = 0
        for row in reader:
            if n < 500 and (src / "images" / f"{row['id']}.jpg").exists():
                writer.writerow(row)
                n += 1
    return out


def test_500_fashion_products_are_indexed_with_text_image_and_fused_vectors(client, settings, catalogue, fashion_with_images, encoder):
    summary = run_ingest(settings, fashion_with_images, catalogue, mapping="fashion", images=DATA / "fashion")
    assert summary.complete and summary.indexed == summary.read == 500
    assert client.count(index=catalogue)["count"] == 500
    # the run built the catalogue's first version: merged to one segment (setting build_max_segments)
    assert summary.merged["segments"] == 1 and "merge" in summary.timings
    hit = client.search(index=catalogue, body={"size": 1, "query": {"match_all": {}}})["hits"]["hits"][0]
    # the k-NN fields are not in the stored source (a search's fetch stays cheap); their compact copy is
    assert not any(k.endswith("_vector") for k in hit["_source"]) and set(hit["_source"]["vector_copy"]) == {"fused", "text", "image"}
    doc = with_vectors(hit["_source"])
    assert len(doc["text_vector"]) == len(doc["image_vector"]) == len(doc["fused_vector"]) == encoder.dimension
    assert doc["has_image"] is True
    # the sample holds 7 deodorants: a text query finds them through the fused vector, and through
    # the image vector alone, which shows the learned projection put pictures in the text space
    vector = encoder.encode(["deodorant"])[0].tolist()
    for field in ("fused_vector", "image_vector"):
        hits = client.search(index=catalogue, body={"size": 5, "_source": ["category"],
                                                    "query": {"knn": {field: {"vector": vector, "k": 5}}}})["hits"]["hits"]
        assert sum(h["_source"]["category"] == "Deodorant" for h in hits) >= 4, field


def test_each_broken_record_lands_where_the_rules_say(client, settings, catalogue):
    summary = run_ingest(settings, FIXTURE, catalogue, mapping="generic_jsonl", images=FIXTURE.parent)
    assert summary.read == 15
    assert dict(summary.rejected) == {"missing_title": 1, "price_unparseable": 1, "rating_out_of_range": 1, "unparseable": 1}
    assert summary.superseded == 1
    assert summary.accepted == summary.indexed == 10 and summary.complete
    assert summary.read == summary.accepted + sum(summary.rejected.values()) + summary.superseded
    dead = [json.loads(line) for line in open(summary.dead_letters, encoding="utf-8")]
    assert sorted(d["reason"] for d in dead) == sorted(["missing_title", "price_unparseable", "rating_out_of_range",
                                                        "unparseable", "duplicate_id_superseded"])
    assert all("record" in d for d in dead)
    docs = _docs(client, catalogue)
    assert docs["sku-003"]["title"] == "NIKE Air Max 90"  # full-width folded
    assert docs["sku-004"]["price"] == 1299.0
    assert docs["sku-006"]["price"] == 1299.0
    assert docs["sku-009"]["title"] == "New Title Rain Jacket"  # the later record won
    assert "<" not in docs["sku-002"]["description"] and "track(" not in docs["sku-002"]["description"]
    assert docs["sku-010"]["has_image"] is False and "image_unreadable" in docs["sku-010"]["flags"]
    assert docs["sku-011"]["has_image"] is False and "image_unreadable" in docs["sku-011"]["flags"]
    assert docs["sku-001"]["has_image"] is True
    assert docs["sku-012"]["duplicate_group"] == docs["sku-013"]["duplicate_group"]


def test_a_chinese_title_is_cleaned_and_found_by_a_chinese_query(client, settings, catalogue):
    run_ingest(settings, FIXTURE, catalogue, mapping="generic_jsonl", images=FIXTURE.parent)
    found = client.search(index=catalogue, body={"query": {"match": {"title.zh": "运动鞋"}}})["hits"]["hits"]
    assert [h["_id"] for h in found] == ["sku-004"]
    assert found[0]["_source"]["title"] == "耐克 黑色运动鞋 AIR"


def test_reingest_skips_unchanged_items_and_reencodes_exactly_the_changed_one(client, settings, catalogue, tmp_path):
    first = run_ingest(settings, FIXTURE, catalogue, mapping="generic_jsonl", images=FIXTURE.parent)
    again = run_ingest(settings, FIXTURE, catalogue, mapping="generic_jsonl", images=FIXTURE.parent)
    assert again.encoded == 0 and again.skipped_unchanged == first.accepted and again.complete
    changed = tmp_path / "catalogue.jsonl"
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    changed.write_text("\n".join(l.replace("Hiking Backpack", "Hiking Backpack 40L") for l in lines) + "\n", encoding="utf-8")
    third = run_ingest(settings, changed, catalogue, mapping="generic_jsonl", images=FIXTURE.parent)
    assert third.encoded == 1 and third.skipped_unchanged == first.accepted - 1
    assert _docs(client, catalogue)["sku-010"]["title"] == "Hiking Backpack 40L"


@pytest.mark.parametrize("content", [None, "", "\n\n", '{"id": "1", "title": ""}\n{"id": "2"}\n'])
def test_a_source_without_one_usable_record_is_refused_and_changes_nothing(settings, client, catalogue, tmp_path, content):
    """A missing, empty, header-only or all-rejected file: a clear error, and no (empty) live catalogue."""
    from shopsearch.errors import InputError
    from shopsearch.index.versions import live_index
    path = tmp_path / "products.jsonl"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as refused:
        run_ingest(settings, path, catalogue, mapping="generic_jsonl")
    assert refused.value.field == "path" and str(path) in str(refused.value)
    assert live_index(client, catalogue) is None
