"""Transparent pass-through: an OpenSearch REST request the allow-list lets through (``safety.py``,
``allow.py``) is forwarded and its answer returned as is.

The target is sent byte for byte as the client wrote it (``%2F`` in a document id stays one
segment), and it is the target that was checked: what urllib3 would make of it is compared with it
before sending. The request goes on urllib3's keep-alive pool to the cluster's host
(``cluster.raw_pool``), without requests' per-request session work. Bodies (JSON, NDJSON
``_bulk``/``_msearch``) are sent byte for byte; responses are streamed back without decoding, so
compressed and chunked answers arrive unchanged. A write of a catalogue's product is the exception:
shopsearch applies it as an ingest would (``product_writes.py``). The proxy never lends its own rights:
credentials in ``opensearch_url`` are not used here, and the admin token that opened a request
is not forwarded.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import urllib3
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from urllib3.util.url import _encode_target  # what urllib3 does to a request target before sending it

from shopsearch.plugin.cluster import raw_pool
from shopsearch.plugin.errors import BadRequest
from shopsearch.plugin.events import record_search
from shopsearch.plugin.opt_in import as_opensearch_response, opt_in_request
from shopsearch.plugin.product_writes import answer_product_write
from shopsearch.plugin.safety import reject_scripts
from shopsearch.plugin.schemas import contract
from shopsearch.plugin.shop import parse_search_request, searcher

bp = Blueprint("passthrough", __name__)

METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"]
# hop-by-hop headers (RFC 9110 §7.6.1) and those the HTTP layer recomputes are not forwarded
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
        "transfer-encoding", "upgrade", "host", "content-length"}


def init_app(app: Flask) -> None:
    """The catch-all route (register it last), on the internal face only."""
    app.register_blueprint(bp)


@bp.route("/", defaults={"path": ""}, methods=METHODS)
@bp.route("/<path:path>", methods=METHODS)
@contract(errors=(400, 403, 404, 409, 503, 504))
def forward(path: str) -> Response:
    """Forward any request to OpenSearch and stream its answer back unchanged (or answer an opt-in search)."""
    opted = opt_in_request(request.method, path, request.get_data(cache=True))
    if opted is not None:
        return _shopper_search(*opted)
    forwarding = g.passthrough  # checked by safety.py before this view runs
    written = answer_product_write(request.method, forwarding.target, forwarding.credential)
    if written is not None:
        return written  # a catalogue's product: written as an ingest would (product_writes.py)
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
    if forwarding.credential in ("admin", "key"):  # the proxy's own credentials are not the cluster's business
        headers = {k: v for k, v in headers.items() if k.lower() not in ("authorization", "x-admin-token", "x-api-key")}
    # a client that asked for no encoding must not get gzip
    headers.setdefault("Accept-Encoding", request.headers.get("Accept-Encoding", "identity"))
    target = urlsplit(current_app.config["SHOPSEARCH"].opensearch_url).path.rstrip("/") + forwarding.target.raw
    if _encode_target(target) != target:
        raise BadRequest(f"the request target would change on the way to OpenSearch ({forwarding.target.raw!r} "
                         f"-> {_encode_target(target)[len(target) - len(forwarding.target.raw):]!r}); send it in that form")
    # a cluster that cannot be reached raises urllib3's errors: plugin/errors.py answers them
    upstream = raw_pool().urlopen(request.method, target, body=request.get_data(), headers=headers, redirect=False,
                                  retries=False, preload_content=False, decode_content=False, assert_same_host=False,
                                  timeout=urllib3.Timeout(connect=5, read=120))
    out_headers = [(k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP]
    if "content-length" in upstream.headers:
        out_headers.append(("Content-Length", upstream.headers["content-length"]))

    def body():
        done = False
        try:
            yield from upstream.stream(64 * 1024, decode_content=False)
            done = True
        finally:
            if done:
                upstream.release_conn()  # read to the end: the connection serves the next request
            else:
                upstream.close()  # the client went away mid-answer: this connection is not reusable

    return Response(body(), status=upstream.status, headers=out_headers, direct_passthrough=True)


def _shopper_search(catalogue: str, args: dict) -> Response:
    """A ``_search`` that opted in with ``ext.shopsearch``: answered by the shopper search."""
    reject_scripts(args)
    req = parse_search_request(args)
    result = searcher().search(catalogue, req)  # errors: plugin/errors.py
    answer = as_opensearch_response(result)
    answer["ext"]["shopsearch"]["query_id"] = record_search(catalogue, req.user, result)
    return jsonify(answer)
