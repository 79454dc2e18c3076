"""Creating a catalogue's index version: the mapping rendered for the encoder that will fill it,
and merging it once it is built (:func:`merge_segments`).

The ``_meta`` of each version records the model that encoded it, so the query side always loads
the matching encoder and a query never mixes vectors of two models.
"""

from __future__ import annotations

import time

from opensearchpy import OpenSearch
from opensearchpy.exceptions import TransportError

from shopsearch.encoders.text import text_encoder
from shopsearch.errors import ServiceError
from shopsearch.index.mapping import products_body
from shopsearch.index.versions import create_version, live_index
from shopsearch.settings import Settings


def create_catalogue_version(client: OpenSearch, settings: Settings, catalogue: str,
                             model: str | None = None, switch: bool = True, extra_meta: dict | None = None) -> str:
    """Create ``<catalogue>-v<N>`` for ``model`` (default: the text_model setting)."""
    encoder = text_encoder(settings.replace(text_model=model) if model else settings)
    meta = {"catalogue": catalogue, "model": encoder.name, "model_version": encoder.version,
            "text_dim": encoder.dimension, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **(extra_meta or {})}
    body = products_body(encoder.dimension, meta, settings.number_of_shards, settings.number_of_replicas)
    return create_version(client, catalogue, body, point_alias=switch)


def live_meta(client: OpenSearch, catalogue: str) -> tuple[str, dict]:
    """The live index of a catalogue and its mapping ``_meta`` (model, version, dimensions)."""
    index = live_index(client, catalogue)
    if index is None:
        raise LookupError(f"catalogue {catalogue!r} has no live index: run `shopsearch index create {catalogue}`")
    mapping = client.indices.get_mapping(index=index)[index]["mappings"]
    return index, mapping


def segment_count(client: OpenSearch, index: str) -> int:
    """How many segments the primaries of ``index`` hold."""
    stats = client.indices.stats(index=index, metric="segments")
    return int(stats["indices"][index]["primaries"]["segments"]["count"])


def merge_segments(client: OpenSearch, index: str, max_segments: int, poll_seconds: float = 1.0) -> dict:
    """Merge a freshly built version down to ``max_segments`` segments per shard (0: leave it to OpenSearch).

    A k-NN query searches every segment's HNSW graph in turn, and a segment that was flushed,
    not merged, still holds the recovery copy of each document's vectors (its ``_source``
    without the excludes). On Home Depot (54,667 products, 3 flushed segments) one merge took
    6.5 s; it made the index 2.5 times smaller (715 -> 286 MB) and a hybrid ``_msearch``
    0.92 times as long (paired, ``docs/ARCHITECTURE.md``). The merge runs as a task that is
    polled, so no request waits on it longer than ``poll_seconds``. Returns ``segments``
    before and after and ``seconds``; raises :class:`ServiceError` when OpenSearch fails it or
    cannot be reached.
    """
    try:
        return _merge(client, index, max_segments, poll_seconds)
    except TransportError as e:  # the cluster went away, the index or the task is gone
        raise ServiceError(f"merging {index} to {max_segments} segment(s) per shard could not finish: {e}; "
                           f"{_UNMERGED}") from None


_UNMERGED = "the version serves as it is (setting build_max_segments, 0 to skip the merge)"


def _merge(client: OpenSearch, index: str, max_segments: int, poll_seconds: float) -> dict:
    before = segment_count(client, index)
    shards = int(client.indices.get_settings(index=index, name="index.number_of_shards")[index]["settings"]["index"]
                 ["number_of_shards"])
    if max_segments <= 0 or before <= max_segments * shards:
        return {"segments_before": before, "segments": before, "seconds": 0.0}
    started = time.perf_counter()
    task = client.indices.forcemerge(index=index, params={"max_num_segments": max_segments,
                                                          "wait_for_completion": "false"})["task"]
    wait = 0.05
    while True:
        found = client.tasks.get(task_id=task)
        if found.get("completed"):
            break
        time.sleep(wait)
        wait = min(wait * 2, poll_seconds)
    failed = found.get("error") or (found.get("response", {}).get("_shards", {}).get("failures"))
    if failed:
        raise ServiceError(f"merging {index} to {max_segments} segment(s) per shard failed: {failed}; {_UNMERGED}")
    client.indices.refresh(index=index)  # searchers move to the merged segment and the old ones are let go
    return {"segments_before": before, "segments": segment_count(client, index),
            "seconds": round(time.perf_counter() - started, 3)}
