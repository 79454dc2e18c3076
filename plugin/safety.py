"""What the middleware refuses: oversized bodies, denied pass-through paths, bad JSON, scripts
in shopper requests, admin calls without the admin token.

Settings (``shopsearch/settings.py``): ``max_body_bytes``, ``passthrough_deny``, ``admin_token``.
Everything refused here is raised as an exception from :mod:`.errors`; the error table there
turns it into the JSON answer.
"""

from __future__ import annotations

import functools
import hmac
import json
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Callable

from flask import Flask, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from shopsearch.plugin.errors import BadRequest, Forbidden, Unauthorized

EXTENSION = "shopsearch.safety"

# Keys that carry (or name) code OpenSearch would run; a shopper has no business sending any.
SCRIPT_KEYS = frozenset({"script", "script_score", "script_fields", "runtime_mappings", "scripted_metric",
                         "stored_script"})


@dataclass(frozen=True)
class DenyList:
    """Glob patterns over path segments; a pattern matches any run of consecutive segments.

    >>> deny = DenyList.parse("_delete_by_query,_nodes/*/_shutdown,_snapshot")
    >>> deny.match("/products-v1/_delete_by_query"), deny.match("/_nodes/abc/_shutdown")
    ('_delete_by_query', '_nodes/*/_shutdown')
    >>> deny.match("/_snapshot/backups/nightly"), deny.match("/products/_search")
    ('_snapshot', None)
    """

    patterns: tuple[tuple[str, ...], ...]

    @classmethod
    def parse(cls, text: str) -> "DenyList":
        patterns = (tuple(s for s in p.strip().strip("/").lower().split("/") if s) for p in text.split(","))
        return cls(tuple(p for p in patterns if p))

    def match(self, path: str) -> str | None:
        """The first pattern matching ``path`` (as written in the setting), or None."""
        # empty segments dropped and case folded: "//Idx/_DELETE_BY_QUERY/" must not slip through
        segments = [s for s in path.lower().split("/") if s]
        for pattern in self.patterns:
            n = len(pattern)
            for start in range(len(segments) - n + 1):
                if all(fnmatchcase(seg, pat) for seg, pat in zip(segments[start:start + n], pattern)):
                    return "/".join(pattern)
        return None


def init_app(app: Flask) -> None:
    """Body limit and pass-through deny list for ``app`` (call before the blueprints)."""
    settings = app.config["SHOPSEARCH"]
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes or None
    app.extensions[EXTENSION] = DenyList.parse(settings.passthrough_deny)
    app.before_request(_refuse_unsafe_requests)


def _refuse_unsafe_requests() -> None:
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    # Refuse on the declared length before reading anything; werkzeug still guards bodies sent
    # without a Content-Length (chunked) when a route reads them.
    if limit and request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge(
            f"The request body has {request.content_length} bytes; the proxy accepts at most {limit} "
            f"(setting max_body_bytes, SHOPSEARCH_MAX_BODY_BYTES). Send bulk requests in smaller chunks.")
    # Only what is about to be forwarded is checked: a request our own blueprints answer never
    # reaches OpenSearch as is, and any path they do not answer (even under /shop or /admin)
    # falls through to the pass-through and is checked here.
    if request.blueprint == "passthrough":
        pattern = current_app.extensions[EXTENSION].match(request.path)
        if pattern is not None:
            raise Forbidden(f"{request.method} {request.path} is denied by the proxy's deny list "
                            f"(setting passthrough_deny, pattern {pattern!r}).")


def parse_json_body(required: bool = False) -> dict[str, Any]:
    """The request body as a JSON object; ``{}`` when there is none and it is not required.

    Raises :class:`BadRequest` for an empty required body, malformed JSON, or JSON that is not an
    object. The Content-Type is not checked: ``curl -d '{...}'`` sends a form type.
    """
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise BadRequest("a JSON object body is required")
        return {}
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise BadRequest(f"the body is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except ValueError as e:
        raise BadRequest(f"the body is not valid JSON: {e}") from None
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object, not {_json_kind(body)}")
    return body


def reject_scripts(value: Any, where: str = "") -> None:
    """Raise :class:`BadRequest` if a JSON value carries a script anywhere.

    A script is any key in :data:`SCRIPT_KEYS` or ending in ``_script`` (``init_script``,
    ``bucket_script``), or an object shaped like one (see :func:`_looks_like_script`). Fields a
    shop may well have, such as ``source`` or ``lang`` with ordinary values, are fine.

    >>> reject_scripts({"query": {"match": {"title": "red shoes"}}, "source": "web"})
    >>> try:
    ...     reject_scripts({"query": {"function_score": {"script_score": {}}}})
    ... except BadRequest as e:
    ...     print(e, "/", e.field)
    scripts are not accepted here (found 'script_score' at query.function_score) / query.function_score.script_score
    """
    stack: list[tuple[str, Any]] = [(where, value)]
    while stack:  # iterative: a deeply nested body must not exhaust the Python stack
        path, node = stack.pop()
        if isinstance(node, dict):
            if _looks_like_script(node):
                _refuse_script("a script object", path)
            for key, child in node.items():
                name = str(key).lower()
                if name in SCRIPT_KEYS or name.endswith("_script"):
                    _refuse_script(repr(key), path, field=f"{path}.{key}" if path else str(key))
                stack.append((f"{path}.{key}" if path else str(key), child))
        elif isinstance(node, list):
            stack.extend((f"{path}[{i}]", child) for i, child in enumerate(node))


def require_admin_token(view: Callable | None = None):
    """Guard admin routes with ``settings.admin_token``.

    Three uses: ``@require_admin_token`` on a view, ``bp.before_request(require_admin_token)`` on
    a whole blueprint, or ``require_admin_token()`` inside a view. The token comes in
    ``Authorization: Bearer <token>`` or ``X-Admin-Token``. No token configured: 403 (admin is
    off); missing or wrong token: 401.
    """
    if view is not None:
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            _check_admin_token()
            return view(*args, **kwargs)
        return guarded
    _check_admin_token()
    return None


def _check_admin_token() -> None:
    expected = current_app.config["SHOPSEARCH"].admin_token
    if not expected:
        raise Forbidden("admin routes are disabled: set SHOPSEARCH_ADMIN_TOKEN (setting admin_token) to enable them")
    auth = request.headers.get("Authorization", "")
    given = auth[7:].strip() if auth[:7].lower() == "bearer " else request.headers.get("X-Admin-Token", "")
    if not given:
        raise Unauthorized("an admin token is required: send 'Authorization: Bearer <token>' or 'X-Admin-Token'")
    if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        raise Unauthorized("the admin token is wrong")


def _refuse_script(what: str, path: str, field: str | None = None) -> None:
    where = f" at {path}" if path else ""
    raise BadRequest(f"scripts are not accepted here (found {what}{where})", field=field or path or None)


SCRIPT_LANGS = frozenset({"painless", "expression", "mustache", "java"})


def _looks_like_script(node: dict) -> bool:
    """``{"source"|"id": …, "lang": "painless"}`` or ``{"source"|"id": …, "params": {…}}``."""
    keys = {str(k).lower(): v for k, v in node.items()}
    if not keys.keys() & {"source", "id"}:
        return False
    lang = keys.get("lang")
    return (isinstance(lang, str) and lang.lower() in SCRIPT_LANGS) or isinstance(keys.get("params"), dict)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"
