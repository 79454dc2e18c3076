"""API keys with roles on the internal face, kept in the project's own index: each role opens
what it says and nothing more, a revoked or forged key is refused, only hashes are stored.
Real proxy over real HTTP, real OpenSearch."""

import json

import pytest
import requests
from click.testing import CliRunner
from opensearchpy import helpers

from shopsearch.cli import main
from shopsearch.index import api_keys


@pytest.fixture(scope="module")
def keys(services, settings, client):
    """One key of each role, made through the CLI; revoked afterwards."""
    made = {}
    for role in api_keys.ROLES:
        result = CliRunner().invoke(main, ["keys", "create", f"test-{role}", "--role", role])
        assert result.exit_code == 0, result.output
        made[role] = result.stdout.strip().splitlines()[0]
    yield made
    for role in api_keys.ROLES:
        CliRunner().invoke(main, ["keys", "revoke", f"test-{role}"])


@pytest.fixture
def shop(client, catalogue):
    index = f"{catalogue}-v1"
    client.indices.create(index=index, body={"mappings": {"properties": {"title": {"type": "text"}}}})
    helpers.bulk(client, [{"_index": index, "_id": str(i), "title": f"shoe {i}"} for i in range(5)], refresh=True)
    client.indices.put_alias(index=index, name=catalogue)
    return catalogue


@pytest.fixture
def other_index(client, catalogue):
    """An index that is no catalogue: anonymous callers may not read it, keys may."""
    name = f"{catalogue}-logs"
    client.index(index=name, id="1", body={"line": "hello"}, refresh=True)
    yield name
    client.indices.delete(index=name, ignore_unavailable=True)


def _as(key):
    return {"X-Api-Key": key}


def test_the_key_is_shown_once_and_only_its_hash_is_stored(keys, client, settings):
    stored = client.search(index=settings.api_keys_index, body={"size": 100})["hits"]["hits"]
    text = json.dumps(stored)
    # the secret is what follows ``ssk_<id>_`` (it may hold "_" itself: the last "_" is not its start)
    assert all(key not in text and api_keys.parse_key(key)[1] not in text for key in keys.values())
    listed = CliRunner().invoke(main, ["keys", "list"]).stdout
    assert "test-read\tread" in listed and all(key not in listed for key in keys.values())


def test_a_read_key_reads_any_index_but_the_projects_own_and_writes_nothing(keys, proxy_url, other_index, shop,
                                                                         settings):
    assert requests.get(f"{proxy_url}/{other_index}/_search", timeout=30).status_code == 403  # anonymous
    r = requests.get(f"{proxy_url}/{other_index}/_search", headers=_as(keys["read"]), timeout=30)
    assert r.status_code == 200 and r.json()["hits"]["total"]["value"] == 1
    assert requests.get(f"{proxy_url}/{settings.ubi_events_index}/_search", headers=_as(keys["read"]),
                        timeout=30).status_code == 403
    assert requests.get(f"{proxy_url}/{settings.api_keys_index}/_search", headers=_as(keys["read"]),
                        timeout=30).status_code == 403
    assert requests.put(f"{proxy_url}/{shop}/_doc/planted", json={"title": "x"}, headers=_as(keys["read"]),
                        timeout=30).status_code == 403


def test_a_write_key_writes_documents_but_never_mappings_aliases_scripts_or_indices(keys, proxy_url, shop, client,
                                                                                 settings):
    w = _as(keys["write"])
    assert requests.put(f"{proxy_url}/{shop}/_doc/new", json={"title": "new shoe"}, headers=w,
                        timeout=30).status_code == 201
    bulk = '{"index": {"_index": "%s", "_id": "b1"}}\n{"title": "bulk shoe"}\n{"delete": {"_index": "%s", "_id": "0"}}\n'
    r = requests.post(f"{proxy_url}/_bulk?refresh=true", data=bulk % (shop, shop), headers={**w, "Content-Type": "application/x-ndjson"},
                      timeout=30)
    assert r.status_code == 200 and not r.json()["errors"]
    assert client.count(index=shop)["count"] == 6  # 5 + new + b1 - 0
    sneaky = '{"index": {"_index": "%s", "_id": "x"}}\n{"a": 1}\n' % settings.ubi_events_index
    assert requests.post(f"{proxy_url}/_bulk", data=sneaky, headers={**w, "Content-Type": "application/x-ndjson"},
                         timeout=30).status_code == 403
    scripted = {"script": {"source": "ctx._source.title = 'x'", "lang": "painless"}}
    assert requests.post(f"{proxy_url}/{shop}/_update/1", json=scripted, headers=w, timeout=30).status_code == 400
    for method, path, body in [("PUT", f"/{shop}/_mapping", {"properties": {"x": {"type": "keyword"}}}),
                               ("POST", "/_aliases", {"actions": [{"remove": {"index": f"{shop}-v1", "alias": shop}}]}),
                               ("DELETE", f"/{shop}-v1", None), ("PUT", "/_scripts/planted", {"script": {"lang": "painless", "source": "1"}}),
                               ("PUT", "/_cluster/settings", {"transient": {}}), ("GET", "/admin/status", None)]:
        r = requests.request(method, proxy_url + path, json=body, headers=w, timeout=30)
        assert r.status_code == 403, (method, path, r.status_code)
    assert list(client.indices.get_alias(name=shop)) == [f"{shop}-v1"]


def test_an_admin_key_opens_what_the_admin_token_opens(keys, proxy_url):
    a = _as(keys["admin"])
    assert requests.get(f"{proxy_url}/_cluster/settings", headers=a, timeout=30).status_code == 200
    assert requests.get(f"{proxy_url}/admin/status", headers=a, timeout=60).status_code == 200
    assert requests.get(f"{proxy_url}/admin/status", headers={"Authorization": f"ApiKey {keys['admin']}"},
                        timeout=60).status_code == 200


def test_a_forged_or_revoked_key_is_401(services, settings, client, proxy_url, keys):
    forged = keys["admin"][:-4] + ("AAAA" if not keys["admin"].endswith("AAAA") else "BBBB")
    assert requests.get(f"{proxy_url}/_cluster/settings", headers=_as(forged), timeout=30).status_code == 401
    assert requests.get(f"{proxy_url}/_cluster/settings", headers=_as("ssk_nonsense"), timeout=30).status_code == 401
    key, secret = api_keys.create_key(client, settings, "test-short-lived", "read")
    from shopsearch.plugin.app import create_app
    web = create_app(settings.replace(api_key_cache_seconds=0), face="internal").test_client()
    assert web.get("/_cluster/health", headers=_as(secret)).status_code == 200
    api_keys.revoke_key(client, settings, "test-short-lived")
    assert web.get("/_cluster/health", headers=_as(secret)).status_code == 401


def test_the_public_face_takes_no_key(keys, public_url):
    assert requests.get(f"{public_url}/admin/status", headers=_as(keys["admin"]), timeout=30).status_code == 404


def test_bad_names_and_roles_are_refused(services, settings, client):
    with pytest.raises(api_keys.ApiKeyError, match="name"):
        api_keys.create_key(client, settings, "bad name!", "read")
    with pytest.raises(api_keys.ApiKeyError, match="role"):
        api_keys.create_key(client, settings, "ok-name", "root")
    result = CliRunner().invoke(main, ["keys", "revoke", "no-such-key"])
    assert result.exit_code != 0 and "no key is named" in result.output
