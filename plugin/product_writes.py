"""The pass-through's writes of a catalogue's products, answered by shopsearch (``ingest/product_writes.py``).

A document write the guard let through (``safety.py``: an API key with role ``write``, the admin
credential, or a ``passthrough_allow`` rule) whose index is a catalogue (its alias or one of its
versions) is not forwarded: forwarded, it would store a product without vectors, or drop the
vectors of the one it changes. Instead:

* ``PUT|POST /<catalogue>/_doc/<id>``, ``POST /<catalogue>/_doc`` and ``PUT|POST /<catalogue>/_create/<id>``
  write the product as an ingest of one item (cleaned, scaled, encoded on the workers);
* ``POST /<catalogue>/_update/<id>`` with ``{"doc": {...}}`` changes it, keeping its vectors unless
  the encoded text or the image changed;
* a ``_bulk`` with an ``index``, ``create`` or ``update`` line for a catalogue is refused (400,
  naming the line): nothing of it is written. ``delete`` lines and other indices' lines pass.

Answers have OpenSearch's shape (``_index``, ``_id``, ``_version``, ``result``, ``_seq_no``), with
201 for a created product. A bad product is a 400 naming the ingest rule it breaks; a change of a
missing product a 404; a ``_create`` of an existing one a 409. Query parameters other than
``refresh`` (``true``, ``wait_for``, ``false``) and ``op_type`` are refused, so none is silently
ignored. Writes opened by the caller's own cluster credentials (``passthrough_forward_auth``)
are forwarded as they are: the proxy never writes with its own rights for them.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from flask import Response, current_app, jsonify, request

from shopsearch.errors import Rejected
from shopsearch.ingest.product_writes import product_index, write_product
from shopsearch.plugin import allow
from shopsearch.plugin.cluster import client
from shopsearch.plugin.errors import BadRequest
from shopsearch.plugin.json_body import parse_json
from shopsearch.workers.dispatch import runner

RUNNER = "shopsearch.product_writes.runner"
PARAMS = {"refresh", "op_type"}
UPDATE_KEYS = {"doc", "detect_noop"}
WRITE_APIS = ("_doc", "_create", "_update")


def answer_product_write(method: str, target: allow.Target, credential: str | None) -> Response | None:
    """The answer to a write of a catalogue's product, or None when the request is not one (forward it)."""
    if credential == "cluster":
        return None
    segments = target.segments
    if segments[-1:] == ("_bulk",) and method in ("POST", "PUT"):
        _refuse_product_lines_in_bulk(segments)
        return None
    if len(segments) not in (2, 3) or segments[1] not in WRITE_APIS or method not in ("PUT", "POST"):
        return None
    api, doc_id = segments[1], segments[2] if len(segments) == 3 else None
    if (api == "_update" and (doc_id is None or method != "POST")) or (api == "_create" and doc_id is None) \
            or (api == "_doc" and doc_id is None and method != "POST"):
        return None  # not a document write OpenSearch has: it answers it itself
    if product_index(client(), segments[0]) is None:
        return None
    params = _params(target.query)
    body = parse_json(request.get_data(cache=True))
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object: the product's fields", field="body")
    if api == "_update":
        unknown = sorted(set(body) - UPDATE_KEYS)
        if unknown or not isinstance(body.get("doc"), dict):
            raise BadRequest(f"a product change is {{\"doc\": {{field: value, ...}}}}; {', '.join(unknown) or 'doc'} "
                             "cannot be applied to a catalogue's product (no scripts or upserts: write a new product "
                             "whole with PUT .../_doc/<id>)", field=unknown[0] if unknown else "doc")
        fields, change = body["doc"], True
    else:
        fields, change = body, False
    create = api == "_create" or params.get("op_type") == "create"
    written = write_product(client(), _runner(), segments[0], doc_id, fields, change=change, create=create,
                            refresh=params.get("refresh", "false") in ("", "true", "wait_for"))
    first = written[0]
    return _json(first.as_opensearch(), 201 if first.result == "created" else 200)


def _params(query: str) -> dict[str, str]:
    """The query parameters of a product write; one it would not honour is a 400."""
    params = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(params) - PARAMS)
    if unknown:
        raise BadRequest(f"query parameter {unknown[0]} is not taken by a write of a catalogue's product (these are: "
                         f"{', '.join(sorted(PARAMS))})", field=unknown[0])
    if params.get("op_type", "index") not in ("index", "create"):
        raise BadRequest(f"op_type must be index or create, not {params['op_type']!r}", field="op_type")
    if params.get("refresh", "false") not in ("", "true", "false", "wait_for"):
        raise BadRequest(f"refresh must be true, false or wait_for, not {params['refresh']!r}", field="refresh")
    return params


def _refuse_product_lines_in_bulk(segments: tuple[str, ...]) -> None:
    """A ``_bulk`` that indexes, creates or updates a catalogue's product is a 400 naming the first such line."""
    path_index = segments[0] if len(segments) == 2 else None
    try:
        actions = allow.bulk_actions(request.get_data(cache=True))
    except (ValueError, RecursionError):
        return  # malformed: OpenSearch answers it (safety.py has checked every index it names)
    known: dict[str, bool] = {}
    for n, (action, name) in enumerate(actions, 1):
        name = name or path_index
        if action == "delete" or name is None:
            continue
        if name not in known:
            known[name] = product_index(client(), name) is not None
        if known[name]:
            raise Rejected("product_in_bulk", f"action {n} of the _bulk body ({action}) writes a product of catalogue "
                                              f"{name!r}, which a bulk write would leave without vectors; send each "
                                              f"product to PUT /{name}/_doc/<id> or POST /{name}/_update/<id>, or a "
                                              "catalogue file to shopsearch ingest. Nothing of this request was written")


def _runner():
    """The Celery runner products are encoded and written on (one per app)."""
    found = current_app.extensions.get(RUNNER)
    if found is None:
        found = current_app.extensions[RUNNER] = runner(current_app.config["SHOPSEARCH"])
    return found


def _json(doc: dict, status: int) -> Response:
    out = jsonify(doc)
    out.status_code = status
    return out
