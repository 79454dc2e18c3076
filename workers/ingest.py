"""An ingest run: read -> map -> clean -> dedupe -> normalise here; encode -> index on the workers.

The coordinator sees the whole run, which duplicate ids and near-duplicate groups need, and
cleaning is pure and fast (tens of thousands of items a second). Unchanged items (same content
hash and model version as the indexed document) are skipped without encoding. The rest go to
Celery in chunks, each a chain ``encode.chunk -> ingest.write``. Every record read ends up
counted: accepted and indexed, rejected to the dead-letter file with its reason, superseded by a
later record with the same id, or skipped unchanged.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable

from shopsearch.catalogue_index import create_catalogue_version, live_meta
from shopsearch.cluster import connect
from shopsearch.settings import Settings

from .catalogue import BUILTIN_MAPPINGS, detect_format, load_mapping, read_source_items
from .clean import clean_item
from .dedupe import dedupe
from .index_write import existing_hashes
from .normalise import fit_catalogue_scales, normalise_item

PROJECTION_SAMPLE = 2000


@dataclass
class Summary:
    catalogue: str
    index: str
    run_id: str
    read: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    superseded: int = 0
    skipped_unchanged: int = 0
    encoded: int = 0
    indexed: int = 0
    failed: list = field(default_factory=list)
    image_unreadable: int = 0
    duplicate_groups: int = 0
    dead_letters: str = ""
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        """Every accepted item is in the index (indexed now or kept unchanged)."""
        return not self.failed and self.indexed + self.skipped_unchanged == self.accepted

    def as_dict(self) -> dict:
        d = asdict(self)
        d["rejected"] = dict(self.rejected)
        d["complete"] = self.complete
        return d


def default_mapping(path: Path, catalogue: str) -> str:
    """A built-in mapping named like the catalogue, else the canonical JSONL one."""
    if catalogue in BUILTIN_MAPPINGS:
        return catalogue
    if detect_format(path) == "jsonl":
        return "generic_jsonl"
    raise ValueError(f"no mapping for {path.name}: pass --mapping (built-in: {sorted(BUILTIN_MAPPINGS)}, or a JSON file)")


def _update_meta(client, index: str, changes: dict) -> dict:
    meta = client.indices.get_mapping(index=index)[index]["mappings"].get("_meta", {})
    meta.update(changes)
    client.indices.put_mapping(index=index, body={"_meta": meta})
    return meta


def plan(path: Path, mapping_name: str, images: Path | None, limit: int | None, summary: Summary,
         dead: list[dict]) -> list[dict]:
    """Read, map, clean and dedupe; fills the summary and the dead letters; returns kept items."""
    mapping = load_mapping(mapping_name)
    base_dir = images or path.parent
    accepted = []
    for line_no, source in islice(read_source_items(path, mapping), limit):
        summary.read += 1
        result = clean_item(source, base_dir)
        if result.accepted:
            accepted.append(result.item)
        else:
            summary.rejected[result.reason] += 1
            dead.append({"line": line_no, "reason": result.reason, "detail": result.detail, "record": result.record})
    kept, superseded, groups = dedupe(accepted)
    summary.superseded = len(superseded)
    summary.duplicate_groups = len(groups)
    dead.extend({"reason": s["reason"], "detail": s["detail"], "record": s["record"]} for s in superseded)
    summary.accepted = len(kept)
    return kept


def _dispatch_and_wait(app, todo, index, meta, projection, chunk_size, summary, on_progress):
    """Send every chunk as an encode -> write chain (routed by name to its queue), then collect the outcomes in order."""
    pending = []
    for n, start in enumerate(range(0, len(todo), chunk_size)):
        payload = {"index": index, "chunk": n, "model": meta["model"], "projection": projection,
                   "items": todo[start:start + chunk_size]}
        job = app.signature("shopsearch.encode.chunk", args=[payload]) | app.signature("shopsearch.ingest.write")
        pending.append((len(payload["items"]), job.apply_async()))
    done = 0
    for size, result in pending:
        outcome = result.get(timeout=24 * 3600, propagate=True)
        summary.indexed += outcome["indexed"]
        summary.failed.extend(outcome["failures"])
        summary.image_unreadable += len(outcome["image_unreadable"])
        done += size
        if on_progress:
            on_progress(done, len(todo))


def run_ingest(settings: Settings, path: str | Path, catalogue: str, mapping: str | None = None,
               images: str | Path | None = None, limit: int | None = None, chunk_size: int = 256,
               on_progress: Callable[[int, int], None] | None = None, app=None, index: str | None = None) -> Summary:
    """Ingest a catalogue file into ``index``, or the live index of ``catalogue`` (created when missing)."""
    from .app import make_app

    started = time.perf_counter()
    path = Path(path)
    app = app or make_app(settings)
    client = connect(settings, timeout=120)
    if index is not None:
        index_mapping = client.indices.get_mapping(index=index)[index]["mappings"]
    else:
        try:
            index, index_mapping = live_meta(client, catalogue)
        except LookupError:
            create_catalogue_version(client, settings, catalogue)
            index, index_mapping = live_meta(client, catalogue)
    meta = index_mapping.get("_meta", {})
    summary = Summary(catalogue, index, uuid.uuid4().hex[:12])
    dead: list[dict] = []
    items = plan(path, mapping or default_mapping(path, catalogue), Path(images) if images else None, limit, summary, dead)

    # numbers are scaled with the parameters stored with the index version, fitted on its first ingest
    if "scales" not in meta:
        meta = _update_meta(client, index, {"scales": fit_catalogue_scales(items)})
    items = [normalise_item(i, meta["scales"]) for i in items]

    with_images = [i for i in items if i.get("image") and not str(i["image"]).startswith(("http://", "https://"))]
    if with_images and "projection" not in meta:
        fitted = app.send_task("shopsearch.encode.fit_projection", args=[{
            "index": index, "model": meta["model"], "items": with_images[:PROJECTION_SAMPLE]}]).get(timeout=3600)
        meta = _update_meta(client, index, {"projection": fitted})

    todo = []
    for start in range(0, len(items), 500):
        block = items[start:start + 500]
        have = existing_hashes(client, index, [i["id"] for i in block])
        for item in block:
            if have.get(item["id"]) == (item["content_hash"], meta["model_version"]):
                summary.skipped_unchanged += 1
            else:
                todo.append(item)
    summary.encoded = len(todo)

    projection = meta.get("projection", {}).get("path")
    if todo:
        # no refreshes while bulk-writing: fewer, larger segments, so Lucene rebuilds fewer HNSW graphs in merges
        client.indices.put_settings(index=index, body={"index": {"refresh_interval": "-1"}})
    try:
        _dispatch_and_wait(app, todo, index, meta, projection, chunk_size, summary, on_progress)
    finally:
        if todo:
            client.indices.put_settings(index=index, body={"index": {"refresh_interval": "1s"}})
        client.indices.refresh(index=index)

    dl_dir = settings.home_path / "deadletters" / catalogue
    dl_dir.mkdir(parents=True, exist_ok=True)
    dl = dl_dir / f"{time.strftime('%Y%m%dT%H%M%S')}-{summary.run_id}.jsonl"
    with open(dl, "w", encoding="utf-8") as f:
        for row in dead + [{"reason": "index_failed", **x} for x in summary.failed]:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    summary.dead_letters = str(dl)
    summary.seconds = round(time.perf_counter() - started, 2)
    return summary
