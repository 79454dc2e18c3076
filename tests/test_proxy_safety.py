"""The middleware's boundary: what it refuses, how errors look, what it measures and documents.

Apps are built with ``create_app`` and served with Flask's test client; the OpenSearch behind
the pass-through is the project's real node.
"""

import json
import logging

import opensearchpy
import pytest
from flask import Blueprint, abort, g
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.exceptions import MethodNotAllowed

from shopsearch.plugin import errors
from shopsearch.plugin import observability
from shopsearch.plugin import openapi
from shopsearch.plugin import safety
from shopsearch.plugin.app import create_app
from shopsearch.plugin.errors import ERRORS, BadRequest, NotFound, Unavailable
from shopsearch.errors import SettingsError
from shopsearch.plugin.json_body import parse_json_body
from shopsearch.plugin.safety import reject_scripts, require_admin_token
from shopsearch.query.searcher import STRATEGIES

TOKEN = "s3cret-admin-token-for-tests"
BODY_LIMIT = 4096

probe = Blueprint("test_probe", __name__)
RAISES = {
    "bad_request": lambda: BadRequest("size must be an integer", field="size"),
    "not_found": lambda: NotFound("catalogue 'nope' has no live index"),
    "unavailable": lambda: Unavailable("the encoder is warming up", retry_after=5),
    "opensearch_down": lambda: opensearchpy.ConnectionError("N/A", "secret-host:9200 refused", None),
    "bug": lambda: RuntimeError("secret internals"),
}


@probe.post("/probe/json")
def echo_json():
    body = parse_json_body(required=True)
    reject_scripts(body)
    return body


@probe.get("/probe/raise/<kind>")
def raise_kind(kind):
    raise RAISES[kind]()


@probe.get("/probe/abort/<int:status>")
def abort_with(status):
    if status == 405:
        raise MethodNotAllowed(valid_methods=["POST"])
    abort(status)


@probe.get("/probe/search")
def fake_search():
    g.strategy = "hybrid"
    observability.count_degraded("encoder_timeout")
    observability.count_cache("query_vector", hit=True)
    return {"hits": []}


@probe.get("/admin/test-probe")
@require_admin_token
def admin_probe():
    return {"ok": True}


def build_app(settings, **changes):
    """create_app, plus this feature's modules if create_app does not wire them yet."""
    app = create_app(settings.replace(**changes), face="internal")
    for module in (errors, observability, safety, openapi):
        if module.EXTENSION not in app.extensions:
            module.init_app(app)
    app.register_blueprint(probe)
    return app


@pytest.fixture(scope="module")
def app(services, settings):
    return build_app(settings, admin_token=TOKEN, max_body_bytes=BODY_LIMIT)


@pytest.fixture
def http(app):
    return app.test_client()


@pytest.fixture
def index(client, catalogue):
    """A real index holding one product."""
    name = f"{catalogue}-v1"
    client.index(index=name, id="1", body={"title": "black running shoes"}, refresh=True)
    return name


def assert_error(response, status, error, *, message=""):
    body = response.get_json()
    assert response.status_code == status, body
    assert response.mimetype == "application/json"
    assert body["error"] == error and message in body.get("message", "")
    assert body["request_id"] == response.headers["X-Request-Id"]
    return body


# --- body size ----------------------------------------------------------------------------

def test_the_body_limit_defaults_to_10_mib(services, settings):
    assert build_app(settings).config["MAX_CONTENT_LENGTH"] == 10 * 1024 * 1024


def test_an_oversized_body_is_413_json_naming_the_setting(http):
    r = http.post("/probe/json", data=json.dumps({"q": "x" * BODY_LIMIT}), content_type="application/json")
    assert_error(r, 413, "request_entity_too_large", message="max_body_bytes")


def test_an_oversized_bulk_never_reaches_opensearch(http, client, index):
    bulk = "".join(f'{{"index": {{"_id": "{i}"}}}}\n{{"title": "{"y" * 100}"}}\n' for i in range(2, 60))
    r = http.post(f"/{index}/_bulk?refresh=true", data=bulk, content_type="application/x-ndjson")
    assert_error(r, 413, "request_entity_too_large")
    assert client.count(index=index)["count"] == 1


# --- pass-through allow-list --------------------------------------------------------------

OFF_LIST = "is not on the pass-through allow-list (setting passthrough_allow"
# The test client sends no Accept-Encoding; say "identity" so OpenSearch answers uncompressed.
PLAIN = {"Accept-Encoding": "identity"}


@pytest.fixture
def shop(client, index, catalogue):
    """The catalogue alias over ``index``."""
    client.indices.put_alias(index=index, name=catalogue)
    return catalogue


def test_a_write_without_a_credential_is_403_and_the_index_is_untouched(http, client, shop):
    r = http.post(f"/{shop}/_delete_by_query?refresh=true", json={"query": {"match_all": {}}})
    assert_error(r, 403, "forbidden", message=OFF_LIST)
    assert client.count(index=shop)["count"] == 1


@pytest.mark.parametrize("method,path", [
    ("POST", "/{shop}/_update_by_query"),
    ("PUT", "/_cluster/settings"),
    ("GET", "/_cluster/settings"),
    ("POST", "/_nodes/node-1/_shutdown"),
    ("GET", "/_snapshot/backups/nightly"),
    ("POST", "/{shop}/_DELETE_BY_QUERY/"),
    ("POST", "/admin/_delete_by_query"),  # no admin route answers it: it would be forwarded
    ("POST", "/shop/{shop}/_delete_by_query"),
    ("GET", "/{shop}-v1/_search"),       # a version, not the catalogue: only with a credential
    ("GET", "/_search"),                 # every index
    ("PUT", "/{shop}/_doc/1"),
])
def test_what_is_off_the_list_is_refused_whatever_its_prefix(http, shop, method, path):
    assert_error(http.open(path.format(shop=shop), method=method, json={}), 403, "forbidden", message=OFF_LIST)


def test_the_admin_credential_opens_the_rest(http, client, shop):
    r = http.put(f"/{shop}/_doc/2?refresh=true", json={"title": "white running shoes"},
                 headers={**PLAIN, "X-Admin-Token": TOKEN})
    assert r.status_code == 201, r.get_json()
    assert client.count(index=shop)["count"] == 2
    assert_error(http.get("/_cluster/settings", headers={"X-Admin-Token": "wrong"}), 403, "forbidden", message=OFF_LIST)


def test_reads_of_a_catalogue_still_reach_opensearch(http, shop):
    r = http.get(f"/{shop}/_count", headers=PLAIN)
    assert r.status_code == 200 and r.get_json()["count"] == 1
    assert r.headers["X-Request-Id"]


def test_the_allow_list_is_the_setting(services, settings, shop):
    http = build_app(settings, passthrough_allow="GET /{index}/_count").test_client()
    assert http.get(f"/{shop}/_count", headers=PLAIN).status_code == 200
    assert_error(http.get(f"/{shop}/_search"), 403, "forbidden", message=OFF_LIST)


def test_passthrough_indices_names_further_indices(services, settings, index):
    http = build_app(settings, passthrough_indices="test_*-v1").test_client()
    assert http.get(f"/{index}/_count", headers=PLAIN).get_json()["count"] == 1
    assert_error(build_app(settings).test_client().get(f"/{index}/_count"), 403, "forbidden")


def test_the_projects_own_indices_are_never_opened_by_a_glob(services, settings):
    http = build_app(settings, passthrough_indices="*").test_client()
    for name in (settings.ubi_events_index, settings.ubi_queries_index, settings.profiles_index):
        assert_error(http.get(f"/{name}/_search"), 403, "forbidden")


def test_a_malformed_allow_list_is_refused_at_start(services, settings):
    with pytest.raises(SettingsError, match="passthrough_allow"):
        create_app(settings.replace(passthrough_allow="fetch everything"))


# --- JSON bodies and scripts --------------------------------------------------------------

@pytest.mark.parametrize("body,message", [
    ('{"q": ', "the body is not valid JSON: Expecting value (line 1, column 7)"),
    ("[1, 2]", "the body must be a JSON object, not an array"),
    ('"shoes"', "the body must be a JSON object, not a string"),
    ('{"size": NaN}', "NaN is not a JSON number"),
    (b'{"q": "\xff"}', "the body is not UTF-8 text"),
    ("", "a JSON object body is required"),
])
def test_a_malformed_body_is_400_with_a_clear_message(http, body, message):
    assert_error(http.post("/probe/json", data=body, content_type="application/json"), 400, "bad_request",
                 message=message)


def test_a_json_object_body_is_accepted_whatever_its_content_type(http):
    r = http.post("/probe/json", data='{"q": "red shoes"}', content_type="application/x-www-form-urlencoded")
    assert r.status_code == 200 and r.get_json() == {"q": "red shoes"}


def test_an_absent_optional_body_is_an_empty_object(app):
    with app.test_request_context("/probe/json", method="POST"):
        assert parse_json_body() == {}


@pytest.mark.parametrize("body", [
    {"query": {"script": {"script": {"source": "doc['price'].value > 10"}}}},
    {"query": {"function_score": {"script_score": {"script": "1"}}}},
    {"script_fields": {"double": {"script": "doc['price'].value * 2"}}},
    {"runtime_mappings": {"cheap": {"type": "boolean"}}},
    {"aggs": {"total": {"scripted_metric": {"map_script": "state.x = 1"}}}},
    {"aggs": {"ratio": {"bucket_script": {"buckets_path": {}}}}},
    {"sort": [{"_script": {"type": "number"}}]},
    {"filters": [{"stored_script": "delete-everything"}]},
    {"boost": {"source": "Math.log(doc['sales'].value)", "lang": "painless"}},
    {"template": {"id": "my-search-template", "params": {"q": "shoes"}}},
    {"Script": "1"},
])
def test_scripts_are_refused_anywhere_in_a_body(body):
    with pytest.raises(BadRequest, match="scripts are not accepted here"):
        reject_scripts(body)


@pytest.mark.parametrize("body", [
    {"q": "red shoes", "size": 10},
    {"q": "script kiddie t-shirt", "category": "scripts"},
    {"q": "shoes", "source": "newsletter", "lang": "en"},
    {"query": {"match": {"description": "painless"}}},
    {"_source": ["title", "price"]},
])
def test_ordinary_bodies_pass_the_script_check(body):
    reject_scripts(body)


def test_a_script_in_a_request_is_400_naming_the_field(http):
    r = http.post("/probe/json", json={"q": "shoes", "sort": [{"_script": {"script": "1"}}]})
    body = assert_error(r, 400, "bad_request", message="scripts are not accepted here")
    assert body["field"] == "sort[0]._script"


# --- admin token --------------------------------------------------------------------------

@pytest.mark.parametrize("headers,status", [
    ({}, 401),
    ({"Authorization": "Bearer wrong"}, 401),
    ({"X-Admin-Token": "wrong"}, 401),
    ({"Authorization": f"Basic {TOKEN}"}, 401),
    ({"Authorization": f"Bearer {TOKEN}"}, 200),
    ({"Authorization": f"bearer {TOKEN}"}, 200),
    ({"X-Admin-Token": TOKEN}, 200),
])
def test_admin_routes_need_the_right_token(http, headers, status):
    r = http.get("/admin/test-probe", headers=headers)
    if status == 200:
        assert r.status_code == 200 and r.get_json() == {"ok": True}
    else:
        assert_error(r, 401, "unauthorized")
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("setting,value", [
    ("admin_token", ""), ("admin_token", "change-me"), ("admin_token", "short-token"),
    ("pseudonym_salt", ""), ("pseudonym_salt", "change-me"), ("pseudonym_salt", "abc"),
])
def test_the_proxy_refuses_to_start_without_real_secrets(services, settings, setting, value):
    with pytest.raises(SettingsError, match=f"setting {setting} \\(SHOPSEARCH_{setting.upper()}\\)"):
        create_app(settings.replace(**{setting: value}))


def test_the_install_makes_its_own_secrets_once(tmp_path):
    from shopsearch import local_secrets
    from shopsearch.settings import check_secrets, load_settings
    assert load_settings({"SHOPSEARCH_HOME": str(tmp_path)}).pseudonym_salt == ""
    made = local_secrets.create(tmp_path)
    assert (tmp_path / "secrets.toml").stat().st_mode & 0o077 == 0  # the owner's alone
    loaded = load_settings({"SHOPSEARCH_HOME": str(tmp_path)})
    assert (loaded.pseudonym_salt, loaded.admin_token) == (made["pseudonym_salt"], made["admin_token"])
    check_secrets(loaded)
    assert local_secrets.create(tmp_path) == made
    other = local_secrets.create(tmp_path / "other")
    assert other["pseudonym_salt"] != made["pseudonym_salt"]
    explicit = load_settings({"SHOPSEARCH_HOME": str(tmp_path), "SHOPSEARCH_PSEUDONYM_SALT": "x" * 20})
    assert explicit.pseudonym_salt == "x" * 20


# --- errors and request ids ---------------------------------------------------------------

@pytest.mark.parametrize("kind,status,error,message", [
    ("bad_request", 400, "bad_request", "size must be an integer"),
    ("not_found", 404, "not_found", "catalogue 'nope' has no live index"),
    ("unavailable", 503, "unavailable", "the encoder is warming up"),
    ("opensearch_down", 503, "opensearch_unavailable", "OpenSearch cannot be reached"),
])
def test_internal_exceptions_become_their_table_row(http, kind, status, error, message):
    body = assert_error(http.get(f"/probe/raise/{kind}"), status, error, message=message)
    assert "secret-host" not in json.dumps(body)


def test_no_row_of_the_error_table_is_shadowed_by_an_earlier_one():
    for i, later in enumerate(ERRORS):
        assert not any(issubclass(later.exception, earlier.exception) for earlier in ERRORS[:i]), later


def test_error_details_travel_in_fields_and_headers(http):
    assert http.get("/probe/raise/bad_request").get_json()["field"] == "size"
    assert http.get("/probe/raise/unavailable").headers["Retry-After"] == "5"


def test_an_unknown_exception_is_a_generic_500_logged_under_its_request_id(http, caplog):
    caplog.set_level(logging.ERROR, logger="shopsearch.errors")
    r = http.get("/probe/raise/bug")
    body = assert_error(r, 500, "internal")
    assert "Traceback" not in r.get_data(as_text=True) and "secret internals" not in r.get_data(as_text=True)
    logged = [rec for rec in caplog.records if rec.name == "shopsearch.errors"]
    assert body["request_id"] in logged[-1].getMessage() and logged[-1].exc_info[1].args == ("secret internals",)


@pytest.mark.parametrize("status,error", [(404, "not_found"), (405, "method_not_allowed"), (400, "bad_request")])
def test_http_errors_are_json_too(http, status, error):
    r = http.get(f"/probe/abort/{status}")
    assert_error(r, status, error)
    if status == 405:
        assert r.headers["Allow"] == "POST"


@pytest.mark.parametrize("incoming,kept", [("checkout-42.a:b", True), ("x" * 129, False), ("a b;<c>", False)])
def test_a_sane_request_id_is_echoed_and_others_are_replaced(http, incoming, kept):
    rid = http.get("/healthz", headers={"X-Request-Id": incoming}).headers["X-Request-Id"]
    assert (rid == incoming) if kept else (len(rid) == 32 and int(rid, 16) >= 0)


def test_a_request_without_an_id_gets_a_fresh_one(http):
    first, second = (http.get("/healthz").headers["X-Request-Id"] for _ in range(2))
    assert len(first) == 32 and first != second


# --- access log and metrics ---------------------------------------------------------------

def test_each_request_writes_one_json_access_line(http, caplog):
    caplog.set_level(logging.INFO, logger="shopsearch.access")
    r = http.get("/probe/search", headers={"X-Request-Id": "req-1"})
    line = json.loads([rec for rec in caplog.records if rec.name == "shopsearch.access"][-1].getMessage())
    assert r.status_code == 200
    assert line["request_id"] == "req-1" and line["status"] == 200 and line["strategy"] == "hybrid"
    assert line["method"] == "GET" and line["path"] == "/probe/search" and line["route"] == "/probe/search"
    assert line["endpoint"] == "test_probe.fake_search" and line["duration_ms"] >= 0


def scrape(http) -> dict:
    r = http.get("/metrics")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    return {f.name: f.samples for f in text_string_to_metric_families(r.get_data(as_text=True))}


def test_metrics_count_requests_by_route_never_by_raw_path(services, settings, shop):
    http = build_app(settings).test_client()
    for _ in range(3):
        http.get("/healthz")
    http.get(f"/{shop}/_count")
    http.get("/probe/search")
    families = scrape(http)
    requests_total = {(s.labels["route"], s.labels["method"], s.labels["status"], s.labels["strategy"]): s.value
                      for s in families["shopsearch_requests"] if s.name == "shopsearch_requests_total"}
    assert requests_total[("/healthz", "GET", "200", "none")] == 3
    assert requests_total[("passthrough", "GET", "200", "none")] == 1
    assert requests_total[("/probe/search", "GET", "200", "hybrid")] == 1
    assert not any(shop in route for route, *_ in requests_total)
    counts = {s.labels["route"]: s.value for s in families["shopsearch_request_seconds"]
              if s.name == "shopsearch_request_seconds_count"}
    assert counts["/healthz"] == 3
    degraded = [s for s in families["shopsearch_degraded"] if s.name == "shopsearch_degraded_total"]
    cache = [s for s in families["shopsearch_cache"] if s.name == "shopsearch_cache_total"]
    assert [(s.labels, s.value) for s in degraded] == [({"reason": "encoder_timeout"}, 1.0)]
    assert [(s.labels, s.value) for s in cache] == [({"cache": "query_vector", "result": "hit"}, 1.0)]


def test_each_app_has_its_own_metrics(services, settings):
    busy, fresh = build_app(settings).test_client(), build_app(settings).test_client()
    busy.get("/healthz")
    samples = scrape(fresh).get("shopsearch_requests", [])
    assert not any(s.labels.get("route") == "/healthz" for s in samples)


# --- OpenAPI ------------------------------------------------------------------------------

def resolve(doc, ref):
    node = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_openapi_describes_the_shop_search_and_every_ref_resolves(http):
    r = http.get("/openapi.json")
    doc = r.get_json()
    assert r.status_code == 200 and doc["openapi"].startswith("3.1")
    search = doc["paths"]["/shop/{catalogue}/search"]
    assert {"get", "post"} <= search.keys()
    strategy = next(p for p in search["get"]["parameters"] if p["name"] == "strategy")
    assert strategy["schema"]["enum"] == ["bm25", "dense", "hybrid", "hybrid-rrf", "hybrid-rerank", "learned"] == list(STRATEGIES)
    assert {"/healthz", "/metrics", "/admin/status", "/{path}"} <= doc["paths"].keys()
    assert {"error", "message", "request_id", "field"} <= doc["components"]["schemas"]["Error"]["properties"].keys()
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "$ref" in node:
                resolve(doc, node["$ref"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
