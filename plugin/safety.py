"""What the middleware refuses: oversized bodies, pass-through requests off the allow-list
(``allow.py``) without a credential, scripts in shopper requests, admin calls without the admin
token (bad JSON: ``json_body.py``).

Settings (``shopsearch/settings.py``): ``max_body_bytes``, ``passthrough_allow``,
``passthrough_indices``, ``passthrough_forward_auth``, ``admin_token``.
Everything refused here is raised as an exception from :mod:`.errors`; the error table there
turns it into the JSON answer.
"""

from __future__ import annotations

import functools
import hmac
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Callable
from urllib.parse import quote

from flask import Flask, current_app, g, request
from opensearchpy import NotFoundError
from werkzeug.exceptions import RequestEntityTooLarge

from shopsearch.errors import SettingsError
from shopsearch.index import api_keys
from shopsearch.plugin import allow, cluster
from shopsearch.plugin.errors import BadRequest, Forbidden, Unauthorized
from shopsearch.plugin.json_body import parse_json
from shopsearch.query.caches import TTLCache
from shopsearch.settings import setting_default

EXTENSION = "shopsearch.safety"

# Keys that carry (or name) code OpenSearch would run; a shopper has no business sending any.
SCRIPT_KEYS = frozenset({"script", "script_score", "script_fields", "runtime_mappings", "scripted_metric",
                         "stored_script"})


# What an API key's role opens on the pass-through (shopsearch/index/api_keys.py), on any index
# but the project's own and system ones: the built-in read rules, and for ``write`` document writes.
KEY_READ_RULES = allow.parse_rules(setting_default("passthrough_allow"))
KEY_WRITE_RULES = KEY_READ_RULES + allow.parse_rules(
    "PUT,POST /{index}/_doc/{id}; POST /{index}/_doc; DELETE /{index}/_doc/{id}; PUT,POST /{index}/_create/{id}; "
    "POST /{index}/_update/{id}; POST,PUT /{index}/_bulk; POST,PUT /_bulk; POST /{index}/_delete_by_query; "
    "POST /{index}/_refresh")
KEY_RULES = {"read": KEY_READ_RULES, "write": KEY_WRITE_RULES}


@dataclass
class PassthroughPolicy:
    """The allow-list of one app, and which names are catalogues it serves (cached 5 s a name)."""
    rules: tuple[allow.Rule, ...]
    indices: tuple[str, ...]       # extra index globs (setting passthrough_indices)
    internal: frozenset[str]       # the project's own indices: never without a credential
    forward_auth: bool
    known: TTLCache
    keys: TTLCache                 # presented API key -> ApiKey or None (setting api_key_cache_seconds)

    def is_keyed_index(self, name: str) -> bool:
        """Whether a read or write key reaches ``name``: one index, not the project's own or a system one."""
        return allow.looks_like_index_name(name) and name not in self.internal

    def is_index(self, name: str) -> bool:
        """Whether ``name`` is one index the pass-through serves without a credential."""
        if not allow.looks_like_index_name(name) or name in self.internal:
            return False
        if any(fnmatchcase(name, glob) for glob in self.indices):
            return True
        found = self.known.get(name)
        if found is None:
            found = _is_catalogue_alias(name)
            self.known.put(name, found)
        return found


def _is_catalogue_alias(name: str) -> bool:
    """Whether ``name`` is a catalogue's alias (over ``<name>-v<N>``) in the app's cluster."""
    try:
        found = cluster.client().indices.get_alias(name=name)
    except NotFoundError:
        return False
    return any(re.fullmatch(rf"{re.escape(name)}-v\d+", index) for index in found)


def init_app(app: Flask) -> None:
    """Body limit and the pass-through allow-list for ``app`` (call before the blueprints)."""
    settings = app.config["SHOPSEARCH"]
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes or None
    try:
        rules = allow.parse_rules(settings.passthrough_allow)
    except ValueError as e:
        raise SettingsError(str(e)) from None
    app.extensions[EXTENSION] = PassthroughPolicy(
        rules, tuple(g.strip() for g in settings.passthrough_indices.split(",") if g.strip()),
        frozenset({settings.ubi_queries_index, settings.ubi_events_index, settings.profiles_index,
                   settings.api_keys_index}),
        settings.passthrough_forward_auth, TTLCache(4096, 5.0), TTLCache(4096, settings.api_key_cache_seconds))
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
        g.passthrough = _check_passthrough()


def raw_target() -> str:
    """The request target exactly as the client sent it (path and query, still escaped)."""
    env = request.environ
    raw = env.get("RAW_URI") or env.get("REQUEST_URI")
    if raw is None:  # a server that keeps no raw target: rebuild it from the decoded path
        raw = quote(env.get("PATH_INFO", "/"), safe="/!$&'()*+,;=:@") + (
            f"?{env['QUERY_STRING']}" if env.get("QUERY_STRING") else "")
    if raw.startswith(("http://", "https://")):  # absolute form (RFC 9112 §3.2.2)
        raw = "/" + raw.split("://", 1)[1].partition("/")[2]
    return raw


@dataclass(frozen=True)
class Forwarding:
    """What the pass-through will send: the exact target, and whether a credential opened it."""
    target: allow.Target
    credential: str | None   # "admin", "cluster" (the caller's own Authorization), or None
    rule: str | None


def _check_passthrough() -> Forwarding:
    policy: PassthroughPolicy = current_app.extensions[EXTENSION]
    target = allow.parse_target(raw_target())
    if has_admin_credential():
        return Forwarding(target, "admin", None)
    key = api_key()
    if key is not None:
        return _check_keyed(policy, target, key)
    if policy.forward_auth and request.headers.get("Authorization"):
        return Forwarding(target, "cluster", None)  # the cluster's security plugin decides
    rule = allow.match_rule(policy.rules, request.method, target.segments, policy.is_index)
    if rule is None:
        raise Forbidden(f"{request.method} {target.path} is not on the pass-through allow-list (setting "
                        "passthrough_allow; indices: catalogue aliases and passthrough_indices); it needs the "
                        "admin credential or an API key whose role allows it")
    _check_indices_in_body(policy.is_index, target, rule, "without the admin credential or an API key")
    return Forwarding(target, None, rule)


def _check_keyed(policy: PassthroughPolicy, target: allow.Target, key) -> Forwarding:
    rule = allow.match_rule(KEY_RULES[key.role], request.method, target.segments, policy.is_keyed_index)
    if rule is None:
        raise Forbidden(f"{request.method} {target.path} is beyond what the API key {key.name!r} (role {key.role}) "
                        "may do: read and search APIs, and for role write document writes, on indices other than "
                        "the project's own and system ones")
    _check_indices_in_body(policy.is_keyed_index, target, rule, f"to the API key {key.name!r}")
    if request.method != "GET":
        _refuse_scripts_in(request.get_data(cache=True))
    return Forwarding(target, "key", rule)


def _refuse_scripts_in(body: bytes) -> None:
    """A key's write carries no script (``_update``, ``_bulk`` update lines, by-query bodies)."""
    if not body.strip():
        return
    try:
        docs = [parse_json(body)]
    except BadRequest:  # NDJSON (_bulk): each line on its own
        docs = [parse_json(line) for line in body.splitlines() if line.strip()]
    for doc in docs:
        reject_scripts(doc)


def _check_indices_in_body(is_index: Callable[[str], bool], target: allow.Target, rule: str, refused_to: str) -> None:
    body = request.get_data(cache=True)
    named = allow.indices_named_in_body(target.segments, body)
    refused = [name for name in named if not is_index(name)]
    if refused or (not any(p == "{index}" for p in rule.split(" ", 1)[1].strip("/").split("/"))
                   and allow.needs_path_index(target.segments, body)):
        what = f"index {refused[0]!r}" if refused else "a header or action line without an index"
        raise Forbidden(f"the body of {request.method} {target.path} names {what}, which the pass-through "
                        f"does not serve {refused_to}")


def on_public_face() -> bool:
    """Whether the current app is the public face (``plugin/app.py``), which takes no credential of the shop's."""
    return current_app.config.get("SHOPSEARCH_FACE") == "public"


def api_key():
    """The valid API key this request presents (``X-Api-Key`` or ``Authorization: ApiKey``), or
    None when it presents none; 401 for one that is unknown, revoked or wrong. Never on the public face."""
    if on_public_face():
        return None
    if "api_key" in g:
        return g.api_key
    auth = request.headers.get("Authorization", "")
    presented = auth[7:].strip() if auth[:7].lower() == "apikey " else request.headers.get("X-Api-Key", "")
    if not presented:
        g.api_key = None
        return None
    policy: PassthroughPolicy = current_app.extensions[EXTENSION]
    found = policy.keys.get(presented)
    if found is None:
        found = api_keys.lookup(cluster.client(), current_app.config["SHOPSEARCH"], presented) or False
        policy.keys.put(presented, found)
    if not found:
        raise Unauthorized("the API key is not valid or was revoked (shopsearch keys list)")
    g.api_key = found
    return found


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


def has_admin_credential() -> bool:
    """Whether the request carries the configured admin token (never True when none is
    configured, and never on the public face, which takes no admin credential)."""
    if on_public_face():
        return False
    expected = current_app.config["SHOPSEARCH"].admin_token
    given = _given_admin_token()
    if bool(expected and given) and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        return True
    key = api_key()
    return key is not None and key.role == "admin"


def _given_admin_token() -> str:
    auth = request.headers.get("Authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else request.headers.get("X-Admin-Token", "")


def _check_admin_token() -> None:
    if on_public_face():
        raise Forbidden("the public face takes no admin credential: this is served on the internal face")
    key = api_key()
    if key is not None:
        if key.role != "admin":
            raise Forbidden(f"the API key {key.name!r} has role {key.role}; /admin needs role admin or the admin token")
        return
    expected = current_app.config["SHOPSEARCH"].admin_token
    if not expected:
        raise Forbidden("admin routes are disabled: set SHOPSEARCH_ADMIN_TOKEN (setting admin_token) to enable them")
    given = _given_admin_token()
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
