"""The OpenSearch client, built from the settings (the one place that constructs it)."""

from __future__ import annotations

from opensearchpy import OpenSearch

from shopsearch.settings import Settings


def connect(settings: Settings, timeout: float = 30.0) -> OpenSearch:
    """A client for ``settings.opensearch_url`` with retries on transient connection errors."""
    return OpenSearch(hosts=[settings.opensearch_url], timeout=timeout, max_retries=3,
                      retry_on_timeout=True, http_compress=False)
