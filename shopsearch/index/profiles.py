"""The shopper profiles index: one document per (catalogue, pseudonymous shopper)."""

from __future__ import annotations

from opensearchpy import NotFoundError, OpenSearch

from shopsearch.index.mapping import load_template, render
from shopsearch.privacy import pseudonym
from shopsearch.settings import Settings


def ensure_profiles_index(client: OpenSearch, settings: Settings) -> str:
    """Create the profiles index from ``mappings/profiles.json`` when it does not exist."""
    name = settings.profiles_index
    body = render(load_template("profiles"), {"number_of_replicas": settings.number_of_replicas})
    if not client.indices.exists(index=name):
        client.indices.create(index=name, body=body)
    else:  # fields added by a newer version: mappings only grow, so this is safe on a live index
        client.indices.put_mapping(index=name, body=body["mappings"])
    return name


def profile_id(catalogue: str, who: str) -> str:
    """The profile document id: catalogue and the shopper's pseudonym (raw ids are never stored)."""
    return f"{catalogue}:{who}"


def item_ids(items: dict[str, float] | None) -> list[str]:
    """The profile's products strongest first, as the search's terms lookup reads them (``item_ids``).

    >>> item_ids({"a": 0.4, "b": 1.0})
    ['b', 'a']
    """
    return sorted(items or {}, key=lambda d: (-items[d], d))


def put_profile(client: OpenSearch, settings: Settings, catalogue: str, user: str, profile: dict,
                refresh: bool = False, pseudonymous: bool = False) -> None:
    """Store a profile (``vector``, ``categories``, ``brands``, ``items``, ``price_band``, ``model_version``),
    with ``item_ids`` derived from ``items`` (the search asks for the shopper's own products by a terms
    lookup on it, in its one ``_msearch``).

    ``user`` is the shop's shopper id, pseudonymised here, unless ``pseudonymous`` says it already is.
    """
    who = user if pseudonymous else pseudonym(user, settings.pseudonym_salt)
    ensure_profiles_index(client, settings)
    body = {**profile, "item_ids": item_ids(profile.get("items")), "user": who, "catalogue": catalogue}
    client.index(index=settings.profiles_index, id=profile_id(catalogue, who), body=body, refresh=refresh)


def get_profile(client: OpenSearch, settings: Settings, catalogue: str, who: str) -> dict | None:
    """The stored profile of a pseudonymous shopper, or None."""
    try:
        return client.get(index=settings.profiles_index, id=profile_id(catalogue, who))["_source"]
    except NotFoundError:
        return None
