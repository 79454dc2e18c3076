"""What the pass-through forwards without a credential: an allow-list, checked on the exact bytes sent.

The request target is taken as the client sent it (``RAW_URI``), never as Flask decoded it, and is
forwarded byte for byte. Before it is checked it must be in the one form that neither the proxy's
HTTP client nor OpenSearch would rewrite (:func:`parse_target`): no dot segments, no empty
segments, no ``#``, no percent-escape of a character that needs none (``%73`` for ``s``; ``%25``
and ``%2F`` stay, so a document id may hold a slash), upper-case hex. So the path checked is the
path OpenSearch routes: ``/_cluster/./settings``, ``/_cluster/%2573ettings``,
``/shop%2F..%2F_cat%2Findices`` are 400 before any rule is read.

Rules (setting ``passthrough_allow``) are ``METHODS /pattern`` separated by ``;``. A pattern's
segments are literals, ``*`` (any one segment), ``{id}`` (any one segment) and ``{index}``: one
catalogue (an alias ``<name>`` over ``<name>-v<N>``) or an index matching ``passthrough_indices``,
never a pattern, a list, a system index or one of the project's own (events, queries, profiles).
``_msearch`` header lines and ``_mget`` documents that name an index are held to the same test.

>>> rules = parse_rules("GET,POST /{index}/_search; GET /_cluster/health")
>>> [str(r) for r in rules]
['GET,POST /{index}/_search', 'GET /_cluster/health']
>>> match_rule(rules, "POST", parse_target("/fashion/_search").segments, {"fashion"}.__contains__)
'GET,POST /{index}/_search'
>>> match_rule(rules, "DELETE", parse_target("/fashion").segments, {"fashion"}.__contains__) is None
True
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable
from urllib.parse import unquote

from shopsearch.plugin.errors import BadRequest

# RFC 3986 unreserved characters: a client never needs to escape them, and an HTTP client may
# unescape them on the way (requests does), so an escaped one would change between check and send.
_UNRESERVED = re.compile(r"[A-Za-z0-9\-._~]")
_PATH_CHARS = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$")
_QUERY_CHARS = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*$")
_ESCAPE = re.compile(r"%(?P<hex>..)")
# what OpenSearch reads as something other than one index name
_NOT_A_NAME = re.compile(r"[*?,\"<>|\\/ #:]|^[_.+\-]|^$")
_SEARCH_LIKE = ("_search", "_msearch", "_count", "_mget", "_explain", "_field_caps", "_validate")


@dataclass(frozen=True)
class Target:
    """A request target as sent: ``path`` and ``query`` raw, ``segments`` decoded once (as OpenSearch does)."""
    path: str
    query: str
    segments: tuple[str, ...]

    @property
    def raw(self) -> str:
        return self.path + (f"?{self.query}" if self.query else "")


def parse_target(raw: str) -> Target:
    """The target, or :class:`BadRequest` when its form is one a client or server could rewrite.

    >>> parse_target("/idx/_doc/a%2Fb?routing=1").segments
    ('idx', '_doc', 'a/b')
    >>> for bad in ("/_cluster/./settings", "/_cluster/zz/../settings", "/_cluster/%2573ettings",
    ...             "/_cluster/settings%23", "/_snapshot#", "/%5Fsnapshot", "//x", "/a%2fb"):
    ...     try:
    ...         parse_target(bad)
    ...     except BadRequest as e:
    ...         print(bad, "->", str(e).split(":")[0])
    /_cluster/./settings -> the request path has a dot segment ('.' or '..')
    /_cluster/zz/../settings -> the request path has a dot segment ('.' or '..')
    /_cluster/%2573ettings -> the request path is escaped twice ('%25' followed by hex digits)
    /_cluster/settings%23 -> the request path escapes '#', which no index or API name holds
    /_snapshot# -> the request target holds '#' (a fragment is never sent to a server)
    /%5Fsnapshot -> the request path escapes '_', which needs no escaping
    //x -> the request path has an empty segment ('//')
    /a%2fb -> the request path writes an escape in lower case ('%2f')
    """
    if "#" in raw:
        raise BadRequest("the request target holds '#' (a fragment is never sent to a server): escape it as %23",
                         field="path")
    path, _, query = raw.partition("?")
    if not path.startswith("/") or not _PATH_CHARS.match(path):
        raise BadRequest("the request path holds characters that must be percent-escaped", field="path")
    if query and not _QUERY_CHARS.match(query):
        raise BadRequest("the query string holds characters that must be percent-escaped", field="query")
    for part, name in ((path, "path"), (query, "query string")):
        for m in _ESCAPE.finditer(part):
            code = m.group("hex")
            if not re.fullmatch(r"[0-9A-Fa-f]{2}", code):
                raise BadRequest(f"the request {name} has a broken escape ('%{code}')", field="path")
            if code != code.upper():
                raise BadRequest(f"the request {name} writes an escape in lower case ('%{code}'): use upper-case hex",
                                 field="path")
            char = chr(int(code, 16))
            if _UNRESERVED.fullmatch(char):
                raise BadRequest(f"the request {name} escapes {char!r}, which needs no escaping", field="path")
    raw_segments = path[1:].split("/") if path != "/" else []
    if raw_segments and raw_segments[-1] == "":
        raw_segments = raw_segments[:-1]  # one trailing slash, as OpenSearch allows
    segments = []
    for seg in raw_segments:
        if seg == "":
            raise BadRequest("the request path has an empty segment ('//')", field="path")
        decoded = unquote(seg)
        if decoded in (".", ".."):
            raise BadRequest("the request path has a dot segment ('.' or '..'): name the resource directly",
                             field="path")
        if re.search(r"%[0-9A-Fa-f]{2}", decoded):
            raise BadRequest("the request path is escaped twice ('%25' followed by hex digits): escape once",
                             field="path")
        if "#" in decoded or "?" in decoded:
            raise BadRequest(f"the request path escapes {'#' if '#' in decoded else '?'!r}, which no index or "
                             "API name holds", field="path")
        if decoded.startswith("_") and seg != decoded:
            raise BadRequest(f"the request path escapes {decoded!r}, an API name that needs no escaping", field="path")
        segments.append(decoded)
    return Target(path, query, tuple(segments))


@dataclass(frozen=True)
class Rule:
    """One line of the allow-list: methods and a pattern of path segments."""
    methods: frozenset[str]
    pattern: tuple[str, ...]

    def matches(self, method: str, segments: tuple[str, ...], is_index: Callable[[str], bool]) -> bool:
        if method not in self.methods or len(segments) != len(self.pattern):
            return False
        for seg, pat in zip(segments, self.pattern):
            if pat == "{index}":
                if not is_index(seg):
                    return False
            elif pat not in ("*", "{id}") and seg != pat:
                return False
        return True

    def __str__(self) -> str:
        return f"{','.join(sorted(self.methods))} /{'/'.join(self.pattern)}"


def parse_rules(text: str) -> tuple[Rule, ...]:
    """The ``passthrough_allow`` setting as rules; a malformed line is a ValueError naming it."""
    rules = []
    for line in filter(None, (part.strip() for part in text.split(";"))):
        methods, _, pattern = line.partition(" ")
        pattern = pattern.strip()
        if not pattern.startswith("/"):
            raise ValueError(f"passthrough_allow: {line!r} is not 'METHODS /pattern'")
        names = frozenset(m.strip().upper() for m in methods.split(",") if m.strip())
        unknown = names - {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}
        if not names or unknown:
            raise ValueError(f"passthrough_allow: {line!r} names no method or an unknown one")
        rules.append(Rule(names, tuple(s for s in pattern.strip("/").split("/") if s)))
    return tuple(rules)


def match_rule(rules: tuple[Rule, ...], method: str, segments: tuple[str, ...],
               is_index: Callable[[str], bool]) -> str | None:
    """The first rule allowing ``method`` on ``segments`` (as written), or None."""
    for rule in rules:
        if rule.matches(method, segments, is_index):
            return str(rule)
    return None


def looks_like_index_name(name: str) -> bool:
    """Whether ``name`` names one index (not a pattern, a list, or a system or hidden index).

    >>> [looks_like_index_name(n) for n in ("fashion", "fa*", "a,b", "_all", ".kibana", "-x")]
    [True, False, False, False, False, False]
    """
    return len(name) <= 255 and not _NOT_A_NAME.search(name) and name == name.lower()


def indices_named_in_body(segments: tuple[str, ...], body: bytes) -> list[str]:
    """Indices a ``_msearch`` or ``_mget`` body names beside the path (they must pass too).

    >>> indices_named_in_body(("_msearch",), b'{"index": "a"}\\n{}\\n{"index": ["b"]}\\n{}\\n')
    ['a', 'b']
    >>> indices_named_in_body(("x", "_mget"), b'{"docs": [{"_index": "ubi_events", "_id": "1"}]}')
    ['ubi_events']
    """
    api = next((s for s in segments if s.startswith("_")), "")
    if api not in ("_msearch", "_mget", "_bulk") or not body.strip():
        return []
    named: list[str] = []
    try:
        if api == "_bulk":
            return [name for _, name in bulk_actions(body) if name is not None]
        if api == "_mget":
            doc = json.loads(body)
            for item in (doc.get("docs") or []) if isinstance(doc, dict) else []:
                if isinstance(item, dict) and "_index" in item:
                    named.append(str(item["_index"]))
            return named
        lines = [line for line in body.splitlines() if line.strip()]
        for header in lines[0::2]:
            head = json.loads(header)
            value = head.get("index") if isinstance(head, dict) else None
            for name in (value if isinstance(value, list) else [value] if value is not None else []):
                named.append(str(name))
    except (ValueError, RecursionError):
        raise BadRequest(f"the {api} body is not valid JSON (NDJSON for _msearch and _bulk)", field="body") from None
    return named


BULK_ACTIONS = ("index", "create", "update", "delete")


def bulk_actions(body: bytes) -> list[tuple[str, str | None]]:
    """``(action, index or None)`` of each action line of a ``_bulk`` body (ValueError if malformed).

    >>> bulk_actions(b'{"index": {"_index": "a", "_id": "1"}}\\n{"t": 1}\\n{"delete": {"_id": "2"}}\\n')
    [('index', 'a'), ('delete', None)]
    """
    lines = [line for line in body.splitlines() if line.strip()]
    actions, i = [], 0
    while i < len(lines):
        head = json.loads(lines[i])
        if not (isinstance(head, dict) and len(head) == 1 and next(iter(head)) in BULK_ACTIONS
                and isinstance(next(iter(head.values())), dict)):
            raise ValueError(f"line {i + 1} of the _bulk body is not an action ({', '.join(BULK_ACTIONS)})")
        action, meta = next(iter(head.items()))
        actions.append((action, str(meta["_index"]) if meta.get("_index") is not None else None))
        i += 1 if action == "delete" else 2
    return actions


def needs_path_index(segments: tuple[str, ...], body: bytes) -> bool:
    """An index-less ``_msearch`` whose header lines leave out ``index`` would search every index;
    an index-less ``_bulk`` action line would be refused by OpenSearch anyway."""
    if segments[:1] == ("_bulk",):
        try:
            return any(name is None for _, name in bulk_actions(body))
        except (ValueError, RecursionError):
            return True
    if segments[:1] != ("_msearch",):
        return False
    lines = [line for line in body.splitlines() if line.strip()]
    try:
        return any(not (isinstance(h := json.loads(line), dict) and h.get("index")) for line in lines[0::2])
    except (ValueError, RecursionError):
        return True
