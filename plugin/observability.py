"""Request ids, one JSON access-log line per request, and Prometheus metrics at ``/metrics``.

Request id: an incoming ``X-Request-Id`` is kept when it looks sane (letters, digits, ``._:-``,
at most 128 characters), otherwise a fresh ``uuid4().hex`` is used; either way it is answered in
the ``X-Request-Id`` header and quoted in every error body and log line.

Metrics live in a :class:`~prometheus_client.CollectorRegistry` of each app, never in the global
default registry, so that several apps (tests, one per gunicorn worker) do not collide:

- ``shopsearch_requests_total{route,method,status,strategy}``
- ``shopsearch_request_seconds{route,strategy}`` (histogram, 1 ms to 5 s)
- ``shopsearch_degraded_total{reason}``: see :func:`count_degraded`
- ``shopsearch_cache_total{cache,result}``: see :func:`count_cache`

``route`` is the Flask URL rule (``/shop/<catalogue>/search``) or ``passthrough`` for the
catch-all, never the raw path: one time series per route, not one per URL a client invents.
``strategy`` is whatever the route put in ``flask.g.strategy`` (``none`` when unset).

Under gunicorn each worker process has its own registry, so one scrape of ``/metrics`` sees one
worker's counts. For production with several workers use prometheus_client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR`` and a ``MultiProcessCollector``); it is not implemented here.

Durations are measured up to the moment the view returns its response: for the streamed
pass-through that is the time to OpenSearch's first byte, not to the end of a large body.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from dataclasses import dataclass

from flask import Blueprint, Flask, Response, current_app, g, has_request_context, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from shopsearch.privacy import pseudonym

EXTENSION = "shopsearch.observability"
HEADER = "X-Request-Id"
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

access_log = logging.getLogger("shopsearch.access")
bp = Blueprint("observability", __name__)


@dataclass(frozen=True)
class Metrics:
    """The per-app registry and the collectors registered in it."""

    registry: CollectorRegistry
    requests: Counter
    seconds: Histogram
    degraded: Counter
    cache: Counter

    @classmethod
    def create(cls) -> "Metrics":
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            requests=Counter("shopsearch_requests", "Requests answered by the middleware.",
                             ["route", "method", "status", "strategy"], registry=registry),
            seconds=Histogram("shopsearch_request_seconds", "Time to answer a request.",
                              ["route", "strategy"], buckets=BUCKETS, registry=registry),
            degraded=Counter("shopsearch_degraded", "Searches answered in a degraded mode, by reason.",
                             ["reason"], registry=registry),
            cache=Counter("shopsearch_cache", "Cache look-ups, by cache and hit or miss.",
                          ["cache", "result"], registry=registry),
        )


def init_app(app: Flask, metrics: bool = True) -> None:
    """Request ids, access log and (with ``metrics``) ``/metrics`` for ``app`` (call before the
    pass-through blueprint). The public face serves ``/metrics`` only with ``public_metrics``."""
    app.extensions[EXTENSION] = Metrics.create()
    # First of all before-request hooks, so that a request refused by another hook (413, 403)
    # still has its start time, id, log line and metrics.
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request(_finish)
    if metrics:
        app.register_blueprint(bp)


def request_id() -> str:
    """The current request's id, assigned on first use, or ``"-"`` outside a request.

    Any hook may call it first (the error handler may run before ``_start`` if another app-level
    hook was inserted ahead of it), so the id is created lazily rather than in ``_start``.
    """
    if not has_request_context():
        return "-"
    if "request_id" not in g:
        incoming = request.headers.get(HEADER, "")
        g.request_id = incoming if _SANE_ID.fullmatch(incoming) else uuid.uuid4().hex
    return g.request_id


def count_degraded(reason: str) -> None:
    """Count one answer that fell back to a degraded mode, e.g. ``count_degraded("encoder_timeout")``.

    Keep ``reason`` to a small fixed vocabulary: each value is a time series. A no-op in apps
    without this extension.
    """
    metrics = current_app.extensions.get(EXTENSION)
    if metrics is not None:
        metrics.degraded.labels(reason=reason).inc()


def count_cache(cache: str, hit: bool) -> None:
    """Count one look-up in ``cache`` (e.g. ``"query_vector"``, ``"results"``) as a hit or a miss."""
    metrics = current_app.extensions.get(EXTENSION)
    if metrics is not None:
        metrics.cache.labels(cache=cache, result="hit" if hit else "miss").inc()


def route_label() -> str:
    """The low-cardinality name of the current route (the URL rule, or ``passthrough``)."""
    if request.blueprint == "passthrough":
        return "passthrough"
    if request.url_rule is not None:
        return request.url_rule.rule
    return "unmatched"  # 404 and 405 raised by the router itself


def _start() -> None:
    g.request_started = time.perf_counter()
    request_id()


def _finish(response: Response) -> Response:
    elapsed = time.perf_counter() - g.get("request_started", time.perf_counter())
    route, strategy = route_label(), str(g.get("strategy") or "none")
    response.headers[HEADER] = request_id()
    metrics: Metrics | None = current_app.extensions.get(EXTENSION)
    if metrics is not None:
        metrics.requests.labels(route=route, method=request.method, status=str(response.status_code),
                                strategy=strategy).inc()
        metrics.seconds.labels(route=route, strategy=strategy).observe(elapsed)
    access_log.info(json.dumps({
        "method": request.method, "path": logged_path(), "status": response.status_code,
        "duration_ms": round(elapsed * 1000, 2), "request_id": request_id(), "route": route,
        "endpoint": request.endpoint, "strategy": g.get("strategy"),
    }))
    return response


def logged_path() -> str:
    """The path for the access log: a shopper id in it is written as its pseudonym, never raw."""
    user = (request.view_args or {}).get("user_id")
    if user is None or request.url_rule is None:
        return request.path
    who = pseudonym(str(user), current_app.config["SHOPSEARCH"].pseudonym_salt)
    return request.url_rule.rule.replace("<user_id>", f"~{who}")


@bp.get("/metrics")
def metrics() -> Response:
    """This app's metrics in the Prometheus text format."""
    registry = current_app.extensions[EXTENSION].registry
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
