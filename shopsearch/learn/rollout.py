"""Rollout: put a verified index version behind the catalogue's alias, roll back, report status.

Building and verifying a version is :mod:`shopsearch.learn.reindex`; its state lives in the
version's ``_meta.rollout`` (:mod:`shopsearch.learn.rollout_state`). ``previous`` is set on a
version each time it goes live (swap, promote, rollback), so ``rollback`` moves the alias back in
one step; old versions are never deleted here.
"""

from __future__ import annotations

from opensearchpy import NotFoundError, OpenSearch

from shopsearch.cluster import connect
from shopsearch.encoders.text import text_encoder
from shopsearch.errors import RolloutError, RolloutNotFound
from shopsearch.index.versions import IndexVersionError, check_catalogue_name, index_name, list_versions, live_index
from shopsearch.learn.reindex import verify
from shopsearch.learn.rollout_state import HISTORY_KEPT, count_docs, read_meta, record, swap_alias
from shopsearch.settings import Settings


def version_index(catalogue: str, index_or_version: str) -> str:
    """``"v3"``, ``"3"`` or ``"shop-v3"`` -> ``"shop-v3"``."""
    v = str(index_or_version).strip()
    if v.startswith(f"{catalogue}-v"):
        return v
    number = v[1:] if v[:1] in ("v", "V") else v
    if not number.isdigit():
        raise RolloutNotFound(f"{index_or_version!r} is not a version of {catalogue} (give {catalogue}-vN, vN or N)")
    return index_name(catalogue, int(number))


def promote(settings: Settings, catalogue: str, index_or_version: str, client: OpenSearch | None = None) -> dict:
    """Put an existing, verified version behind the alias (a version made by ingest is verified now)."""
    client = client or connect(settings, timeout=120)
    index = version_index(check_catalogue_name(catalogue), index_or_version)
    if not client.indices.exists(index=index):
        raise RolloutNotFound(f"{index} does not exist (versions: `shopsearch status --catalogue {catalogue}`)")
    meta = read_meta(client, index)
    state = meta.get("rollout", {})
    if state.get("step") in ("created", "filled"):
        raise RolloutError(f"{index} is not verified: its rollout stopped at step {state['step']!r}. Run "
                           f"`shopsearch reindex --catalogue {catalogue}` with the same model and source to finish it")
    docs = count_docs(client, index)
    if docs == 0:
        raise RolloutError(f"{index} is empty: refusing to put it behind {catalogue}")
    if "verified" not in state:
        encoder = text_encoder(settings.replace(text_model=meta.get("model", settings.text_model)))
        record(client, index, verified=verify(client, index, encoder, docs))
    previous = live_index(client, catalogue)
    if previous != index:
        swap_alias(client, catalogue, index, "promote", expected=previous)
    return {"catalogue": catalogue, "index": index, "previous": previous, "model_version": meta.get("model_version")}


def rollback(settings: Settings, catalogue: str, client: OpenSearch | None = None) -> dict:
    """Move the alias back to the version that was live before the current one, in one step."""
    client = client or connect(settings, timeout=120)
    live = live_index(client, check_catalogue_name(catalogue))
    if live is None:
        raise RolloutNotFound(f"catalogue {catalogue!r} has no live index")
    previous = read_meta(client, live).get("rollout", {}).get("previous")
    if not previous:
        raise RolloutError(f"{live} records no previous version to roll back to; use promote to choose one")
    if not client.indices.exists(index=previous):
        raise RolloutError(f"the previous version {previous} was deleted; use promote to choose another")
    if count_docs(client, previous) == 0:
        raise RolloutError(f"the previous version {previous} is empty; use promote to choose another")
    swap_alias(client, catalogue, previous, "rollback", expected=live)
    return {"catalogue": catalogue, "index": previous, "previous": live,
            "model_version": read_meta(client, previous).get("model_version")}


def _last_event(client: OpenSearch, settings: Settings, catalogue: str) -> dict:
    body = {"size": 0, "query": {"term": {"catalogue": catalogue}}, "aggs": {"last": {"max": {"field": "timestamp"}}}}
    try:
        found = client.search(index=settings.ubi_events_index, body=body)
    except NotFoundError:
        return {"events": 0, "last_event": None}
    return {"events": found["hits"]["total"]["value"], "last_event": found["aggregations"]["last"].get("value_as_string")}


def catalogue_status(client: OpenSearch, settings: Settings, catalogue: str) -> dict:
    """Alias -> live index -> model; every version with its size, segments and rollout state; events."""
    versions = list_versions(client, catalogue)
    live = next((v for v in versions if v.live), None)
    history = sorted((e for v in versions for e in v.meta.get("rollout", {}).get("history", [])), key=lambda e: e["at"])
    return {
        "catalogue": catalogue, "live": live.index if live else None,
        "model": live.meta.get("model") if live else None,
        "model_version": live.meta.get("model_version") if live else None,
        "docs": live.docs if live else 0,
        "previous": live.meta.get("rollout", {}).get("previous") if live else None,
        "versions": [{"index": v.index, "live": v.live, "docs": v.docs, "segments": v.segments,
                      "size_bytes": v.size_bytes, "model": v.meta.get("model"),
                      "model_version": v.meta.get("model_version"), "source": v.meta.get("source"),
                      "created_at": v.meta.get("created_at"),
                      "rollout": {k: s for k, s in v.meta.get("rollout", {}).items() if k != "history"}}
                     for v in versions],
        "history": history[-HISTORY_KEPT:],
        **_last_event(client, settings, catalogue),
    }


def _is_catalogue_name(name: str) -> bool:
    try:
        check_catalogue_name(name)
    except IndexVersionError:
        return False
    return True


def status(settings: Settings, catalogue: str | None = None, client: OpenSearch | None = None) -> dict:
    """``{"catalogues": {name: catalogue_status}}`` for one catalogue, or every ``<name>-vN`` family."""
    client = client or connect(settings)
    if catalogue is not None:
        names = [check_catalogue_name(catalogue)]
    else:
        rows = client.cat.indices(index="*-v*", format="json", h="index")
        names = sorted({r["index"].rsplit("-v", 1)[0] for r in rows
                        if r["index"].rsplit("-v", 1)[-1].isdigit() and _is_catalogue_name(r["index"].rsplit("-v", 1)[0])})
    return {"catalogues": {name: catalogue_status(client, settings, name) for name in names}}
