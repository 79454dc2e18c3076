"""Model rollout: build a new index version, verify it, swap the alias; promote and roll back.

One rollout is ``reindex``: a new ``<catalogue>-v<N+1>`` is created (the mapping rendered from
``mappings/products.json`` as it is now, for the new encoder's dimension), filled, verified, and
only then put behind the alias in one atomic ``_aliases`` call. Shoppers keep being answered by
the old version until that call; the ``Searcher`` notices the move within a second, empties its
caches and encodes queries with the model recorded in the new version's ``_meta``, so no answer
mixes a query vector of one model with document vectors of another.

Filling takes one of two routes:

* ``source`` (a catalogue file): the normal ingest pipeline (``workers/ingest.run_ingest``) into
  the new version, which never touches the alias;
* no source: the cleaned fields of the live version's documents are reused as they are (no file
  is read again, and popularity written from click logs is kept) and every vector is recomputed
  by the new model through the same ``encode.chunk -> ingest.write`` chains. Content-hash reuse
  only applies within one model version, so nothing of the old vectors survives; the
  image -> text projection is fitted again unless the model is the same.

**State.** A rollout's state lives with the version it builds, in its mapping
``_meta.rollout``::

    {"step": "created" | "filled" | "verified" | "swapped", "model", "model_version",
     "source": {"kind": "file", "path", "mapping", "limit"} | {"kind": "index", "index"},
     "origin": <the live index when it started>, "expected", "docs", "verified": {...},
     "started_at", "updated_at", "finished_at", "previous", "history": [{"at", "action", "from", "to"}]}

No separate state index: a version carries its own history and loses it with itself. Each step
is recorded when it is done, so ``reindex`` called again after a crash finds the unfinished
version for the same model version and source and continues from its step (chunks already
written with the new model are skipped by their content hash) instead of starting another
version. A crash anywhere before the swap leaves the alias where it was.

``previous`` is set on a version each time it goes live (swap, promote, rollback), so
``rollback`` moves the alias back in one step; old versions are never deleted here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from opensearchpy import NotFoundError, OpenSearch, helpers

from shopsearch.cluster import connect
from shopsearch.encoders.text import text_encoder
from shopsearch.index.catalogue import create_catalogue_version
from shopsearch.index.versions import IndexVersionError, check_catalogue_name, index_name, list_versions, live_index, switch_alias
from shopsearch.ingest.pipeline import Runner, Summary, index_items, run_ingest
from shopsearch.learn import registry
from shopsearch.settings import Settings
from shopsearch.errors import RolloutError, RolloutNotFound, RolloutInterrupted  # noqa: F401 (raised here; importable from here too)

STEPS = ("created", "filled", "verified", "swapped")
ROLLOUT_QUEUE = "rollout"          # the Celery queue of the coordinator task (see workers/tasks.py)
CHUNK_QUEUES = ("encode", "ingest")  # what the coordinator waits on: it must never share their workers
VERIFY_SAMPLE = 20
HISTORY_KEPT = 20
# fields that document() derives or that describe the old encoding, not the item
_DERIVED = {"category", "category_path", "has_image", "model_version", "indexed_at"}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --- pure helpers ------------------------------------------------------------------------------

def item_from_document(source: dict) -> dict:
    """The clean, normalised item an indexed document was written from (inverse of ``document()``).

    >>> item_from_document({"id": "1", "title": "Mug", "category": "Cups", "category_path": ["Home", "Home > Cups"],
    ...                     "flags": ["image_unreadable"], "image": "/i/1.jpg", "text_vector": [0.1]})
    {'id': '1', 'title': 'Mug', 'flags': [], 'image': '/i/1.jpg', 'category_path': ['Home', 'Cups']}
    """
    item = {k: v for k, v in source.items() if k not in _DERIVED and not k.endswith("_vector")}
    parts, before = [], None
    for prefix in source.get("category_path") or []:  # "A", "A > B", ... -> "A", "B", ...
        parts.append(prefix if before is None else prefix[len(before) + 3:])
        before = prefix
    item["category_path"] = parts
    if item.get("image"):  # the encoder flags an unreadable image again; a flag from cleaning (no image) stays
        item["flags"] = [f for f in item.get("flags", []) if f != "image_unreadable"]
    return item


def version_index(catalogue: str, index_or_version: str) -> str:
    """``"v3"``, ``"3"`` or ``"shop-v3"`` -> ``"shop-v3"``."""
    v = str(index_or_version).strip()
    if v.startswith(f"{catalogue}-v"):
        return v
    number = v[1:] if v[:1] in ("v", "V") else v
    if not number.isdigit():
        raise RolloutNotFound(f"{index_or_version!r} is not a version of {catalogue} (give {catalogue}-vN, vN or N)")
    return index_name(catalogue, int(number))


def resolve_model(settings: Settings, model: str | None) -> str | None:
    """A model name as the encoders load it: a registry version becomes its ``bi-encoder`` directory.

    ``usem3``, a directory, or an installed model package are returned as they are (a directory
    made absolute, since workers run elsewhere); anything else is looked up in the model
    registry (``shopsearch.learn.registry.resolve``).
    """
    if not model:
        return None
    path = Path(model).expanduser()
    if model == "usem3" or path.is_dir():
        return str(path.resolve()) if path.is_dir() else model
    try:
        return str(registry.resolve(settings, model))
    except (LookupError, OSError, ValueError):
        return model  # not a registry version: an installed model package name, checked when loaded


def check_coordinator_queues(queues) -> None:
    """Refuse to coordinate a rollout from a worker that also consumes the chunk queues.

    The coordinator waits for ``encode.chunk -> ingest.write`` chains; in a worker that takes
    those queues too, it can hold the very process the chunks need (deadlock).
    """
    shared = sorted(set(queues) & set(CHUNK_QUEUES))
    if shared:
        raise RolloutError(f"the rollout coordinator runs in a worker that also consumes {shared}: it would wait for "
                           f"chunks that worker cannot take. Give queue {ROLLOUT_QUEUE!r} a worker of its own "
                           f"(worker_queues, e.g. 'encode;celery,ingest;{ROLLOUT_QUEUE}').")


# --- the state in _meta ---------------------------------------------------------------------------

def _meta(client: OpenSearch, index: str) -> dict:
    return client.indices.get_mapping(index=index)[index]["mappings"].get("_meta", {})


def _record(client: OpenSearch, index: str, **changes) -> dict:
    """Merge ``changes`` into ``_meta.rollout`` of ``index``; returns the new state."""
    meta = _meta(client, index)
    state = {**meta.get("rollout", {}), **changes, "updated_at": _now()}
    meta["rollout"] = state
    client.indices.put_mapping(index=index, body={"_meta": meta})
    return state


def _swap(client: OpenSearch, catalogue: str, index: str, action: str) -> str | None:
    """Point the alias at ``index`` and remember where it came from (for rollback)."""
    previous = switch_alias(client, catalogue, index)
    state = _meta(client, index).get("rollout", {})
    if previous == index:  # already live: a crash came between the alias call and this record
        previous = state.get("origin")
    event = {"at": _now(), "action": action, "from": previous, "to": index}
    changes = {"history": (state.get("history", []) + [event])[-HISTORY_KEPT:], "swapped_at": event["at"]}
    if previous and previous != index:
        changes["previous"] = previous
    if state.get("step") == "verified":
        changes.update(step="swapped", finished_at=event["at"])
    _record(client, index, **changes)
    return previous


def _docs(client: OpenSearch, index: str) -> int:
    client.indices.refresh(index=index)
    return client.count(index=index)["count"]


# --- verify ----------------------------------------------------------------------------------------

def verify(client: OpenSearch, index: str, encoder, expected: int) -> dict:
    """Check a filled version before it may go live; raises :class:`RolloutError` on the first failure.

    The document count equals ``expected``; every document was encoded by ``encoder``'s version
    (a terms aggregation over all of them); a sample has vectors of the encoder's dimension; a
    k-NN query with a vector from ``encoder`` returns hits.
    """
    docs = _docs(client, index)
    if docs == 0 or docs != expected:
        raise RolloutError(f"{index} holds {docs} documents, {expected} expected")
    body = {"size": 0, "aggs": {"v": {"terms": {"field": "model_version", "size": 10, "missing": "(none)"}}}}
    versions = {b["key"]: b["doc_count"] for b in client.search(index=index, body=body)["aggregations"]["v"]["buckets"]}
    if versions != {encoder.version: docs}:
        raise RolloutError(f"{index} mixes encodings {versions}; every document must be {encoder.version}")
    sample_query = {"function_score": {"random_score": {"seed": 7, "field": "id"}}}
    sample = client.search(index=index, body={"size": VERIFY_SAMPLE, "query": sample_query,
                                              "_source": ["title", "has_image", "*_vector"]})["hits"]["hits"]
    for hit in sample:
        src, want = hit["_source"], ["text_vector", "fused_vector"] + (["image_vector"] if hit["_source"].get("has_image") else [])
        wrong = [f for f in want if len(src.get(f) or []) != encoder.dimension]
        if wrong:
            raise RolloutError(f"{index}: document {hit['_id']} lacks {encoder.dimension}-dimensional {wrong}")
    probe = sample[0]
    vector = encoder.encode([probe["_source"].get("title") or ""])[0].tolist()
    hits = client.search(index=index, body={"size": 10, "_source": False,
                                            "query": {"knn": {"fused_vector": {"vector": vector, "k": 10}}}})["hits"]["hits"]
    if not hits:
        raise RolloutError(f"{index}: a k-NN query with the {encoder.version} encoder finds nothing")
    return {"docs": docs, "sampled": len(sample), "dimension": encoder.dimension, "knn_hits": len(hits),
            "probe_found": any(h["_id"] == probe["_id"] for h in hits), "at": _now()}


# --- reindex ---------------------------------------------------------------------------------------

def _unfinished(client: OpenSearch, catalogue: str, model_version: str, source: dict) -> str | None:
    """The newest version whose rollout for this model version and source has not swapped yet."""
    for v in reversed(list_versions(client, catalogue)):
        state = v.meta.get("rollout", {})
        if (state.get("step") in STEPS[:-1] and state.get("model_version") == model_version
                and state.get("source") == source):
            return v.index
    return None


def _fill_from_source(settings, catalogue, target, source, images, chunk_size, on_progress, runner) -> int:
    summary = run_ingest(settings, source["path"], catalogue, source.get("mapping"), images, source.get("limit"),
                         chunk_size, on_progress=on_progress, runner=runner, index=target)
    if not summary.complete:
        raise RolloutError(f"{target}: {len(summary.failed)} of {summary.accepted} items failed to index "
                           f"(dead letters: {summary.dead_letters}); run reindex again to resume")
    return summary.accepted


def _fill_from_index(client, catalogue, target, origin, chunk_size, on_progress, runner) -> int:
    """The live version's documents, back to clean items, through the ingest pipeline's second half."""
    items = [item_from_document({**h["_source"], "id": h["_id"]})
             for h in helpers.scan(client, index=origin, query={"query": {"match_all": {}}}, size=500,
                                   _source_excludes=["*_vector"])]
    meta, origin_meta = _meta(client, target), _meta(client, origin)
    # same text space: the fitted image -> text map still holds; a new one is learnt again, as a first ingest does
    same_space = origin_meta.get("model_version") == meta["model_version"]
    summary = Summary(catalogue, target, "rollout")
    index_items(client, runner, target, items, summary, chunk_size, on_progress,
                projection=origin_meta.get("projection") if same_space else None)
    if summary.failed:
        raise RolloutError(f"{target}: {len(summary.failed)} documents failed to index "
                           f"(first: {summary.failed[0]}); run reindex again to resume")
    return len(items)


def reindex(settings: Settings, catalogue: str, model: str | None = None, source: str | Path | None = None,
            mapping: str | None = None, on_progress: Callable[[int, int], None] | None = None, *, runner: Runner,
            images: str | Path | None = None, limit: int | None = None, swap: bool = True,
            stop_before: str | None = None, chunk_size: int = 256, client: OpenSearch | None = None) -> dict:
    """Build ``<catalogue>-v<N+1>`` with ``model`` (default: the live version's), verify it, swap the alias.

    ``source``: fill from a catalogue file (``mapping``, ``images``, ``limit`` as for ingest);
    otherwise from the live version's documents. ``swap=False`` stops once verified (``promote``
    later). ``stop_before`` (``"fill"``, ``"verify"`` or ``"swap"``) raises
    :class:`RolloutInterrupted` there, as a crash would. Called again with the same model and
    source, it resumes the unfinished version. Returns the version's rollout state.
    """
    check_catalogue_name(catalogue)
    if stop_before not in (None, "fill", "verify", "swap"):
        raise ValueError(f"stop_before must be fill, verify or swap, not {stop_before!r}")
    client = client or connect(settings, timeout=120)
    origin = live_index(client, catalogue)
    origin_meta = _meta(client, origin) if origin else {}
    if source is None and origin is None:
        raise RolloutNotFound(f"catalogue {catalogue!r} has no live index to reindex from: give a source file")
    if source is None and _docs(client, origin) == 0:
        raise RolloutError(f"{origin} holds no documents: nothing to reindex from (give a source file)")
    model = resolve_model(settings, model) or origin_meta.get("model") or settings.text_model
    encoder = text_encoder(settings.replace(text_model=model))
    if source is not None:
        path = Path(source).expanduser().resolve()
        if not path.is_file():
            raise RolloutNotFound(f"source file {source} does not exist")
        key = {"kind": "file", "path": str(path), "mapping": mapping, "limit": limit}
    else:
        key = {"kind": "index", "index": origin}

    target = _unfinished(client, catalogue, encoder.version, key)
    if target is None:
        carried = {"scales": origin_meta["scales"]} if source is None and "scales" in origin_meta else {}
        state = {"step": "created", "model": encoder.name, "model_version": encoder.version, "source": key,
                 "origin": origin, "started_at": _now(), "updated_at": _now()}
        target = create_catalogue_version(client, settings, catalogue, model=model, switch=False, extra_meta={
            **carried, "source": f"{key['kind']}:{key.get('path') or key.get('index')}", "rollout": state})
    state = _meta(client, target)["rollout"]

    def stop(step: str) -> None:
        if stop_before == step:
            raise RolloutInterrupted(f"{target}: stopped before {step} (step {state['step']}); the alias is untouched")

    if state["step"] == "created":
        stop("fill")
        if source is not None:
            expected = _fill_from_source(settings, catalogue, target, key, images, chunk_size, on_progress, runner)
        else:
            expected = _fill_from_index(client, catalogue, target, origin, chunk_size, on_progress, runner)
        state = _record(client, target, step="filled", expected=expected, docs=_docs(client, target))
    if state["step"] == "filled":
        stop("verify")
        try:
            checked = verify(client, target, encoder, state["expected"])
        except RolloutError as e:
            raise RolloutError(f"{e}. {target} stays unverified and the alias untouched; to start over: "
                               f"shopsearch index delete {catalogue} {target}") from None
        state = _record(client, target, step="verified", verified=checked)
    if state["step"] == "verified" and swap:
        stop("swap")
        live = live_index(client, catalogue)
        if live not in (state.get("origin"), target):
            raise RolloutError(f"the alias {catalogue} moved from {state.get('origin')} to {live} during this rollout; "
                               f"{target} is verified: promote it explicitly if it should replace {live}")
        _swap(client, catalogue, target, "reindex")
        state = _meta(client, target)["rollout"]
    return {"catalogue": catalogue, "index": target, **state}


# --- promote, rollback, status -----------------------------------------------------------------------

def promote(settings: Settings, catalogue: str, index_or_version: str, client: OpenSearch | None = None) -> dict:
    """Put an existing, verified version behind the alias (a version made by ingest is verified now)."""
    client = client or connect(settings, timeout=120)
    index = version_index(check_catalogue_name(catalogue), index_or_version)
    if not client.indices.exists(index=index):
        raise RolloutNotFound(f"{index} does not exist (versions: `shopsearch status --catalogue {catalogue}`)")
    meta = _meta(client, index)
    state = meta.get("rollout", {})
    if state.get("step") in ("created", "filled"):
        raise RolloutError(f"{index} is not verified: its rollout stopped at step {state['step']!r}. Run "
                           f"`shopsearch reindex --catalogue {catalogue}` with the same model and source to finish it")
    docs = _docs(client, index)
    if docs == 0:
        raise RolloutError(f"{index} is empty: refusing to put it behind {catalogue}")
    if "verified" not in state:
        encoder = text_encoder(settings.replace(text_model=meta.get("model", settings.text_model)))
        _record(client, index, verified=verify(client, index, encoder, docs))
    previous = live_index(client, catalogue)
    if previous != index:
        _swap(client, catalogue, index, "promote")
    return {"catalogue": catalogue, "index": index, "previous": previous, "model_version": meta.get("model_version")}


def rollback(settings: Settings, catalogue: str, client: OpenSearch | None = None) -> dict:
    """Move the alias back to the version that was live before the current one, in one step."""
    client = client or connect(settings, timeout=120)
    live = live_index(client, check_catalogue_name(catalogue))
    if live is None:
        raise RolloutNotFound(f"catalogue {catalogue!r} has no live index")
    previous = _meta(client, live).get("rollout", {}).get("previous")
    if not previous:
        raise RolloutError(f"{live} records no previous version to roll back to; use promote to choose one")
    if not client.indices.exists(index=previous):
        raise RolloutError(f"the previous version {previous} was deleted; use promote to choose another")
    if _docs(client, previous) == 0:
        raise RolloutError(f"the previous version {previous} is empty; use promote to choose another")
    _swap(client, catalogue, previous, "rollback")
    return {"catalogue": catalogue, "index": previous, "previous": live,
            "model_version": _meta(client, previous).get("model_version")}


def _last_event(client: OpenSearch, settings: Settings, catalogue: str) -> dict:
    body = {"size": 0, "query": {"term": {"catalogue": catalogue}}, "aggs": {"last": {"max": {"field": "timestamp"}}}}
    try:
        found = client.search(index=settings.ubi_events_index, body=body)
    except NotFoundError:
        return {"events": 0, "last_event": None}
    return {"events": found["hits"]["total"]["value"], "last_event": found["aggregations"]["last"].get("value_as_string")}


def catalogue_status(client: OpenSearch, settings: Settings, catalogue: str) -> dict:
    """Alias -> live index -> model; every version with its rollout state; events."""
    versions = list_versions(client, catalogue)
    live = next((v for v in versions if v.live), None)
    history = sorted((e for v in versions for e in v.meta.get("rollout", {}).get("history", [])), key=lambda e: e["at"])
    return {
        "catalogue": catalogue, "live": live.index if live else None,
        "model": live.meta.get("model") if live else None,
        "model_version": live.meta.get("model_version") if live else None,
        "docs": live.docs if live else 0,
        "previous": live.meta.get("rollout", {}).get("previous") if live else None,
        "versions": [{"index": v.index, "live": v.live, "docs": v.docs, "model": v.meta.get("model"),
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
