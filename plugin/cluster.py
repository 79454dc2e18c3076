"""The app's one OpenSearch client, an app extension every blueprint reaches through :func:`client`."""

from __future__ import annotations

import requests
from flask import Flask, current_app
from opensearchpy import OpenSearch

from shopsearch.cluster import connect

EXTENSION = "shopsearch.client"
UPSTREAM = "shopsearch.upstream"


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


def cluster_client(app: Flask) -> OpenSearch:
    """``app``'s client (for ``init_app`` functions, outside a request)."""
    return app.extensions[EXTENSION]


def client() -> OpenSearch:
    """The current app's client."""
    return current_app.extensions[EXTENSION]


def upstream() -> requests.Session:
    """The current app's raw HTTP session to the cluster."""
    return current_app.extensions[UPSTREAM]
