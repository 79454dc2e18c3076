"""Versioned catalogue indices behind an alias: ``<catalogue>-v<N>``, with ``<catalogue>`` the alias.

The alias moves in one atomic ``_aliases`` call, so searches never see a missing index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from opensearchpy import NotFoundError, OpenSearch
from shopsearch.errors import ConcurrentChange, IndexVersionError

_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")


@dataclass(frozen=True)
class Version:
    index: str
    number: int
    live: bool
    docs: int
    meta: dict
    segments: int = 0      # of the primaries: 1 per shard once merged (index.catalogue.merge_segments)
    size_bytes: int = 0    # the primaries' store


def check_catalogue_name(catalogue: str) -> str:
    """``catalogue`` if it is a name: no wildcard, comma, ``_all``, path character or upper case
    (OpenSearch would read those as patterns or lists of indices).

    >>> check_catalogue_name("fashion")
    'fashion'
    >>> for name in ("*", "_all", "fa*", "fashion,fashion", "../x", "Fashion"):
    ...     try:
    ...         check_catalogue_name(name)
    ...     except IndexVersionError as e:
    ...         print(e.status, e.field, end="; ")
    400 catalogue; 400 catalogue; 400 catalogue; 400 catalogue; 400 catalogue; 400 catalogue;
    """
    if not isinstance(catalogue, str) or len(catalogue) > 100 or not _NAME.match(catalogue):
        raise IndexVersionError(f"catalogue name {str(catalogue)[:100]!r} must be lower-case letters, digits and _ "
                                "(at most 100 characters, starting with a letter or digit)", field="catalogue")
    return catalogue


def index_name(catalogue: str, number: int) -> str:
    return f"{catalogue}-v{number}"


def version_number(catalogue: str, index: str) -> int | None:
    """N when ``index`` is ``<catalogue>-v<N>``, else None (the inverse of :func:`index_name`).

    >>> version_number("shop", "shop-v12"), version_number("shop", "shop-logs"), version_number("shop", "shop_x-v1")
    (12, None, None)
    """
    prefix = f"{catalogue}-v"
    rest = index[len(prefix):] if index.startswith(prefix) else ""
    return int(rest) if rest.isdigit() and rest.isascii() else None


def live_index(client: OpenSearch, catalogue: str) -> str | None:
    """The index the alias points at, or None; a name that is not a catalogue name is refused (400)."""
    check_catalogue_name(catalogue)
    try:
        found = client.indices.get_alias(name=catalogue)
    except NotFoundError:
        return None
    names = sorted(found)
    return names[0] if names else None


def live_catalogues(client: OpenSearch) -> list[str]:
    """Every catalogue with a live version: the aliases that point at one of their own ``<alias>-v<N>``."""
    try:
        found = client.indices.get_alias(index="*-v*")
    except NotFoundError:
        return []
    out = set()
    for index, body in found.items():
        for alias in body.get("aliases", {}):
            if version_number(alias, index) is not None and _NAME.match(alias):
                out.add(alias)
    return sorted(out)


def list_versions(client: OpenSearch, catalogue: str) -> list[Version]:
    """Every ``<catalogue>-v<N>`` index, oldest first, with the live one marked."""
    check_catalogue_name(catalogue)
    try:
        mappings = client.indices.get_mapping(index=f"{catalogue}-v*")
    except NotFoundError:
        return []
    live = live_index(client, catalogue)
    counts = {}
    if mappings:
        for row in client.cat.indices(index=f"{catalogue}-v*", format="json", bytes="b",
                                      h="index,docs.count,pri.segments.count,pri.store.size"):
            counts[row["index"]] = tuple(int(row.get(k) or 0) for k in ("docs.count", "pri.segments.count", "pri.store.size"))
    out = []
    for name, body in mappings.items():
        number = version_number(catalogue, name)
        if number is not None:
            docs, segments, size = counts.get(name, (0, 0, 0))
            out.append(Version(name, number, name == live, docs, body["mappings"].get("_meta", {}), segments, size))
    return sorted(out, key=lambda v: v.number)


def create_version(client: OpenSearch, catalogue: str, body: dict, point_alias: bool = True) -> str:
    """Create the next ``<catalogue>-v<N>``; point the alias at it unless told not to."""
    check_catalogue_name(catalogue)
    versions = list_versions(client, catalogue)
    number = (versions[-1].number + 1) if versions else 1
    name = index_name(catalogue, number)
    client.indices.create(index=name, body=body)
    if point_alias:
        switch_alias(client, catalogue, name)
    return name


READ_ALIAS = object()  # switch_alias reads the alias itself


def switch_alias(client: OpenSearch, catalogue: str, index: str, expected: str | None | object = READ_ALIAS) -> str | None:
    """Atomically move ``catalogue`` from ``expected`` to ``index``; returns the index it pointed at before.

    ``expected`` is where the caller saw the alias (read here when not given). The ``_aliases``
    call removes the alias from that index with ``must_exist``, so if another writer moved it in
    the meantime the whole call fails and nothing changes (:class:`ConcurrentChange`); a plain
    remove would succeed silently and leave the alias on two versions. With no alias before,
    the alias is removed from every version first (``must_exist: false``), for the same reason.
    """
    if not client.indices.exists(index=index):
        raise IndexVersionError(f"index {index} does not exist")
    previous = live_index(client, catalogue) if expected is READ_ALIAS else expected
    if previous == index:
        return previous
    remove = ({"index": previous, "alias": catalogue, "must_exist": True} if previous
              else {"index": f"{catalogue}-v*", "alias": catalogue, "must_exist": False})
    try:
        client.indices.update_aliases(body={"actions": [{"remove": remove}, {"add": {"index": index, "alias": catalogue}}]})
    except NotFoundError as e:
        if e.error != "aliases_not_found_exception":
            raise
        raise ConcurrentChange(f"the alias {catalogue} no longer points at {previous} (now {live_index(client, catalogue)}): "
                               f"another writer moved it; nothing was changed") from None
    return previous


def delete_version(client: OpenSearch, catalogue: str, index: str, force: bool = False) -> None:
    """Delete one version; the live one only with ``force``."""
    if live_index(client, catalogue) == index and not force:
        raise IndexVersionError(f"{index} is live behind the alias {catalogue}: switch the alias first, or use --force")
    if not index.startswith(f"{catalogue}-v"):
        raise IndexVersionError(f"{index} is not a version of {catalogue}")
    client.indices.delete(index=index)
