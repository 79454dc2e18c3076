"""``shopsearch bench ingest``: raw encoder vs the full pipeline vs re-ingest, side by side in one run.

What each figure measures (all on the same items: the first ``--limit`` records of the file):

1. **raw encoder**: the text encoder alone, in this process, on exactly the texts the pipeline
   encodes (cleaned items, ``shopsearch.encoders.text.item_text``), in one ``encode`` call over
   texts already in memory, after a warm-up. Measured twice, before the pipeline runs and after
   the re-ingest, because this machine is shared and its speed drifts; the ratios use the mean
   and both are printed.
2. **pipeline**: ``run_ingest`` from the file to a searchable index version (the live alias is
   not touched), wall time: read, clean, dedupe and normalise (``plan``), the stored-hash lookup,
   encode -> bulk write on the chosen runner (Celery workers, as ``shopsearch ingest`` runs it, or
   in process), the final refresh. Items/s = indexed / wall time; its ratio to the raw encoder is
   the whole machine's cost of indexing (OpenSearch builds the HNSW graph of every vector on the
   same cores) against encoding alone.
3. **re-ingest unchanged**: the same file again into that version; every item is skipped by its
   content hash. Items/s = records read / wall time; the speed-up is over the first ingest.

Each run's phases (seconds) are printed beside it, so a figure that moves can be traced to its
phase. Small ``--limit`` values weigh the fixed costs (index set-up, refresh, plan) more.

**CPU** (user + system seconds, from ``/proc`` through psutil): of this process while the raw
encoder runs, and during the first ingest of this process (the coordinator) and of each of the
project's own services that the pipeline uses (the OpenSearch node, each Celery worker with its
pool), a process and its children counted once. Where every core is busy, the pipeline's wall
time is at least its CPU over the cores, so ``raw encoder CPU / pipeline CPU`` bounds the ratio
from above on these cores (:func:`cpu_bound`): what OpenSearch spends indexing counts against
the encoder whatever the pipeline overlaps. Services the project does not run here (an
``opensearch_url`` elsewhere) are left out and named.
"""

from __future__ import annotations

import time

import psutil

from shopsearch.cluster import connect
from shopsearch.encoders.text import item_text, text_encoder
from shopsearch.index.catalogue import create_catalogue_version
from shopsearch.ingest.in_process import InProcessRunner
from shopsearch.ingest.pipeline import Summary, plan, run_ingest
from shopsearch.ops.cpu import family_cpu_seconds, process_cpu
from shopsearch.ops.services import opensearch as opensearch_service
from shopsearch.ops.services import worker as worker_service
from shopsearch.settings import Settings
from shopsearch.workers.dispatch import runner as celery_runner

SOURCES = {"homedepot": ("homedepot/products.tsv", "homedepot", None),
           "fashion": ("fashion/products.tsv", "fashion", "fashion"),
           "instacart": ("instacart/products.tsv", "instacart", None)}
RUNNERS = ("celery", "in-process")


def _raw_items_per_s(encoder, texts: list[str]) -> tuple[float, float]:
    """Items per second of one ``encode`` call over ``texts``, and the CPU seconds this process spent on it."""
    me = psutil.Process()
    cpu, start = process_cpu(me), time.perf_counter()
    encoder.encode(texts)
    return len(texts) / (time.perf_counter() - start), process_cpu(me) - cpu


def service_pids(settings: Settings) -> tuple[dict[str, int], list[str]]:
    """The pipeline's own service processes (``opensearch``, ``worker <queues>``) by name, and those not run here."""
    found: dict[str, int] = {}
    node = opensearch_service.status(settings).get("pid")
    if node:
        found["opensearch"] = int(node)
    for group, pid in worker_service.pids(settings).items():
        if pid:
            found[f"worker {group}"] = pid
    missing = [n for n in ["opensearch", *(f"worker {g}" for g in worker_service.groups(settings))] if n not in found]
    return found, missing


def cpu_bound(raw_cpu_per_item: float, pipeline_cpu_per_item: float) -> float | None:
    """The most the pipeline / raw encoder ratio can be when every core is busy (pure): the raw
    encoder's CPU per item over the pipeline's (encoder, OpenSearch, workers, coordinator).

    >>> cpu_bound(5.8, 8.5)
    0.682
    >>> cpu_bound(5.8, 0.0) is None
    True
    """
    return round(raw_cpu_per_item / pipeline_cpu_per_item, 3) if pipeline_cpu_per_item > 0 else None


def _phases(summary: Summary) -> str:
    return ", ".join(f"{k} {v:.2f}s" for k, v in summary.timings.items())


def bench_ingest(settings: Settings, catalogue: str, limit: int | None = None, keep: bool = False,
                 echo=print, runner: str = "celery") -> dict:
    """Items per second of the raw encoder, the pipeline and a re-ingest for one packaged catalogue, in one run."""
    rel, mapping, images = SOURCES[catalogue]
    path = settings.data_path / rel
    image_dir = settings.data_path / images if images else None
    items = plan(path, mapping, image_dir, limit, Summary(catalogue, "", ""), [])
    texts = [item_text(i) for i in items]
    encoder = text_encoder(settings)
    encoder.encode(texts[:64])  # load and warm up outside the timing, as the worker's is after its first chunk
    raw_before, raw_cpu = _raw_items_per_s(encoder, texts)
    echo(f"raw encoder ({encoder.name} on {encoder.device}, one call over {len(texts)} texts in memory): "
         f"{raw_before:.1f} items/s, CPU {1000 * raw_cpu / len(texts):.2f} ms an item "
         f"({raw_cpu * raw_before / len(texts):.2f} cores busy)")

    client = connect(settings, timeout=120)
    chunks = InProcessRunner(settings, client) if runner == "in-process" else celery_runner(settings)
    index = create_catalogue_version(client, settings, catalogue, switch=False, extra_meta={"purpose": "bench"})
    pids, not_here = service_pids(settings)
    try:
        me = psutil.Process()
        cpu_before = {"coordinator (this process)": process_cpu(me), **{n: family_cpu_seconds(p) for n, p in pids.items()}}
        first = run_ingest(settings, path, catalogue, mapping, image_dir, limit, index=index, runner=chunks)
        cpu_after = {"coordinator (this process)": process_cpu(me), **{n: family_cpu_seconds(p) for n, p in pids.items()}}
        pipeline = first.indexed / first.seconds
        echo(f"pipeline ({runner} + OpenSearch, file to searchable index): {first.indexed} items in {first.seconds}s,"
             f" {pipeline:.1f} items/s [{_phases(first)}]")
        spent = {n: round(cpu_after[n] - cpu_before[n], 2) for n in cpu_before
                 if cpu_before[n] is not None and cpu_after[n] is not None}
        per_item = {n: round(1000 * v / max(first.indexed, 1), 3) for n, v in spent.items()}
        pipeline_cpu = sum(per_item.values())
        raw_per_item = 1000 * raw_cpu / len(texts)
        bound = cpu_bound(raw_per_item, pipeline_cpu)
        echo("pipeline CPU, ms an item: " + ", ".join(f"{n} {v:.2f}" for n, v in per_item.items())
             + f"; {pipeline_cpu:.2f} in all ({sum(spent.values()) / max(first.seconds, 1e-9):.2f} cores busy)"
             + (f"; not counted (not run here): {', '.join(not_here)}" if not_here else ""))
        echo(f"CPU bound on these cores: raw encoder CPU / pipeline CPU = {bound}x")
        again = run_ingest(settings, path, catalogue, mapping, image_dir, limit, index=index, runner=chunks)
        reingest = again.read / again.seconds
        echo(f"re-ingest unchanged: {again.skipped_unchanged} of {again.read} skipped in {again.seconds}s,"
             f" {reingest:.1f} items/s [{_phases(again)}]")
    finally:
        if not keep:
            client.indices.delete(index=index)
    raw_after, _ = _raw_items_per_s(encoder, texts)
    raw = (raw_before + raw_after) / 2
    echo(f"raw encoder again: {raw_after:.1f} items/s (mean {raw:.1f})")
    echo(f"pipeline / raw encoder: {pipeline / raw:.2f}x (target >= 0.90); "
         f"re-ingest / first ingest: {reingest / pipeline:.1f}x (target >= 20)")
    return {"catalogue": catalogue, "items": len(texts), "runner": runner,
            "raw_encoder_items_per_s": round(raw, 2), "raw_encoder_before_after": [round(raw_before, 2), round(raw_after, 2)],
            "pipeline_items_per_s": round(pipeline, 2), "ratio": round(pipeline / raw, 3),
            "reingest_items_per_s": round(reingest, 2), "reingest_speedup": round(reingest / pipeline, 2),
            "first_ingest": {"seconds": first.seconds, **first.timings},
            "reingest": {"seconds": again.seconds, "skipped_unchanged": again.skipped_unchanged, **again.timings},
            "cpu": {"raw_encoder_ms_per_item": round(raw_per_item, 3),
                    "raw_encoder_cores": round(raw_cpu * raw_before / len(texts), 2),
                    "pipeline_ms_per_item": per_item, "pipeline_cores": round(sum(spent.values()) / max(first.seconds, 1e-9), 2),
                    "bound": bound, "not_counted": not_here},
            "complete": first.complete and again.complete}
