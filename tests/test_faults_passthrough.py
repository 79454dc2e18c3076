"""The pass-through forwards the request target byte for byte: encoded and unusual index names,
query strings and methods get the answer OpenSearch gives them directly."""

import pytest
import requests

# (method, path and query as sent, byte for byte)
TARGETS = [
    ("GET", "/a%2Fb/_search"),                      # an encoded '/': invalid_index_name_exception, not "no handler"
    ("GET", "/a%2Fb/_doc/1"),
    ("PUT", "/a%2Fb"),
    ("GET", "/%3Cfaults-%7Bnow%2Fd%7D%3E/_search"),  # date math in an encoded name
    ("GET", "/faults%20space/_search"),
    ("GET", "/FaultsUpper/_search"),
    ("GET", "/faults%2Cother/_search?ignore_unavailable=true"),
    ("GET", "/_cat/indices/faults*?format=json&h=index&s=index"),
    ("GET", "/faults-missing/_search?q=title:%22a%20b%22"),
    ("HEAD", "/faults-missing"),
]


def _send(base: str, method: str, target: str, headers: dict | None = None) -> requests.Response:
    with requests.Session() as s:
        prepared = requests.Request(method, base + "/", headers=headers or {}).prepare()
        prepared.url = base + target  # as written: no re-quoting by requests
        return s.send(prepared, timeout=30)


def _essence(r: requests.Response):
    try:
        body = r.json()
    except ValueError:
        return r.status_code, r.text.strip()[:200]
    if isinstance(body, dict) and "error" in body:
        err = body["error"]
        return r.status_code, (err.get("type"), err.get("reason")) if isinstance(err, dict) else err
    if isinstance(body, dict):
        body.pop("took", None)  # milliseconds this search took: differs between any two runs
    return r.status_code, body


@pytest.mark.parametrize("method,target", TARGETS, ids=[f"{m} {t}" for m, t in TARGETS])
def test_the_proxy_answers_as_opensearch_does(services, settings, proxy_url, admin_headers, method, target):
    direct = _send(settings.opensearch_url.rstrip("/"), method, target)
    proxied = _send(proxy_url, method, target, admin_headers)
    assert _essence(proxied) == _essence(direct)
