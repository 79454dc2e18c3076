"""The OpenSearch client, built from the settings (the one place that constructs it)."""

from __future__ import annotations

from opensearchpy import OpenSearch

from shopsearch.settings import Settings


def connect(settings: Settings, timeout: float = 30.0) -> OpenSearch:
    """A client for ``settings.opensearch_url`` with retries on transient connection errors.

    An ``https://user:password@host`` URL (a cluster with its security plugin on) authenticates
    as that user and verifies the certificate with ``opensearch_ca_certs`` (or the system's CAs).
    """
    tls = {"verify_certs": True, "ca_certs": settings.opensearch_ca_certs or None} \
        if settings.opensearch_url.startswith("https://") else {}
    return OpenSearch(hosts=[settings.opensearch_url], timeout=timeout, max_retries=3,
                      retry_on_timeout=True, http_compress=False, **tls)
