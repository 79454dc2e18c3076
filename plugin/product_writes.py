"""The pass-through's writes of a catalogue's products, answered by shopsearch (``ingest/product_writes.py``).

A document write the guard let through (``safety.py``: an API key with role ``write``, the admin
credential, or a ``passthrough_allow`` rule) whose index is a catalogue (its alias or one of its
versions) is not forwarded: forwarded, it would store a product without vectors, or drop the
vectors of the one it changes. Instead:

* ``PUT|POST /<catalogue>/_doc/<id>``, ``POST /<catalogue>/_doc`` and ``PUT|POST /<catalogue>/_create/<id>``
  write the product as an ingest of one item (cleaned, scaled, encoded on the workers);
* ``POST /<catalogue>/_update/<id>`` with ``{"doc": {...}}`` changes it, keeping its vectors unless
  the encoded text or the image changed;
* a ``_bulk``'s lines for a catalogue are applied the same way (its ``delete`` lines too, so that a
  product's lines keep their order), each answered in the bulk's ``items`` in its place, a bad one
  with its ``error`` while the others are written; the lines for other indices are forwarded as one
  ``_bulk`` and their answers put back in order. A bulk that only deletes is forwarded whole.

Answers have OpenSearch's shape (``_index``, ``_id``, ``_version``, ``result``, ``_seq_no``), with
201 for a created product. A bad product is a 400 naming the ingest rule it breaks (in a bulk: that
item's ``error``, the others are written); a change of a missing product a 404; a ``_create`` of an
existing one a 409. Query parameters other than ``refresh`` (``true``, ``wait_for``, ``false``) and
``op_type`` are refused, so none is silently ignored. Writes opened by the caller's own cluster
credentials (``passthrough_forward_auth``) are forwarded as they are: the proxy never writes with its
own rights for them.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qsl, urlsplit

import urllib3
from flask import Response, current_app, jsonify, request

from shopsearch.ingest.product_writes import Refused, Write, product_index, write_products
from shopsearch.plugin import allow
from shopsearch.plugin.cluster import client, raw_pool
from shopsearch.plugin.errors import BadRequest
from shopsearch.plugin.json_body import parse_json
from shopsearch.workers.dispatch import runner

RUNNER = "shopsearch.product_writes.runner"
PARAMS = {"refresh", "op_type"}
BULK_PARAMS = {"refresh"}
UPDATE_KEYS = {"doc", "detect_noop"}
LINE_KEYS = {"_index", "_id", "retry_on_conflict"}  # what a product's bulk action line may say
WRITE_APIS = ("_doc", "_create", "_update")


def answer_product_write(method: str, target: allow.Target, credential: str | None) -> Response | None:
    """The answer to a write of a catalogue's product, or None when the request is not one (forward it)."""
    if credential == "cluster":
        return None
    segments = target.segments
    if segments[-1:] == ("_bulk",) and len(segments) <= 2 and method in ("POST", "PUT"):
        return _answer_bulk(target, segments[0] if len(segments) == 2 else None)
    if len(segments) not in (2, 3) or segments[1] not in WRITE_APIS or method not in ("PUT", "POST"):
        return None
    api, doc_id = segments[1], segments[2] if len(segments) == 3 else None
    if (api == "_update" and (doc_id is None or method != "POST")) or (api == "_create" and doc_id is None) \
            or (api == "_doc" and doc_id is None and method != "POST"):
        return None  # not a document write OpenSearch has: it answers it itself
    if product_index(client(), segments[0]) is None:
        return None
    params = _params(target.query, PARAMS)
    body = parse_json(request.get_data(cache=True))
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object: the product's fields", field="body")
    create = api == "_create" or params.get("op_type") == "create"
    write = _change(segments[0], doc_id, body) if api == "_update" else Write(segments[0], doc_id, body, create=create)
    answer, = write_products(client(), _runner(), [write], refresh=_refresh(params))
    if isinstance(answer, Refused):
        raise answer.error  # answered by plugin/errors.py: its status, code and message
    shown = answer.as_opensearch()
    return _json(shown, shown.pop("status"))


def _change(name: str, doc_id: str, body: dict) -> Write:
    """The write of an ``_update`` body; anything but ``{"doc": {...}}`` is a 400."""
    unknown = sorted(set(body) - UPDATE_KEYS)
    if unknown or not isinstance(body.get("doc"), dict):
        raise BadRequest(f"a product change is {{\"doc\": {{field: value, ...}}}}; {', '.join(unknown) or 'doc'} "
                         "cannot be applied to a catalogue's product (no scripts or upserts: write a new product "
                         "whole with PUT .../_doc/<id>)", field=unknown[0] if unknown else "doc")
    return Write(name, doc_id, body["doc"], change=True)


def _params(query: str, taken: set[str]) -> dict[str, str]:
    """The query parameters of a product write; one it would not honour is a 400."""
    params = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(params) - taken)
    if unknown:
        raise BadRequest(f"query parameter {unknown[0]} is not taken by a write of a catalogue's product (these are: "
                         f"{', '.join(sorted(taken))})", field=unknown[0])
    if params.get("op_type", "index") not in ("index", "create"):
        raise BadRequest(f"op_type must be index or create, not {params['op_type']!r}", field="op_type")
    if params.get("refresh", "false") not in ("", "true", "false", "wait_for"):
        raise BadRequest(f"refresh must be true, false or wait_for, not {params['refresh']!r}", field="refresh")
    return params


def _refresh(params: dict) -> bool:
    return params.get("refresh", "false") in ("", "true", "wait_for")


# --- _bulk ----------------------------------------------------------------------------------------

def _answer_bulk(target: allow.Target, path_index: str | None) -> Response | None:
    """A ``_bulk`` with lines that write a catalogue's products: those applied here, the rest forwarded
    as one ``_bulk``, the items answered in the body's order (None: no such line, forward it all)."""
    started = time.perf_counter()
    body = request.get_data(cache=True)
    try:
        lines = _bulk_lines(body)
    except (ValueError, RecursionError):
        return None  # malformed: OpenSearch answers it (safety.py has checked every index it names)
    products: dict[str, bool] = {}

    def is_product(name: str | None) -> bool:
        if name is not None and name not in products:
            products[name] = product_index(client(), name) is not None
        return bool(name) and products[name]

    # every line on a product index is applied here, deletes too, so a product's lines keep their order
    mine = [k for k, (action, meta, _, _) in enumerate(lines) if is_product(meta.get("_index") or path_index)]
    if not any(lines[k][0] != "delete" for k in mine):
        return None  # deletes alone lose no vectors: OpenSearch answers them
    params = _params(target.query, BULK_PARAMS)
    writes, answers = [], {}
    for k in mine:
        action, meta, source, number = lines[k]
        name = meta.get("_index") or path_index
        try:
            writes.append((k, _bulk_write(action, meta, source, name, number)))
        except BadRequest as e:
            answers[k] = (action, {"_index": name, "_id": meta.get("_id"), "status": 400,
                                   "error": {"type": "bad_request", "reason": str(e)}})
    done = write_products(client(), _runner(), [w for _, w in writes], refresh=_refresh(params))
    for (k, _), answer in zip(writes, done):
        answers[k] = (lines[k][0], answer.as_opensearch())
    others = [k for k in range(len(lines)) if k not in answers]
    if others:
        forwarded = _forward_bulk(target, [lines[k] for k in others])
        answers.update({k: next(iter(item.items())) for k, item in zip(others, forwarded)})
    items = [{action: item} for action, item in (answers[k] for k in range(len(lines)))]
    return _json({"took": round((time.perf_counter() - started) * 1000),
                  "errors": any("error" in next(iter(i.values())) for i in items), "items": items}, 200)


def _bulk_lines(body: bytes) -> list[tuple[str, dict, dict | None, int]]:
    """``(action, action line's metadata, source line or None, line number)`` of each action (ValueError if malformed)."""
    raw = [line for line in body.splitlines() if line.strip()]
    out, i = [], 0
    while i < len(raw):
        head = json.loads(raw[i])
        if not (isinstance(head, dict) and len(head) == 1 and next(iter(head)) in allow.BULK_ACTIONS
                and isinstance(next(iter(head.values())), dict)):
            raise ValueError(f"line {i + 1} is not an action")
        action, meta = next(iter(head.items()))
        source = None
        if action != "delete":
            if i + 1 >= len(raw):
                raise ValueError(f"action {action} on line {i + 1} has no source line")
            source = json.loads(raw[i + 1])
        out.append((action, meta, source, i + 1))
        i += 1 if action == "delete" else 2
    return out


def _bulk_write(action: str, meta: dict, source, name: str, number: int) -> Write:
    """The write of one bulk action on a product (a 400 for what a product write does not take)."""
    unknown = sorted(set(meta) - LINE_KEYS)
    if unknown:
        raise BadRequest(f"line {number}: {unknown[0]} is not taken by a write of a catalogue's product "
                         f"(an action line may say {', '.join(sorted(LINE_KEYS))})")
    doc_id = None if meta.get("_id") is None else str(meta["_id"])
    if action in ("update", "delete") and doc_id is None:
        raise BadRequest(f"line {number}: {action} needs an _id")
    if action == "delete":
        return Write(name, doc_id, {}, delete=True)
    if not isinstance(source, dict):
        raise BadRequest(f"line {number + 1}: the source must be a JSON object")
    if action == "update":
        return _change(name, doc_id, source)
    return Write(name, doc_id, source, create=action == "create")


def _forward_bulk(target: allow.Target, lines: list) -> list[dict]:
    """The lines that are not product writes, sent to OpenSearch as one ``_bulk``; its items, in order."""
    body = "".join(json.dumps({action: meta}) + "\n" + (json.dumps(source) + "\n" if source is not None else "")
                   for action, meta, source, _ in lines).encode()
    path = urlsplit(current_app.config["SHOPSEARCH"].opensearch_url).path.rstrip("/") + target.raw
    upstream = raw_pool().urlopen("POST", path, body=body, headers={"Content-Type": "application/x-ndjson"},
                                  redirect=False, retries=False, assert_same_host=False,
                                  timeout=urllib3.Timeout(connect=5, read=120))
    try:
        answer = json.loads(upstream.data)
    except ValueError:
        answer = {}
    if isinstance(answer, dict) and isinstance(answer.get("items"), list) and len(answer["items"]) == len(lines):
        return answer["items"]
    # refused as a whole: each of its lines says so, as their own items (the product lines stand)
    error = answer.get("error") if isinstance(answer, dict) else None
    reason = error.get("reason", error) if isinstance(error, dict) else (error or upstream.data[:200].decode(errors="replace"))
    return [{action: {"_index": meta.get("_index"), "_id": meta.get("_id"), "status": upstream.status,
                      "error": {"type": "bulk_refused", "reason": f"OpenSearch refused these lines: {reason}"}}}
            for action, meta, _, _ in lines]


# --- answers ----------------------------------------------------------------------------------------

def _runner():
    """The Celery runner products are encoded and written on (one per app)."""
    found = current_app.extensions.get(RUNNER)
    if found is None:
        settings = current_app.config["SHOPSEARCH"]
        found = current_app.extensions[RUNNER] = runner(settings, chunk_timeout=settings.product_write_timeout)
    return found


def _json(doc: dict, status: int) -> Response:
    out = jsonify(doc)
    out.status_code = status
    return out
