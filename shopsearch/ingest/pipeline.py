"""An ingest run: read -> map -> clean -> dedupe -> normalise here; encode -> index on the workers.

One pipeline serves ``ingest``, ``reindex`` and ``bench ingest``: :func:`plan` (read, map,
clean, dedupe) and :func:`index_items` (scales, projection, unchanged skip, encode -> write).
Where the chunks run is a :class:`Runner` the caller passes in: Celery workers
(``shopsearch.workers.dispatch``), so this flow never imports the Celery adapter.

The coordinator sees the whole run, which duplicate ids and near-duplicate groups need, and
cleaning is pure and fast (tens of thousands of items a second). Unchanged items (same content
hash and model version as the indexed document, read from doc values) are skipped without
encoding. The rest, ordered by text length so each chunk pads little, go to the runner in
chunks: on Celery each a chain ``encode.chunk -> ingest.write``, in process an encode thread
feeding the bulk writer (``ingest/in_process.py``); either way at most ``ingest_window`` chunks
run ahead of the writer. Every record read ends up counted: accepted and indexed, rejected to
the dead-letter file with its reason, superseded by a later record with the same id, skipped
unchanged, or failed in the write stage (reported per item, also in the dead letters).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import TransportError

from shopsearch.cluster import connect
from shopsearch.errors import InputError, ServiceError
from shopsearch.index.catalogue import create_catalogue_version, live_meta, merge_segments
from shopsearch.index.meta import update_meta
from shopsearch.index.versions import list_versions, live_index
from shopsearch.ingest.clean import clean_item
from shopsearch.ingest.dedupe import dedupe
from shopsearch.ingest.encode import by_text_length
from shopsearch.ingest.normalise import fit_catalogue_scales, normalise_item
from shopsearch.ingest.read import BUILTIN_FIELD_MAPS, detect_format, load_field_map, read_source_items
from shopsearch.ingest.write import existing_hashes
from shopsearch.settings import Settings

PROJECTION_SAMPLE = 2000
CLUSTER_WAIT_S = 300  # how long a run waits for OpenSearch to come back before its last requests
LOOKUP_BATCH = 5000  # ids per stored-hash lookup (an ids query answered from doc values; below max_result_window)


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
    timings: dict = field(default_factory=dict)  # seconds per phase: plan, lookup, encode_write, refresh, merge
    also_into: dict = field(default_factory=dict)  # other versions written too (versions_following): items there
    merged: dict = field(default_factory=dict)  # a first version's merge (index.catalogue.merge_segments), or its error

    @property
    def complete(self) -> bool:
        """Every accepted item is in the index (indexed now or kept unchanged)."""
        return not self.failed and self.indexed + self.skipped_unchanged == self.accepted

    def as_dict(self) -> dict:
        d = asdict(self)
        d["rejected"] = dict(self.rejected)
        d["complete"] = self.complete
        return d


def default_field_map(path: Path, catalogue: str) -> str:
    """A built-in mapping named like the catalogue, else the canonical JSONL one."""
    if catalogue in BUILTIN_FIELD_MAPS:
        return catalogue
    if detect_format(path) == "jsonl":
        return "generic_jsonl"
    raise InputError(f"no mapping for {path.name}: pass --mapping (built-in: {sorted(BUILTIN_FIELD_MAPS)}, or a JSON file)")


class Runner(Protocol):
    """Where the encode -> write chunks of an ingest run, and other background work, are executed."""

    def fit_projection(self, payload: dict) -> dict:
        """Learn the image -> text projection for ``payload["items"]``; returns its ``_meta`` entry."""

    def encode_and_write(self, payloads: Sequence[dict]) -> Iterator[dict]:
        """Encode and bulk-write each chunk; yields each chunk's outcome, in order.

        An outcome is ``{"chunk", "indexed", "failures", "image_unreadable"}``; a chunk that failed
        as a whole comes back with each of its items in ``failures`` (``ingest.write.failed_chunk``).
        At most ``ingest_window`` chunks run ahead of the one being written.
        """

    def send(self, task: str, *args) -> None:
        """Start a named background task without waiting for it (e.g. a profile rebuild)."""


ROLLOUT_UNFINISHED = ("created", "filled", "verified")  # learn.rollout_state.STEPS before "swapped"


def versions_following(client, catalogue: str, index: str) -> list[str]:
    """The versions an ingest into the live ``index`` must reach as well, so no accepted item is
    missing after an alias swap: a rollout being built from ``index`` (its reindex copied the
    documents it saw; this run's may come after), and the live version if the alias moved away
    from ``index`` while this run wrote into it."""
    out = [v.index for v in list_versions(client, catalogue)
           if v.index != index and v.meta.get("rollout", {}).get("origin") == index
           and v.meta.get("rollout", {}).get("step") in ROLLOUT_UNFINISHED]
    live = live_index(client, catalogue)
    if live not in (None, index) and live not in out:
        out.append(live)
    return out


def wait_for_cluster(client, seconds: float = CLUSTER_WAIT_S) -> None:
    """Wait (up to ``seconds``) until the cluster answers with its primaries allocated.

    The coordinator calls it after the chunks, before its own last requests: the chunk tasks ride
    out an OpenSearch restart by retrying (``workers/tasks.py``), and the run must not then fail on
    its refresh because the node is still starting."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if client.cluster.health(wait_for_status="yellow", timeout="5s", request_timeout=10)["status"] != "red":
                return
        except (OpenSearchConnectionError, TransportError):
            if time.monotonic() > deadline:
                raise
        time.sleep(1)


def restore_refresh(client, index: str) -> None:
    """Turn refresh back on (1 s) where a bulk write turned it off, and refresh once.

    Bulk writes set ``refresh_interval: -1``; a writer killed before its ``finally`` leaves it so,
    and every later run calls this, whether it writes anything or not (a resumed run whose items
    are all unchanged writes nothing)."""
    current = client.indices.get_settings(index=index, name="index.refresh_interval")
    if current.get(index, {}).get("settings", {}).get("index", {}).get("refresh_interval") == "-1":
        client.indices.put_settings(index=index, body={"index": {"refresh_interval": "1s"}})
    client.indices.refresh(index=index)


def check_source(path: Path) -> None:
    """Refuse a catalogue source that is missing, not a file, or empty, before anything is changed."""
    if not path.exists():
        raise InputError(f"catalogue file {path} does not exist", field="path")
    if not path.is_file():
        raise InputError(f"catalogue source {path} is not a file", field="path")
    if path.stat().st_size == 0:
        raise InputError(f"catalogue file {path} is empty", field="path")


def plan(path: Path, mapping_name: str, images: Path | None, limit: int | None, summary: Summary,
         dead: list[dict]) -> list[dict]:
    """Read, map, clean and dedupe; fills the summary and the dead letters; returns kept items."""
    mapping = load_field_map(mapping_name)
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


def chunk_payloads(todo: list[dict], index: str, model: str, projection: str | None, chunk_size: int,
                   keep_stored: bool = True, conditions: dict[str, list[int] | None] | None = None) -> list[dict]:
    """The chunks of a run (pure): items ordered by text length, cut into ``chunk_size`` pieces
    (``keep_stored``: the write keeps what stored products hold and the items do not name,
    ``ingest.write.KEPT_ACROSS_INGEST``; ``conditions``: ``{id: [seq_no, primary_term] or None}`` of the
    copies read, each chunk carrying its items').

    >>> [len(p["items"]) for p in chunk_payloads([{"id": str(n), "title": "x" * n} for n in range(5)], "i", "m", None, 2)]
    [2, 2, 1]
    >>> [p.get("conditions") for p in chunk_payloads([{"id": "a"}, {"id": "bb"}], "i", "m", None, 1, conditions={"bb": [4, 1]})]
    [{}, {'bb': [4, 1]}]
    """
    ordered = by_text_length(todo)
    chunks = [{"index": index, "chunk": n, "model": model, "projection": projection, "keep_stored": keep_stored,
               "items": ordered[start:start + chunk_size]} for n, start in enumerate(range(0, len(ordered), chunk_size))]
    if conditions is not None:
        for chunk in chunks:
            chunk["conditions"] = {i["id"]: conditions[i["id"]] for i in chunk["items"] if i["id"] in conditions}
    return chunks


def _dispatch_and_wait(runner: Runner, payloads: list[dict], summary, on_progress):
    """Run every chunk on the runner and count each outcome as it arrives (in payload order)."""
    done, total = 0, sum(len(p["items"]) for p in payloads)
    sizes = {p["chunk"]: len(p["items"]) for p in payloads}
    for outcome in runner.encode_and_write(payloads):
        summary.indexed += outcome["indexed"]
        summary.failed.extend(outcome["failures"])
        summary.image_unreadable += len(outcome["image_unreadable"])
        done += sizes.pop(outcome["chunk"])
        if on_progress:
            on_progress(done, total)
    for chunk in sizes:  # a runner that came back without some chunk's outcome: its items are not indexed
        payload = next(p for p in payloads if p["chunk"] == chunk)
        summary.failed.extend({"id": i["id"], "status": None, "error": "no outcome from the runner"}
                              for i in payload["items"])


def unchanged_split(client, index: str, items: list[dict], model_version: str) -> tuple[list[dict], int]:
    """``(items to encode, count unchanged)``: an item is unchanged when the stored document has
    its content hash and ``model_version``."""
    client.indices.refresh(index=index)  # the lookup is a search: a run killed before its refresh still counts
    todo, unchanged = [], 0
    for start in range(0, len(items), LOOKUP_BATCH):
        block = items[start:start + LOOKUP_BATCH]
        have = existing_hashes(client, index, [i["id"] for i in block])
        for item in block:
            if have.get(item["id"]) == (item.get("content_hash"), model_version):
                unchanged += 1
            else:
                todo.append(item)
    return todo, unchanged


def index_items(client, runner: Runner, index: str, items: list[dict], summary: Summary, chunk_size: int = 256,
                on_progress: Callable[[int, int], None] | None = None, projection: dict | None = None) -> dict:
    """The second half of every run: projection, unchanged skip, encode -> write; returns the index's ``_meta``.

    ``items`` are clean and normalised. A catalogue with images and no projection yet gets one:
    ``projection`` when given (a reindex in the same text space reuses it), else learnt by the
    runner. Items whose content hash and model version match the stored document are skipped,
    so a run that stopped half way resumes where it was.
    """
    meta = client.indices.get_mapping(index=index)[index]["mappings"].get("_meta", {})
    with_images = [i for i in items if i.get("image") and not str(i["image"]).startswith(("http://", "https://"))]
    if with_images and "projection" not in meta:
        fitted = projection or runner.fit_projection({"index": index, "model": meta["model"],
                                                       "items": with_images[:PROJECTION_SAMPLE]})
        meta = update_meta(client, index, {"projection": fitted})
    started = time.perf_counter()
    todo, summary.skipped_unchanged = unchanged_split(client, index, items, meta["model_version"])
    summary.encoded = len(todo)
    summary.timings["lookup"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    if todo:
        # no refreshes while bulk-writing: fewer, larger segments, so Lucene rebuilds fewer HNSW graphs in merges
        client.indices.put_settings(index=index, body={"index": {"refresh_interval": "-1"}})
    try:
        payloads = chunk_payloads(todo, index, meta["model"], meta.get("projection", {}).get("path"), chunk_size)
        _dispatch_and_wait(runner, payloads, summary, on_progress)
    finally:
        summary.timings["encode_write"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        wait_for_cluster(client)
        # also when nothing was written: a run killed while refresh was off left it off
        restore_refresh(client, index)
        summary.timings["refresh"] = round(time.perf_counter() - started, 3)
    return meta


def run_ingest(settings: Settings, path: str | Path, catalogue: str, mapping: str | None = None,
               images: str | Path | None = None, limit: int | None = None, chunk_size: int = 256,
               on_progress: Callable[[int, int], None] | None = None, *, runner: Runner,
               index: str | None = None) -> Summary:
    """Ingest a catalogue file into ``index``, or the live index of ``catalogue`` (created when missing)."""
    started = time.perf_counter()
    path = Path(path)
    check_source(path)
    # read and clean first: a source without one usable record leaves no (empty) catalogue behind
    summary = Summary(catalogue, index or "", uuid.uuid4().hex[:12])
    dead: list[dict] = []
    started_plan = time.perf_counter()
    items = plan(path, mapping or default_field_map(path, catalogue), Path(images) if images else None, limit, summary, dead)
    if not items:
        raise InputError(f"{path} holds no record that can be indexed (read {summary.read}, rejected "
                         f"{dict(summary.rejected) or 0}, duplicates {summary.superseded}); nothing was changed",
                         field="path")
    client = connect(settings, timeout=120)
    follow = index is None  # a write through the alias; a reindex filling its own version names it
    built = False  # this run creates the catalogue's first version: merged once written (merge_segments)
    if index is not None:
        index_mapping = client.indices.get_mapping(index=index)[index]["mappings"]
    else:
        try:
            index, index_mapping = live_meta(client, catalogue)
        except LookupError:
            create_catalogue_version(client, settings, catalogue)
            index, index_mapping = live_meta(client, catalogue)
            built = True
    summary.index = index
    meta = index_mapping.get("_meta", {})

    # numbers are scaled with the parameters stored with the index version, fitted on its first ingest
    if "scales" not in meta:
        meta = update_meta(client, index, {"scales": fit_catalogue_scales(items)})
    items = [normalise_item(i, meta["scales"]) for i in items]
    summary.timings["plan"] = round(time.perf_counter() - started_plan, 3)
    index_items(client, runner, index, items, summary, chunk_size, on_progress)
    if follow:
        for other in versions_following(client, catalogue, index):
            also = Summary(catalogue, other, summary.run_id)
            index_items(client, runner, other, items, also, chunk_size)
            summary.failed.extend({**f, "index": other} for f in also.failed)
            summary.also_into[other] = also.indexed + also.skipped_unchanged
    if built and summary.indexed:
        started_merge = time.perf_counter()
        try:
            summary.merged = merge_segments(client, index, settings.build_max_segments)
        except ServiceError as e:  # every item is written and searchable: only the merge is left undone
            summary.merged = {"error": str(e)}
        summary.timings["merge"] = round(time.perf_counter() - started_merge, 3)

    dl_dir = settings.home_path / "deadletters" / catalogue
    dl_dir.mkdir(parents=True, exist_ok=True)
    dl = dl_dir / f"{time.strftime('%Y%m%dT%H%M%S')}-{summary.run_id}.jsonl"
    with open(dl, "w", encoding="utf-8") as f:
        for row in dead + [{"reason": "index_failed", **x} for x in summary.failed]:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    summary.dead_letters = str(dl)
    summary.seconds = round(time.perf_counter() - started, 2)
    return summary
