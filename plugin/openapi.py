"""``/openapi.json``: the middleware's API in OpenAPI 3.1, generated from the app itself.

Every route of ``app.url_map`` is described (a route without a contract still gets its path,
methods and error answers), and the parameters, bodies and answers of the routes that declare a
:func:`~shopsearch.plugin.schemas.contract` come from the same pydantic models that validate them,
so the document cannot drift from the code. ``create_app`` builds it once, when every blueprint
is registered (:func:`publish`).
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from werkzeug.routing import Rule

from shopsearch.plugin import schemas

EXTENSION = "shopsearch.openapi"
REF = "#/components/schemas/{model}"
bp = Blueprint("openapi", __name__)

DESCRIPTION = ("Hybrid BM25 + vector search for shoppers in front of a shop's OpenSearch. Every other path is "
               "forwarded to OpenSearch unchanged, so existing clients keep working. Every error the middleware "
               "itself answers has the Error shape and an X-Request-Id header.")
_STATUS_TEXT = {200: "OK", 202: "Accepted: the work runs on a Celery worker.", 400: "A parameter is wrong (field names it).",
                401: "No or wrong admin token.", 403: "Refused (admin disabled, or denied pass-through path).",
                404: "The catalogue or item does not exist.", 409: "The operation conflicts with the current state.",
                413: "The body is larger than max_body_bytes.", 500: "A bug; quote the request id.",
                502: "OpenSearch rejected the query, or refused this service's own user an action.", 503: "A dependency is down; retry later.",
                504: "A dependency did not answer in time."}
_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def init_app(app: Flask) -> None:
    """Serve ``/openapi.json`` (its document is built by :func:`publish` once the routes exist)."""
    app.extensions[EXTENSION] = None
    app.register_blueprint(bp)


def publish(app: Flask) -> dict:
    """Build the document from ``app``'s routes and contracts and keep it for ``/openapi.json``."""
    app.extensions[EXTENSION] = document(app)
    return app.extensions[EXTENSION]


def document(app: Flask) -> dict:
    """The OpenAPI document of ``app`` (every rule of its url map but ``static``)."""
    views = [(rule, app.view_functions[rule.endpoint]) for rule in app.url_map.iter_rules() if rule.endpoint != "static"]
    models = {schemas.Error}
    for _, view in views:
        models.update(m for m in (getattr(view, "contract", None) or {}).values() if _is_model(m))
    _, defs = models_json_schema([(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
                                 ref_template=REF)
    paths: dict[str, dict] = {}
    for rule, view in sorted(views, key=lambda rv: rv[0].rule):
        item = paths.setdefault(openapi_path(rule.rule), {})
        arguments = _ARGUMENT.findall(rule.rule)  # not rule.arguments: "/" has the default path=""
        if arguments:
            item["parameters"] = [{"name": a, "in": "path", "required": True, "schema": {"type": "string"}}
                                  for a in arguments]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            item[method.lower()] = operation(rule, view, method, defs.get("$defs", {}))
    return {"openapi": "3.1.0",
            "info": {"title": "shopsearch middleware", "version": "0.1.0", "description": DESCRIPTION},
            "paths": paths, "components": {"schemas": defs.get("$defs", {})}}


def openapi_path(rule: str) -> str:
    """A Flask rule in OpenAPI's spelling.

    >>> openapi_path("/shop/<catalogue>/recommend/similar/<item_id>"), openapi_path("/<path:path>")
    ('/shop/{catalogue}/recommend/similar/{item_id}', '/{path}')
    """
    return _ARGUMENT.sub(r"{\1}", rule)


def operation(rule: Rule, view: Any, method: str, components: dict) -> dict:
    """One operation: summary from the view's docstring, parameters and answers from its contract."""
    contract = getattr(view, "contract", None) or {}
    doc = (view.__doc__ or "").strip().splitlines()
    op: dict[str, Any] = {"operationId": f"{rule.endpoint}.{method.lower()}", "tags": [rule.endpoint.split(".")[0]]}
    if doc:
        op["summary"] = doc[0]
    query, body = contract.get("query"), contract.get("body")
    if query is not None and (method == "GET" or body is None):
        op["parameters"] = query_parameters(query, components)
    if body is not None and method in ("POST", "PUT", "PATCH"):
        op["requestBody"] = {"content": {"application/json": {"schema": {"$ref": REF.format(model=body.__name__)}}}}
    answer = contract.get("answer")
    ok = {"description": _STATUS_TEXT.get(contract.get("status", 200), "OK")}
    if answer is not None:
        ok["content"] = {"application/json": {"schema": {"$ref": REF.format(model=answer.__name__)}}}
    op["responses"] = {str(contract.get("status", 200)): ok}
    for status in (*contract.get("errors", ()), 413, 500, 503):
        op["responses"][str(status)] = {"description": _STATUS_TEXT[status], "content": {
            "application/json": {"schema": {"$ref": REF.format(model="Error")}}}}
    return op


def query_parameters(model: type[BaseModel], components: dict) -> list[dict]:
    """The fields of ``model`` as query parameters (their schemas as in the model's JSON schema)."""
    properties = components[model.__name__]["properties"]
    required = set(components[model.__name__].get("required", ()))
    out = []
    for name, schema in properties.items():
        schema = {k: v for k, v in _single(schema).items() if k != "title" and not (k == "default" and v is None)}
        param = {"name": name, "in": "query", "required": name in required}
        if "description" in schema:
            param["description"] = schema.pop("description")
        out.append({**param, "schema": schema})
    return out


def _single(schema: dict) -> dict:
    """``anyOf: [X, null]`` (an optional parameter) read as X: a query string cannot send null."""
    options = [s for s in schema.get("anyOf", ()) if s.get("type") != "null"]
    if len(options) == 1:
        return {**{k: v for k, v in schema.items() if k != "anyOf"}, **options[0]}
    return schema


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


@bp.get("/openapi.json")
def openapi_json():
    """This API in OpenAPI 3.1."""
    spec = current_app.extensions.get(EXTENSION) or publish(current_app)
    return jsonify(spec)
