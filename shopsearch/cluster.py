"""The OpenSearch client, built from the settings (the one place that constructs it)."""

from __future__ import annotations

import orjson
from opensearchpy import OpenSearch
from opensearchpy.serializer import JSONSerializer

from shopsearch.settings import Settings


class FastJSON(JSONSerializer):
    """opensearch-py's JSON serializer on orjson: the same documents, in and out.

    A hybrid search's ``_msearch`` carries a 384-number query vector and brings 200 candidates
    back; Python's ``json`` took 0.8 ms of each to write and read them, orjson 0.3 ms. Anything
    orjson will not write (an integer past 64 bits) goes the standard way.

    >>> FastJSON().dumps({"size": 10, "vector": [0.5, -1.25], "q": "red shoes"})
    '{"size":10,"vector":[0.5,-1.25],"q":"red shoes"}'
    >>> FastJSON().loads('{"hits": {"total": 1}}')
    {'hits': {'total': 1}}
    """

    OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

    def loads(self, s):
        try:
            return orjson.loads(s)
        except orjson.JSONDecodeError:
            return super().loads(s)  # raises opensearch-py's SerializationError, as before

    def dumps(self, data):
        if isinstance(data, str):
            return data
        try:
            return orjson.dumps(data, default=self.default, option=self.OPTIONS).decode()
        except (orjson.JSONEncodeError, TypeError):
            return super().dumps(data)


# Keep-alive connections a process keeps beyond its request threads: the proxy's background work
# (profile refresh, the ranker's warm-up), `train`'s feature threads, a worker's chunk and lookups.
BACKGROUND_CONNECTIONS = 8


def pool_size(settings: Settings) -> int:
    """How many keep-alive connections the client keeps: one for each of the proxy's request threads
    and :data:`BACKGROUND_CONNECTIONS` more.

    opensearch-py leaves urllib3's own default, one connection, where no ``pool_maxsize`` is given:
    every request sent while another was in flight then opened a TCP connection of its own and
    closed it afterwards, with a "Connection pool is full" warning each time.

    >>> from shopsearch.settings import load_settings
    >>> pool_size(load_settings({"SHOPSEARCH_PROXY_THREADS": "8"}))
    16
    """
    return settings.proxy_threads + BACKGROUND_CONNECTIONS


def connect(settings: Settings, timeout: float = 30.0) -> OpenSearch:
    """A client for ``settings.opensearch_url`` with retries on transient connection errors, keeping
    :func:`pool_size` connections alive for the threads that share it.

    An ``https://user:password@host`` URL (a cluster with its security plugin on) authenticates
    as that user and verifies the certificate with ``opensearch_ca_certs`` (or the system's CAs).
    """
    tls = {"verify_certs": True, "ca_certs": settings.opensearch_ca_certs or None} \
        if settings.opensearch_url.startswith("https://") else {}
    return OpenSearch(hosts=[settings.opensearch_url], timeout=timeout, max_retries=3, retry_on_timeout=True,
                      http_compress=False, serializer=FastJSON(), pool_maxsize=pool_size(settings), **tls)
