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
"""

from __future__ import annotations

import time

from shopsearch.cluster import connect
from shopsearch.encoders.text import item_text, text_encoder
from shopsearch.index.catalogue import create_catalogue_version
from shopsearch.ingest.in_process import InProcessRunner
from shopsearch.ingest.pipeline import Summary, plan, run_ingest
from shopsearch.settings import Settings
from shopsearch.workers.dispatch import runner as celery_runner

SOURCES = {"homedepot": ("homedepot/products.tsv", "homedepot", None),
           "fashion": ("fashion/products.tsv", "fashion", "fashion"),
           "instacart": ("instacart/products.tsv", "instacart", None)}
RUNNERS = ("celery", "in-process")


def _raw_items_per_s(encoder, texts: list[str]) -> float:
    start = time.perf_counter()
    encoder.encode(texts)
    return len(texts) / (time.perf_counter() - start)


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
    raw_before = _raw_items_per_s(encoder, texts)
    echo(f"raw encoder ({encoder.name} on {encoder.device}, one call over {len(texts)} texts in memory): "
         f"{raw_before:.1f} items/s")

    client = connect(settings, timeout=120)
    chunks = InProcessRunner(settings, client) if runner == "in-process" else celery_runner(settings)
    index = create_catalogue_version(client, settings, catalogue, switch=False, extra_meta={"purpose": "bench"})
    try:
        first = run_ingest(settings, path, catalogue, mapping, image_dir, limit, index=index, runner=chunks)
        pipeline = first.indexed / first.seconds
        echo(f"pipeline ({runner} + OpenSearch, file to searchable index): {first.indexed} items in {first.seconds}s,"
             f" {pipeline:.1f} items/s [{_phases(first)}]")
        again = run_ingest(settings, path, catalogue, mapping, image_dir, limit, index=index, runner=chunks)
        reingest = again.read / again.seconds
        echo(f"re-ingest unchanged: {again.skipped_unchanged} of {again.read} skipped in {again.seconds}s,"
             f" {reingest:.1f} items/s [{_phases(again)}]")
    finally:
        if not keep:
            client.indices.delete(index=index)
    raw_after = _raw_items_per_s(encoder, texts)
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
            "complete": first.complete and again.complete}
