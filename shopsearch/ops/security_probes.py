"""``shopsearch check security``, steps 1 and 2: path tricks and administration actions, sent byte
for byte without a credential or with forged ones; anything but a refusal is a finding.

Also what every step counts with: :class:`Tally` and :func:`send_raw` (``http.client``, so a
target travels exactly as written). The flow and its report: ``check_security.py``.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field

# A path trick: (method, raw target). Each is an administration request that must be refused.
PATH_TRICKS: tuple[tuple[str, str], ...] = (
    ("GET", "/_cluster/settings"), ("GET", "/_cluster/./settings"), ("GET", "/_cluster/zz/../settings"),
    ("GET", "/_cluster/%2573ettings"), ("GET", "/_cluster/%73ettings"), ("GET", "/_cluster/settings%23"),
    ("GET", "/_cluster/settings#"), ("GET", "/_cluster/settings?"), ("GET", "/_cluster/settings/"),
    ("GET", "//_cluster/settings"), ("GET", "/_cluster//settings"), ("GET", "/_CLUSTER/settings"),
    ("GET", "/_Cluster/Settings"), ("GET", "/_cluster/settings;x"), ("GET", "/_cluster%2Fsettings"),
    ("GET", "/_cluster%2fsettings"), ("GET", "/%5Fcluster/settings"), ("GET", "/%255Fcluster/settings"),
    ("GET", "/_cluster/settings%00"), ("GET", "/_cluster/settings%20"),
    ("GET", "/_snapshot"), ("GET", "/_snapshot%23"), ("GET", "/%255Fsnapshot"), ("GET", "/%5Fsnapshot"),
    ("PUT", "/_cluster/./settings"), ("PUT", "/_cluster/%73ettings"), ("GET", "/shop/zz/../../_cluster/settings"),
    ("GET", "/shop%2F..%2F_cluster%2Fsettings"), ("GET", "/shop/..%2F_cluster/settings"),
    ("GET", "/shop/%2E%2E/_cluster/settings"), ("GET", "/./_cluster/settings"), ("GET", "/_cat/../_cluster/settings"), ("GET", "/_nodes/./settings"),
    ("GET", "/_nodes/%73ettings"), ("GET", "/ubi_events/_search"), ("GET", "/ubi%5Fevents/_search"),
    ("GET", "/UBI_EVENTS/_search"), ("GET", "/ubi_events%2F_search"), ("GET", "/shopsearch-profiles/_search"),
    ("GET", "/shopsearch%2Dprofiles/_search"), ("GET", "/*/_search"), ("GET", "/_all/_search"),
    ("GET", "/%2A/_search"), ("GET", "/ubi*/_search"), ("GET", "/,ubi_events/_search"),
    ("GET", "/admin/status"), ("GET", "/admin/../admin/status"), ("GET", "/ADMIN/status"),
    ("GET", "/admin%2Fstatus"), ("GET", "/admin/status?x=/.."),
)


@dataclass(frozen=True)
class Action:
    """An administration request that needs a credential: (method, target, body, content type)."""
    method: str
    target: str
    body: bytes = b""
    content_type: str = "application/json"


def admin_actions(catalogue: str | None, probe: str) -> tuple[Action, ...]:
    """Administration requests without a credential; ``probe`` names what they would create (never
    an existing name), ``catalogue`` (optional) the shop's catalogue they would damage."""
    shop = catalogue or "products"
    bulk = (json.dumps({"delete": {"_index": shop, "_id": "1"}}) + "\n").encode()
    return (
        Action("PUT", f"/_scripts/{probe}", b'{"script": {"lang": "painless", "source": "1"}}'),
        Action("PUT", "/_scripts/shopsearch-personalise-v2", b'{"script": {"lang": "painless", "source": "1"}}'),
        Action("POST", "/_aliases", json.dumps({"actions": [{"add": {"index": f"{shop}-v1", "alias": probe}}]}).encode()),
        Action("PUT", f"/{shop}/_mapping", b'{"properties": {"planted": {"type": "keyword"}}}'),
        Action("PUT", f"/{probe}", b"{}"),
        Action("DELETE", f"/{shop}-v1"),
        Action("DELETE", f"/{shop}"),
        Action("POST", "/_bulk", bulk, "application/x-ndjson"),
        Action("POST", f"/{shop}/_bulk", bulk, "application/x-ndjson"),
        Action("PUT", f"/{shop}/_doc/planted", b'{"title": "planted"}'),
        Action("POST", f"/{shop}/_delete_by_query", b'{"query": {"match_all": {}}}'),
        Action("POST", f"/{shop}/_update_by_query", b'{"query": {"match_all": {}}}'),
        Action("POST", "/_reindex", json.dumps({"source": {"index": shop}, "dest": {"index": probe}}).encode()),
        Action("PUT", "/_cluster/settings", b'{"transient": {"cluster.routing.allocation.enable": "none"}}'),
        Action("GET", "/_cluster/settings"), Action("GET", "/_nodes"), Action("GET", "/_nodes/settings"),
        Action("GET", "/_snapshot"), Action("PUT", f"/_snapshot/{probe}", b'{"type": "fs", "settings": {"location": "/"}}'),
        Action("GET", "/_tasks"), Action("POST", "/_shutdown"),
        Action("GET", "/ubi_events/_search"), Action("GET", "/ubi_queries/_search"),
        Action("GET", "/shopsearch-profiles/_search"),
        Action("POST", "/_msearch", b'{}\n{"query": {"match_all": {}}}\n', "application/x-ndjson"),
        Action("POST", "/_mget", b'{"docs": [{"_index": "shopsearch-profiles", "_id": "x"}]}'),
        Action("GET", "/admin/status"), Action("DELETE", f"/admin/users/{probe}"),
        Action("POST", f"/admin/catalogues/{shop}/rollback"),
        Action("POST", f"/admin/catalogues/{shop}/promote", b'{"index": "v1"}'),
        Action("POST", f"/admin/catalogues/{shop}/reindex", b'{}'),
    )


REFUSED = frozenset({400, 401, 403, 404, 405, 413, 414, 429, 431})


@dataclass
class Tally:
    """What one group of probes gave: how many were tried, refused, and the findings."""
    tried: int = 0
    refused: int = 0
    statuses: Counter = field(default_factory=Counter)
    findings: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # fuzzed variants that have no request to make

    def add(self, status: int, refused: bool, finding: dict | None = None) -> None:
        self.tried += 1
        self.refused += bool(refused)
        self.statuses[str(status)] += 1
        if finding is not None and len(self.findings) < 50:
            self.findings.append(finding)

    def as_dict(self) -> dict:
        return {"tried": self.tried, "refused": self.refused, "statuses": dict(sorted(self.statuses.items())),
                "server_errors": sum(n for s, n in self.statuses.items() if s.startswith("5")),
                "findings": self.findings, **({"skipped": self.skipped} if self.skipped else {})}


def send_raw(base: str, method: str, target: str, body: bytes = b"", headers: dict | None = None,
             timeout: float = 30.0) -> tuple[int, bytes]:
    """One request with ``target`` sent exactly as given (no client-side normalisation)."""
    parts = urllib.parse.urlsplit(base)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for k, v in {"Content-Type": "application/json", **(headers or {})}.items():
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.read()
    except (http.client.HTTPException, OSError, ValueError):
        return 0, b""  # the server closed or refused the connection (or the target cannot be sent): no answer
    finally:
        conn.close()


def probe_path_tricks(base: str) -> Tally:
    """Every :data:`PATH_TRICKS` target without a credential: only refusals are right."""
    tally = Tally()
    for method, target in PATH_TRICKS:
        status, body = send_raw(base, method, target)
        refused = status == 0 or status in REFUSED
        tally.add(status, refused, None if refused else {"method": method, "target": target, "status": status,
                                                         "answer": body[:200].decode("utf-8", "replace")})
    return tally


# Credentials that are not: a forged API key, a forged admin token, a cluster user that does not exist.
FORGED = ({}, {"X-Api-Key": "ssk_0123456789abcdef_" + "A" * 43}, {"X-Admin-Token": "not-the-admin-token-0123"},
          {"Authorization": "Bearer not-the-admin-token-0123"})


def probe_admin_actions(base: str, catalogue: str | None, probe: str) -> Tally:
    """Every :func:`admin_actions` request without a credential, and with each forged one of
    :data:`FORGED`: only refusals are right."""
    tally = Tally()
    for action in admin_actions(catalogue, probe):
        for forged in FORGED:
            status, body = send_raw(base, action.method, action.target, action.body,
                                    {"Content-Type": action.content_type, **forged})
            refused = status == 0 or status in REFUSED
            tally.add(status, refused, None if refused else {"method": action.method, "target": action.target,
                                                             "forged": sorted(forged), "status": status,
                                                             "answer": body[:200].decode("utf-8", "replace")})
    return tally
