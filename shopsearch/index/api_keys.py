"""API keys with roles, kept by the project in its own index (setting ``api_keys_index``).

A key is ``ssk_<id>_<secret>``: ``id`` names its document, ``secret`` (32 random bytes) is
stored only as its SHA-256, so the index never holds a usable key. The roles:

* ``read``: the pass-through's read and search APIs on any index but the project's own and
  system indices (not only the catalogues anonymous callers may read);
* ``write``: ``read``, and document writes (``_doc``, ``_update``, ``_bulk``, ``_delete_by_query``,
  ``_refresh``) on the indices ``read`` reaches; never mappings, settings, aliases or deletes of
  an index;
* ``admin``: everything the admin token opens (the whole pass-through and ``/admin``).

Made by ``shopsearch keys create NAME --role ROLE`` (the key is shown once), listed by ``keys
list``, revoked by ``keys revoke NAME``; the proxy reads them from ``X-Api-Key`` or
``Authorization: ApiKey <key>`` on its internal face.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from opensearchpy import NotFoundError, OpenSearch

from shopsearch.errors import ShopsearchError
from shopsearch.index.mapping import load_template, render
from shopsearch.settings import Settings

ROLES = ("read", "write", "admin")
_KEY = re.compile(r"ssk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class ApiKeyError(ShopsearchError, ValueError):
    """A key that cannot be made or revoked as asked (bad name or role, unknown name)."""
    status, code = 400, "bad_request"


@dataclass(frozen=True)
class ApiKey:
    """A stored key, without its secret."""
    key_id: str
    name: str
    role: str
    created: str


def digest(secret: str) -> str:
    """What is stored of a key's secret.

    >>> len(digest("x")), digest("x") == digest("x")
    (64, True)
    """
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_key(presented: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a key in the project's form, or None.

    >>> parse_key("ssk_0123456789abcdef_" + "a" * 43)[0]
    '0123456789abcdef'
    >>> parse_key("Bearer x") is None
    True
    """
    m = _KEY.fullmatch(presented.strip())
    return (m.group(1), m.group(2)) if m else None


def ensure_index(client: OpenSearch, settings: Settings) -> None:
    if not client.indices.exists(index=settings.api_keys_index):
        body = render(load_template("api_keys"), {"number_of_replicas": settings.number_of_replicas})
        client.indices.create(index=settings.api_keys_index, body=body)


def create_key(client: OpenSearch, settings: Settings, name: str, role: str) -> tuple[ApiKey, str]:
    """A new key for ``name`` with ``role``: the stored key and the key itself (shown once)."""
    if not _NAME.fullmatch(name):
        raise ApiKeyError(f"a key's name is 1-64 letters, digits, '_', '.' or '-', starting with a letter or "
                          f"digit, not {name!r}", field="name")
    if role not in ROLES:
        raise ApiKeyError(f"role must be one of {', '.join(ROLES)}, not {role!r}", field="role")
    ensure_index(client, settings)
    if any(k.name == name for k in list_keys(client, settings)):
        raise ApiKeyError(f"a key named {name!r} exists: revoke it first, or choose another name", field="name")
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    client.index(index=settings.api_keys_index, id=key_id, refresh="wait_for",
                 body={"name": name, "role": role, "hash": digest(secret), "created": created})
    return ApiKey(key_id, name, role, created), f"ssk_{key_id}_{secret}"


def list_keys(client: OpenSearch, settings: Settings) -> list[ApiKey]:
    if not client.indices.exists(index=settings.api_keys_index):
        return []
    found = client.search(index=settings.api_keys_index, body={"size": 10_000, "sort": [{"created": "asc"}],
                                                              "_source": ["name", "role", "created"]})
    return [ApiKey(h["_id"], h["_source"]["name"], h["_source"]["role"], h["_source"]["created"])
            for h in found["hits"]["hits"]]


def revoke_key(client: OpenSearch, settings: Settings, name: str) -> int:
    """Delete every key named ``name``; how many there were (ApiKeyError when none)."""
    ids = [k.key_id for k in list_keys(client, settings) if k.name == name]
    if not ids:
        raise ApiKeyError(f"no key is named {name!r} (shopsearch keys list)", field="name")
    for key_id in ids:
        client.delete(index=settings.api_keys_index, id=key_id, refresh="wait_for")
    return len(ids)


def lookup(client: OpenSearch, settings: Settings, presented: str) -> ApiKey | None:
    """The stored key that ``presented`` is, or None (unknown, revoked, wrong secret, other form)."""
    parsed = parse_key(presented)
    if parsed is None:
        return None
    key_id, secret = parsed
    try:
        doc = client.get(index=settings.api_keys_index, id=key_id)["_source"]
    except NotFoundError:
        return None
    if not hmac.compare_digest(doc["hash"], digest(secret)):
        return None
    return ApiKey(key_id, doc["name"], doc["role"], doc["created"])
