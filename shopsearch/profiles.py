"""The shopper profiles index: one document per (catalogue, pseudonymous shopper)."""

from __future__ import annotations

from opensearchpy import OpenSearch

from .index_mapping import load_template, render
from .settings import Settings


def ensure_profiles_index(client: OpenSearch, settings: Settings) -> str:
    """Create the profiles index from ``mappings/profiles.json`` when it does not exist."""
    name = settings.profiles_index
    if not client.indices.exists(index=name):
        body = render(load_template("profiles"), {"number_of_replicas": settings.number_of_replicas})
        client.indices.create(index=name, body=body)
    return name


def profile_id(catalogue: str, user: str) -> str:
    return f"{catalogue}:{user}"


def put_profile(client: OpenSearch, settings: Settings, catalogue: str, user: str, profile: dict, refresh: bool = False) -> None:
    """Store a profile (``vector``, ``categories``, ``brands``, ``price_band``, ``model_version``)."""
    ensure_profiles_index(client, settings)
    client.index(index=settings.profiles_index, id=profile_id(catalogue, user),
                 body={"user": user, "catalogue": catalogue, **profile}, refresh=refresh)
