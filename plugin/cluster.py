"""The app's one OpenSearch client, an app extension every blueprint reaches through :func:`client`."""

from __future__ import annotations

from flask import Flask, current_app
from opensearchpy import OpenSearch

from shopsearch.cluster import connect

EXTENSION = "shopsearch.client"


def init_app(app: Flask) -> None:
    """Connect to the cluster of ``app``'s settings (lazily: nothing is sent until a request)."""
    app.extensions[EXTENSION] = connect(app.config["SHOPSEARCH"])


def cluster_client(app: Flask) -> OpenSearch:
    """``app``'s client (for ``init_app`` functions, outside a request)."""
    return app.extensions[EXTENSION]


def client() -> OpenSearch:
    """The current app's client."""
    return current_app.extensions[EXTENSION]
