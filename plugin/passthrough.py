"""Transparent pass-through: an OpenSearch REST request the allow-list lets through (``safety.py``,
``allow.py``) is forwarded and its answer returned as is.

The target is sent byte for byte as the client wrote it (``%2F`` in a document id stays one
segment), and it is the target that was checked: the prepared request's URL is compared with it
before sending. Bodies (JSON, NDJSON ``_bulk``/``_msearch``) are sent byte for byte; responses are
streamed back without decoding, so compressed and chunked answers arrive unchanged. The proxy
never lends its own rights: credentials in ``opensearch_url`` are not used here, and the admin
token that opened a request is not forwarded.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import requests
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request

from shopsearch.plugin.cluster import upstream as upstream_session
from shopsearch.plugin.errors import BadRequest
from shopsearch.plugin.events import record_search
from shopsearch.plugin.opt_in import as_opensearch_response, opt_in_request
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


def upstream_base(opensearch_url: str) -> str:
    """The cluster's URL without credentials (the pass-through sends only the caller's own).

    >>> upstream_base("https://proxy:secret@search.internal:9200/")
    'https://search.internal:9200'
    """
    parts = urlsplit(opensearch_url)
    return urlunsplit((parts.scheme, parts.hostname + (f":{parts.port}" if parts.port else ""), parts.path.rstrip("/"),
                       "", ""))


@bp.route("/", defaults={"path": ""}, methods=METHODS)
@bp.route("/<path:path>", methods=METHODS)
@contract(errors=(400, 403, 504))
def forward(path: str) -> Response:
    """Forward any request to OpenSearch and stream its answer back unchanged (or answer an opt-in search)."""
    opted = opt_in_request(request.method, path, request.get_data(cache=True))
    if opted is not None:
        return _shopper_search(*opted)
    session = upstream_session()
    forwarding = g.passthrough  # checked by safety.py before this view runs
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
    if forwarding.credential in ("admin", "key"):  # the proxy's own credentials are not the cluster's business
        headers = {k: v for k, v in headers.items() if k.lower() not in ("authorization", "x-admin-token", "x-api-key")}
    # requests would add its own Accept-Encoding; a client that asked for none must not get gzip
    headers.setdefault("Accept-Encoding", request.headers.get("Accept-Encoding", "identity"))
    url = upstream_base(current_app.config["SHOPSEARCH"].opensearch_url) + forwarding.target.raw
    prepared = session.prepare_request(requests.Request(request.method, url, data=request.get_data(), headers=headers))
    if prepared.url != url:
        raise BadRequest(f"the request target would change on the way to OpenSearch ({forwarding.target.raw!r} "
                         f"-> {prepared.url[len(url) - len(forwarding.target.raw):]!r}); send it in that form")
    # a cluster that cannot be reached raises requests' errors: plugin/errors.py answers them
    upstream = session.send(prepared, stream=True, allow_redirects=False, timeout=(5, 120))
    out_headers = [(k, v) for k, v in upstream.raw.headers.items() if k.lower() not in _HOP]
    if "content-length" in upstream.headers:
        out_headers.append(("Content-Length", upstream.headers["content-length"]))

    def body():
        try:
            yield from upstream.raw.stream(64 * 1024, decode_content=False)
        finally:
            upstream.close()

    return Response(body(), status=upstream.status_code, headers=out_headers, direct_passthrough=True)


def _shopper_search(catalogue: str, args: dict) -> Response:
    """A ``_search`` that opted in with ``ext.shopsearch``: answered by the shopper search."""
    reject_scripts(args)
    req = parse_search_request(args)
    result = searcher().search(catalogue, req)  # errors: plugin/errors.py
    answer = as_opensearch_response(result)
    answer["ext"]["shopsearch"]["query_id"] = record_search(catalogue, req.user, result)
    return jsonify(answer)
