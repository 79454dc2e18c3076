"""The middleware's contracts: one error hierarchy, pydantic models that validate and document.

Pure: the app is built against a cluster that is not there (nothing is sent to it), and the
models are exercised directly.
"""

from __future__ import annotations

import doctest

import click
import opensearchpy
import pytest

from shopsearch import errors as core_errors
from shopsearch.cli.errors import UNREACHABLE, fail_cleanly
from shopsearch.learn.events import MAX_BATCH, Event, EventError
from shopsearch.plugin import errors, openapi, schemas
from shopsearch.plugin.app import create_app
from shopsearch.plugin.errors import ERRORS, BadRequest, Forbidden, NotFound, Unauthorized, Unavailable, rule_for
from shopsearch.plugin.openapi import openapi_path
from shopsearch.plugin.schemas import ForYouParams, RecommendParams, SearchParams, parse_params
from shopsearch.query.searcher import STRATEGIES
from shopsearch.settings import load_settings


@pytest.fixture(scope="module")
def app():
    # a port nobody listens on: create_app sends nothing that must succeed
    return create_app(load_settings().replace(opensearch_url="http://127.0.0.1:9"), face="internal")


@pytest.fixture(scope="module")
def doc(app):
    return app.test_client().get("/openapi.json").get_json()


@pytest.mark.parametrize("module", [errors, openapi, schemas])
def test_docstring_examples_hold(module):
    assert doctest.testmod(module).failed == 0


# --- one error hierarchy ------------------------------------------------------------------------

@pytest.mark.parametrize("kind,status,code", [
    (BadRequest, 400, "bad_request"), (Unauthorized, 401, "unauthorized"), (Forbidden, 403, "forbidden"),
    (NotFound, 404, "not_found"), (Unavailable, 503, "unavailable"),
])
def test_the_http_errors_are_shopsearch_errors_with_their_own_status(kind, status, code):
    error = kind("why", field="f")
    assert isinstance(error, core_errors.ShopsearchError)
    assert (error.status, error.code, error.field, str(error)) == (status, code, "f", "why")


def test_every_deliberate_error_meets_one_row_that_uses_its_own_status():
    row = rule_for(core_errors.RolloutNotFound("no such version"))
    assert row.exception is core_errors.ShopsearchError and row.status == 0
    assert [r.exception for r in ERRORS].count(core_errors.ShopsearchError) == 1


@pytest.mark.parametrize("error,status,code", [
    (core_errors.SearchError("no live index", 404, "not_found"), 404, "not_found"),
    (core_errors.RolloutNotFound("no v9"), 404, "not_found"),
    (core_errors.RolloutError("no previous version"), 409, "rollout_conflict"),
    (core_errors.IndexVersionError("bad name"), 400, "bad_request"),
    (EventError("must be an integer >= 1", "position", 1), 400, "bad_request"),
])
def test_core_errors_are_answered_with_their_status_code_and_request_id(app, error, status, code):
    with app.test_request_context("/x", headers={"X-Request-Id": "req-1"}):
        response = errors.render_error(error)
    body = response.get_json()
    assert (response.status_code, body["error"], body["request_id"]) == (status, code, "req-1")
    assert body["message"] == str(error)


def test_an_event_of_a_batch_is_named_by_its_place():
    assert EventError("is required", "user_id", 3).location == "events[3].user_id"
    assert EventError("an event must be a JSON object", None, 3).location is None


# --- the CLI boundary ---------------------------------------------------------------------------

@pytest.mark.parametrize("error,expected", [
    (core_errors.RolloutError("no previous version"), "no previous version"),
    (core_errors.SettingsError("proxy_port must be a int"), "shopsearch settings"),
    (opensearchpy.ConnectionError("N/A", "refused", None), UNREACHABLE),
])
def test_the_cli_turns_project_errors_into_one_line_with_a_hint(error, expected):
    @fail_cleanly
    def command():
        raise error

    with pytest.raises(click.ClickException) as caught:
        command()
    assert expected in caught.value.message


def test_the_cli_lets_a_bug_keep_its_traceback():
    @fail_cleanly
    def command():
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        command()


# --- parameters ---------------------------------------------------------------------------------

@pytest.mark.parametrize("model,values,field", [
    (SearchParams, {}, "q"), (SearchParams, {"q": "  "}, "q"), (SearchParams, {"q": "x" * 501}, "q"),
    (SearchParams, {"q": "x", "size": "many"}, "size"), (SearchParams, {"q": "x", "size": 101}, "size"),
    (SearchParams, {"q": "x", "size": True}, "size"), (SearchParams, {"q": "x", "page": -1}, "page"),
    (SearchParams, {"q": "x", "vector_weight": 3}, "vector_weight"),
    (SearchParams, {"q": "x", "strategy": "magic"}, "strategy"),
    (SearchParams, {"q": "x", "price_min": "nan"}, "price_min"),
    (SearchParams, {"q": "x", "category": {"a": 1}}, "category"),
    (SearchParams, {"q": "x", "sizes": 3, "colours": "red"}, "colours"),
    (RecommendParams, {"size": 51}, "size"), (RecommendParams, {"user": "u"}, "user"),
    (RecommendParams, {"price_min": "9", "price_max": "1"}, "price_min"),
    (ForYouParams, {}, "user"), (ForYouParams, {"user": "u" * 201}, "user"),
])
def test_a_bad_parameter_is_a_bad_request_naming_it(model, values, field):
    with pytest.raises(BadRequest) as caught:
        parse_params(model, values)
    assert caught.value.field == field and field in str(caught.value)


def test_blank_parameters_take_their_defaults_and_numbers_in_text_fields_become_text():
    params = parse_params(SearchParams, {"q": 42, "size": "", "brand": 7, "in_stock": "1"})
    assert (params.q, params.size, params.page, params.brand, params.in_stock) == ("42", 10, 0, "7", True)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_is_accepted(strategy):
    assert parse_params(SearchParams, {"q": "x", "strategy": strategy}).strategy == strategy


def test_the_event_model_keeps_the_batch_limit():
    assert schemas.EventBatch.model_json_schema()["properties"]["events"]["maxItems"] == MAX_BATCH
    assert "action_name" in Event.model_json_schema()["required"]


# --- /openapi.json ------------------------------------------------------------------------------

def test_every_route_of_the_app_is_in_the_document(app, doc):
    rules = [r for r in app.url_map.iter_rules() if r.endpoint != "static"]
    assert len(rules) >= 16
    for rule in rules:
        item = doc["paths"][openapi_path(rule.rule)]
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in item, (rule.rule, method)


def test_the_strategy_enum_comes_from_the_strategy_registry(doc):
    for path in ("/shop/{catalogue}/search",):
        strategy = next(p for p in doc["paths"][path]["get"]["parameters"] if p["name"] == "strategy")
        assert strategy["schema"]["enum"] == list(STRATEGIES)


def test_query_parameters_are_the_models_fields_with_their_limits(doc):
    for path, model in [("/shop/{catalogue}/search", SearchParams),
                        ("/shop/{catalogue}/recommend/for-you", ForYouParams),
                        ("/shop/{catalogue}/recommend/similar/{item_id}", RecommendParams)]:
        params = {p["name"]: p for p in doc["paths"][path]["get"]["parameters"]}
        assert set(params) == set(model.model_fields)
    size = {p["name"]: p for p in doc["paths"]["/shop/{catalogue}/search"]["get"]["parameters"]}["size"]
    assert (size["schema"]["minimum"], size["schema"]["maximum"]) == (1, 100)


def test_bodies_and_answers_point_at_their_models(doc):
    events = doc["paths"]["/events"]["post"]
    assert events["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/EventBatch")
    assert "202" in events["responses"] and "Event" in doc["components"]["schemas"]
    reindex = doc["paths"]["/admin/catalogues/{catalogue}/reindex"]["post"]
    assert reindex["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ReindexRequest")


def test_every_error_answer_is_the_error_shape(doc):
    for item in doc["paths"].values():
        for method, op in item.items():
            if method == "parameters":
                continue
            for status, answer in op["responses"].items():
                if int(status) >= 400:
                    assert answer["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Error"


# --- the pass-through's own errors ----------------------------------------------------------------

def test_a_pass_through_to_a_cluster_that_is_down_is_a_503_with_a_request_id(app):
    r = app.test_client().get("/products/_search", headers={"X-Request-Id": "pt-1"})
    body = r.get_json()
    assert r.status_code == 503 and body["error"] == "opensearch_unavailable"
    assert body["request_id"] == r.headers["X-Request-Id"] == "pt-1"
    assert "127.0.0.1" not in body["message"]
