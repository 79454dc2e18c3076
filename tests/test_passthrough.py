"""Existing clients work unchanged through the proxy: opensearch-py's own calls, same answers."""

import pytest
from opensearchpy import NotFoundError, OpenSearch, helpers


@pytest.fixture
def via_proxy(proxy_url):
    return OpenSearch(hosts=[proxy_url], timeout=30)


def test_index_get_search_bulk_and_aliases_behave_as_direct(client, via_proxy, catalogue):
    index = f"{catalogue}-v1"
    via_proxy.indices.create(index=index, body={"mappings": {"properties": {"title": {"type": "text"}}}})
    via_proxy.index(index=index, id="1", body={"title": "black running shoes"}, refresh=True)
    assert via_proxy.get(index=index, id="1")["_source"] == client.get(index=index, id="1")["_source"]
    ok, errors = helpers.bulk(via_proxy, [{"_index": index, "_id": str(i), "title": f"shoe {i}"} for i in range(2, 50)],
                              refresh=True)
    assert ok == 48 and not errors
    query = {"query": {"match": {"title": "shoes"}}, "sort": ["_doc"]}
    assert via_proxy.search(index=index, body=query)["hits"] == client.search(index=index, body=query)["hits"]
    via_proxy.indices.put_alias(index=index, name=catalogue)
    assert list(client.indices.get_alias(name=catalogue)) == [index]
    msearch = via_proxy.msearch(body=[{"index": index}, {"query": {"match_all": {}}}, {"index": index}, {"size": 0}])
    assert [r["status"] for r in msearch["responses"]] == [200, 200]


def test_errors_come_back_unchanged(client, via_proxy, catalogue):
    with pytest.raises(NotFoundError) as through_proxy:
        via_proxy.get(index=f"{catalogue}-missing", id="1")
    with pytest.raises(NotFoundError) as direct:
        client.get(index=f"{catalogue}-missing", id="1")
    assert through_proxy.value.status_code == direct.value.status_code == 404
    assert through_proxy.value.info == direct.value.info


def test_large_responses_arrive_whole(client, via_proxy, catalogue):
    index = f"{catalogue}-v1"
    helpers.bulk(client, [{"_index": index, "_id": str(i), "text": "x" * 2000} for i in range(600)], refresh=True)
    hits = via_proxy.search(index=index, body={"size": 600, "query": {"match_all": {}}})["hits"]["hits"]
    assert len(hits) == 600


def test_healthz_reports_the_cluster(proxy_url):
    import requests
    r = requests.get(f"{proxy_url}/healthz", timeout=5)
    assert r.status_code == 200 and r.json()["cluster"] == "green"
