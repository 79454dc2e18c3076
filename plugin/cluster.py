"""The app's one OpenSearch client, an app extension every blueprint reaches through :func:`client`,
and the raw HTTP connections the pass-through forwards on (:func:`raw_pool`)."""

from __future__ import annotations

from urllib.parse import urlsplit

import certifi
import requests
import urllib3
from flask import Flask, current_app
from opensearchpy import OpenSearch

from shopsearch.cluster import connect

EXTENSION = "shopsearch.client"
UPSTREAM = "shopsearch.upstream"
RAW = "shopsearch.raw"


def init_app(app: Flask) -> None:
    """Connect to the cluster of ``app``'s settings (lazily: nothing is sent until a request), and
    the pooled HTTP session that the pass-through and the health check send raw requests on."""
    app.extensions[EXTENSION] = connect(app.config["SHOPSEARCH"])
    session = requests.Session()
    session.trust_env = False  # no proxy variables, no ~/.netrc: the proxy never lends credentials
    if app.config["SHOPSEARCH"].opensearch_ca_certs:
        session.verify = app.config["SHOPSEARCH"].opensearch_ca_certs  # the cluster's own CA (TLS on)
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    app.extensions[UPSTREAM] = session
    app.extensions[RAW] = connection_pool(app.config["SHOPSEARCH"].opensearch_url,
                                          app.config["SHOPSEARCH"].opensearch_ca_certs)


def connection_pool(opensearch_url: str, ca_certs: str = "") -> urllib3.HTTPConnectionPool:
    """Keep-alive connections to the cluster's host for the pass-through: urllib3's own pool, without
    requests' per-request session work (merging settings, hooks, cookies), no retries, no redirects;
    TLS verified against ``ca_certs`` (the cluster's CA) or the public ones.

    >>> connection_pool("http://user:pw@127.0.0.1:9200").port
    9200
    """
    parts = urlsplit(opensearch_url)
    kwargs = {"ca_certs": ca_certs or certifi.where(), "cert_reqs": "CERT_REQUIRED"} if parts.scheme == "https" else {}
    return urllib3.connection_from_url(f"{parts.scheme}://{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}",
                                       maxsize=64, block=False, retries=False, **kwargs)


def cluster_client(app: Flask) -> OpenSearch:
    """``app``'s client (for ``init_app`` functions, outside a request)."""
    return app.extensions[EXTENSION]


def client() -> OpenSearch:
    """The current app's client."""
    return current_app.extensions[EXTENSION]


def upstream() -> requests.Session:
    """The current app's HTTP session to the cluster (the health check)."""
    return current_app.extensions[UPSTREAM]


def raw_pool() -> urllib3.HTTPConnectionPool:
    """The current app's pass-through connections (:func:`connection_pool`)."""
    return current_app.extensions[RAW]
