"""Existing clients work through the proxy: shoppers' reads of catalogues without a credential,
everything else with the admin credential, answers the same as direct. Served over real HTTP
(werkzeug) in front of the project's real OpenSearch."""

import socket

import pytest
import requests
from opensearchpy import AuthorizationException, NotFoundError, OpenSearch, helpers


@pytest.fixture
def as_admin(proxy_url, admin_headers):
    return OpenSearch(hosts=[proxy_url], timeout=30, headers=admin_headers)


@pytest.fixture
def as_shopper(proxy_url):
    return OpenSearch(hosts=[proxy_url], timeout=30)


@pytest.fixture
def shop(client, catalogue):
    """A catalogue: ``<catalogue>-v1`` behind the alias ``<catalogue>``, 49 shoes."""
    index = f"{catalogue}-v1"
    client.indices.create(index=index, body={"mappings": {"properties": {"title": {"type": "text"}}}})
    helpers.bulk(client, [{"_index": index, "_id": str(i), "title": f"black running shoe {i}"} for i in range(1, 50)],
                 refresh=True)
    client.indices.put_alias(index=index, name=catalogue)
    return catalogue


def test_with_the_admin_credential_index_get_search_bulk_and_aliases_behave_as_direct(client, as_admin, catalogue):
    index = f"{catalogue}-v1"
    as_admin.indices.create(index=index, body={"mappings": {"properties": {"title": {"type": "text"}}}})
    as_admin.index(index=index, id="1", body={"title": "black running shoes"}, refresh=True)
    assert as_admin.get(index=index, id="1")["_source"] == client.get(index=index, id="1")["_source"]
    ok, errors = helpers.bulk(as_admin, [{"_index": index, "_id": str(i), "title": f"shoe {i}"} for i in range(2, 50)],
                              refresh=True)
    assert ok == 48 and not errors
    query = {"query": {"match": {"title": "shoes"}}, "sort": ["_doc"]}
    assert as_admin.search(index=index, body=query)["hits"] == client.search(index=index, body=query)["hits"]
    as_admin.indices.put_alias(index=index, name=catalogue)
    assert list(client.indices.get_alias(name=catalogue)) == [index]
    msearch = as_admin.msearch(body=[{"index": index}, {"query": {"match_all": {}}}, {"index": index}, {"size": 0}])
    assert [r["status"] for r in msearch["responses"]] == [200, 200]


def test_a_shopper_client_reads_a_catalogue_as_direct(client, as_shopper, shop):
    query = {"query": {"match": {"title": "shoe"}}, "sort": ["_doc"], "size": 5}
    assert as_shopper.search(index=shop, body=query)["hits"] == client.search(index=shop, body=query)["hits"]
    assert as_shopper.count(index=shop)["count"] == 49
    assert as_shopper.get(index=shop, id="7")["_source"] == client.get(index=shop, id="7")["_source"]
    assert as_shopper.mget(index=shop, body={"ids": ["1", "2"]})["docs"][1]["found"]
    msearch = as_shopper.msearch(index=shop, body=[{}, {"query": {"match_all": {}}}, {"index": shop}, {"size": 0}])
    assert [r["status"] for r in msearch["responses"]] == [200, 200]
    assert as_shopper.cluster.health()["status"] in ("green", "yellow")


@pytest.mark.parametrize("call", [
    lambda os, shop: os.index(index=shop, id="x", body={"title": "planted"}, refresh=True),
    lambda os, shop: os.delete(index=shop, id="1", refresh=True),
    lambda os, shop: os.delete_by_query(index=shop, body={"query": {"match_all": {}}}, refresh=True),
    lambda os, shop: os.indices.delete(index=f"{shop}-v1"),
    lambda os, shop: os.indices.put_mapping(index=shop, body={"properties": {"planted": {"type": "keyword"}}}),
    lambda os, shop: os.indices.update_aliases(body={"actions": [{"remove": {"index": f"{shop}-v1", "alias": shop}}]}),
    lambda os, shop: os.put_script(id="shopsearch-personalise-v2", body={"script": {"lang": "painless", "source": "1"}}),
    lambda os, shop: helpers.bulk(os, [{"_op_type": "delete", "_index": shop, "_id": "1"}]),
    lambda os, shop: os.search(index="ubi_events", body={"query": {"match_all": {}}}),
    lambda os, shop: os.msearch(body=[{"index": "ubi_queries"}, {"query": {"match_all": {}}}]),
    lambda os, shop: os.msearch(body=[{}, {"query": {"match_all": {}}}]),  # no index: every index
    lambda os, shop: os.mget(body={"docs": [{"_index": "shopsearch-profiles", "_id": "x"}]}),
    lambda os, shop: os.search(index=f"{shop}*", body={}),
    lambda os, shop: os.search(index=f"{shop},ubi_events", body={}),
    lambda os, shop: os.cluster.put_settings(body={"transient": {"cluster.routing.allocation.enable": "none"}}),
    lambda os, shop: os.nodes.info(),
])
def test_without_a_credential_nothing_else_reaches_opensearch(client, as_shopper, shop, call):
    before = client.search(index=shop, body={"size": 100, "sort": ["_doc"]})["hits"]["hits"]
    with pytest.raises(AuthorizationException) as refused:
        call(as_shopper, shop)
    assert refused.value.status_code == 403
    assert "admin credential" in str(refused.value.info)
    assert client.search(index=shop, body={"size": 100, "sort": ["_doc"]})["hits"]["hits"] == before
    assert list(client.indices.get_alias(name=shop)) == [f"{shop}-v1"]


def _raw(proxy_url: str, method: str, target: str) -> tuple[int, bytes]:
    """One request with the target sent exactly as written (no client normalises it)."""
    host, port = proxy_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


@pytest.mark.parametrize("method,target", [
    ("GET", "/_cluster/./settings"),
    ("GET", "/_cluster/zz/../settings"),
    ("GET", "/_cluster/%2573ettings"),
    ("GET", "/_cluster/%73ettings"),
    ("GET", "/_cluster/settings%23"),
    ("GET", "/_cluster/settings%3F"),
    ("GET", "/_snapshot%23"),
    ("GET", "/%255Fsnapshot"),
    ("GET", "/%5Fsnapshot"),
    ("GET", "/_cluster/settings%2f"),
    ("PUT", "/_cluster/./settings"),
    ("GET", "/shop/zz/../../_cat/indices"),
    ("GET", "/shop%2F..%2F_cat%2Findices"),
    ("GET", "/SHOP/../_cluster/settings"),
    ("GET", "//_cluster/settings"),
    ("GET", "/_cluster/settings/."),
    ("GET", "/_CLUSTER/SETTINGS"),
    ("GET", "/_cluster/settings?"),
    ("DELETE", "/%2A"),
    ("GET", "/ubi_events/_search"),
    ("GET", "/ubi_%65vents/_search"),
])
def test_path_tricks_are_refused_before_anything_is_forwarded(proxy_url, method, target):
    status, body = _raw(proxy_url, method, target)
    assert status in (400, 403), (status, body[:200])
    assert b'"request_id"' in body  # the proxy's own answer, not OpenSearch's


def test_the_target_is_forwarded_byte_for_byte(client, proxy_url, admin_headers, shop):
    """``%2F`` in a document id stays one segment: the id holds a slash, as direct."""
    r = requests.put(f"{proxy_url}/{shop}-v1/_doc/a%2Fb?refresh=true", json={"title": "slash"}, headers=admin_headers,
                     timeout=30)
    assert r.status_code == 201, r.text
    assert client.get(index=shop, id="a/b")["_source"] == {"title": "slash"}
    status, body = _raw(proxy_url, "GET", f"/{shop}/_doc/a%2Fb")
    assert status == 200 and b'"_id":"a/b"' in body


def test_errors_come_back_unchanged(client, as_admin, catalogue):
    with pytest.raises(NotFoundError) as through_proxy:
        as_admin.get(index=f"{catalogue}-missing", id="1")
    with pytest.raises(NotFoundError) as direct:
        client.get(index=f"{catalogue}-missing", id="1")
    assert through_proxy.value.status_code == direct.value.status_code == 404
    assert through_proxy.value.info == direct.value.info


def test_large_responses_arrive_whole(client, as_shopper, shop):
    helpers.bulk(client, [{"_index": f"{shop}-v1", "_id": str(i), "text": "x" * 2000} for i in range(600)], refresh=True)
    hits = as_shopper.search(index=shop, body={"size": 600, "query": {"match_all": {}}})["hits"]["hits"]
    assert len(hits) == 600


def test_healthz_reports_the_cluster(proxy_url):
    r = requests.get(f"{proxy_url}/healthz", timeout=5)
    assert r.status_code == 200 and r.json()["cluster"] == "green"
