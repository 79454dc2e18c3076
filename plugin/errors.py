"""The web boundary: the one ordered table from internal exceptions to HTTP answers.

Routes raise; they never build error responses. Every error leaves the middleware as JSON::

    {"error": "bad_request", "message": "size must be an integer", "request_id": "…", "field": "size"}

``field`` only appears when the error is about one input. Werkzeug's own HTTP errors (404, 405,
413, …) get the same shape. Anything not in :data:`ERRORS` is a bug: the shopper gets a generic
500 with the request id, and the traceback goes to the ``shopsearch.errors`` log under that id.

Answers that OpenSearch itself gives through the pass-through are not errors here: they are
returned unchanged by ``passthrough.py``.

>>> rule_for(BadRequest("size must be an integer", field="size")).exception.__name__, BadRequest.status
('ShopsearchError', 400)
"""

from __future__ import annotations

import logging
from typing import Callable, NamedTuple

import opensearchpy
import requests
import urllib3
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from shopsearch.errors import ShopsearchError

from shopsearch.plugin.observability import request_id

log = logging.getLogger("shopsearch.errors")


class ShopsearchHTTPError(ShopsearchError):
    """An error only the web layer raises; ``status`` and ``code`` say how it is answered."""

    headers: dict[str, str] = {}


class BadRequest(ShopsearchHTTPError, ValueError):
    """The request is wrong (400); ``field`` names the offending input when there is one.

    >>> BadRequest("price_min must be a number", field="price_min").field
    'price_min'
    """

    status, code = 400, "bad_request"


class Unauthorized(ShopsearchHTTPError):
    """No credentials, or wrong ones (401)."""

    status, code = 401, "unauthorized"
    headers = {"WWW-Authenticate": 'Bearer realm="shopsearch admin"'}


class Forbidden(ShopsearchHTTPError):
    """The request is understood and refused whoever sends it (403)."""

    status, code = 403, "forbidden"


class NotFound(ShopsearchHTTPError, LookupError):
    """The named thing (a catalogue, a query id) does not exist (404)."""

    status, code = 404, "not_found"


class TooManyRequests(ShopsearchHTTPError):
    """A client sent more than its rate allows; it may retry after ``retry_after`` seconds (429)."""

    status, code = 429, "too_many_requests"

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class Unavailable(ShopsearchHTTPError):
    """A dependency is down; the caller may retry (503), after ``retry_after`` seconds if given."""

    status, code = 503, "unavailable"

    def __init__(self, message: str, field: str | None = None, retry_after: int | None = None):
        super().__init__(message, field=field)
        self.headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}


class Rule(NamedTuple):
    exception: type[BaseException]
    status: int  # 0: the exception carries its own ``status`` and ``code``
    error: str
    message: str | None  # None: the exception's own message is shown (only for our own classes)
    when: Callable[[BaseException], bool] | None = None  # and only when this holds


# Ordered: the first matching row wins, so subclasses come before their bases. Every deliberate
# error is a ShopsearchError and says its own status and code (SearchError: 400, 404, 409, 502;
# RolloutNotFound: 404; ...). Third-party exceptions get a fixed message: theirs may name hosts,
# indices or internals.
ERRORS: tuple[Rule, ...] = (
    Rule(ShopsearchError, 0, "", None),
    Rule(opensearchpy.ConnectionTimeout, 504, "opensearch_timeout", "OpenSearch did not answer in time."),
    Rule(opensearchpy.ConnectionError, 503, "opensearch_unavailable",
         "OpenSearch cannot be reached; the service will recover when it is back."),
    # the cluster's security refused this service's own OpenSearch user: a role that lacks an action
    # (the warning logged names it), a deployment to mend, not the caller's fault
    Rule(opensearchpy.AuthorizationException, 502, "opensearch_refused",
         "The cluster refused this service's OpenSearch user an action it needs: its role in the cluster's "
         "security configuration lacks it (the service's log names the action)."),
    # the app's one requests session is the pass-through's, to OpenSearch (passthrough.py)
    # a node that is starting answers 503 itself (no shard copy allocated yet): the same outage
    Rule(opensearchpy.TransportError, 503, "opensearch_unavailable",
         "OpenSearch is starting or has no copy of the data yet; the service will recover shortly.",
         lambda e: getattr(e, "status_code", None) == 503),
    Rule(requests.Timeout, 504, "opensearch_timeout", "OpenSearch did not answer in time."),
    Rule(requests.ConnectionError, 503, "opensearch_unavailable",
         "OpenSearch cannot be reached; the proxy will recover when it is back."),
    # the pass-through's urllib3 pool (cluster.raw_pool); a refused connection is a ConnectTimeoutError
    # subclass in urllib3, so it comes first
    Rule(urllib3.exceptions.NewConnectionError, 503, "opensearch_unavailable",
         "OpenSearch cannot be reached; the proxy will recover when it is back."),
    Rule(urllib3.exceptions.TimeoutError, 504, "opensearch_timeout", "OpenSearch did not answer in time."),
    Rule(urllib3.exceptions.HTTPError, 503, "opensearch_unavailable",
         "OpenSearch cannot be reached; the proxy will recover when it is back."),
)

EXTENSION = "shopsearch.errors"


def init_app(app: Flask) -> None:
    """Render every error of ``app`` as JSON (call before the blueprints are registered)."""
    app.extensions[EXTENSION] = ERRORS
    app.register_error_handler(Exception, render_error)


def rule_for(exc: BaseException) -> Rule | None:
    """The first row of :data:`ERRORS` that matches ``exc``, or None for an unknown error."""
    return next((rule for rule in ERRORS if isinstance(exc, rule.exception) and (rule.when is None or rule.when(exc))),
                None)


def error_response(status: int, error: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    """The JSON error body every route and hook answers with."""
    body = {"error": error, "message": message, "request_id": request_id()}
    if field is not None:
        body["field"] = field
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def render_error(exc: Exception) -> Response | HTTPException:
    """The JSON answer for ``exc``: its row of :data:`ERRORS`, else a generic 500 with the request id."""
    if isinstance(exc, HTTPException):
        return _render_http_exception(exc)
    rule = rule_for(exc)
    if rule is None:
        log.exception("unhandled error on %s %s (request_id=%s)", request.method, request.path, request_id())
        response = jsonify(error="internal", message="Internal error; quote the request id when reporting it.",
                           request_id=request_id())
        response.status_code = 500
        return response
    status, error = (exc.status, exc.code) if rule.status == 0 else (rule.status, rule.error)
    if status >= 500:
        log.warning("%s on %s %s (request_id=%s): %r", error, request.method, request.path, request_id(), exc)
    return error_response(status, error, rule.message or str(exc), getattr(exc, "location", None),
                          getattr(exc, "headers", None))


def _render_http_exception(exc: HTTPException) -> Response | HTTPException:
    if exc.code is None or exc.code < 400:  # redirects (e.g. a missing trailing slash) stay redirects
        return exc
    error = (exc.name or "error").lower().replace(" ", "_").replace("'", "")
    # keep werkzeug's headers (Allow on 405, …) but replace its HTML body
    headers = {k: v for k, v in exc.get_response().headers.items() if k.lower() not in ("content-type", "content-length")}
    return error_response(exc.code, error, exc.description or exc.name, headers=headers)
