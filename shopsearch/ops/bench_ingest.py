"""``shopsearch bench ingest``: raw encoder vs the full pipeline vs re-ingest, side by side in one run.

1. raw encoder: the worker's text encoder alone, in this process, on exactly the texts the
   pipeline encodes (cleaned items, ``shopsearch.encoders.text.item_text``);
2. pipeline: the same items through the one ingest pipeline (``ingest.pipeline.plan`` and
   ``run_ingest``, the chunks on Celery through ``workers.dispatch``, as ``shopsearch ingest`` and
   ``reindex`` run them: encode -> bulk write) into a fresh index version (the live alias is not
   touched);
3. re-ingest of the unchanged catalogue into that version (content-hash skip).
"""

from __future__ import annotations

import time

from shopsearch.cluster import connect
from shopsearch.encoders.text import item_text, text_encoder
from shopsearch.index.catalogue import create_catalogue_version
from shopsearch.ingest.pipeline import Summary, plan
from shopsearch.settings import Settings
from shopsearch.workers.dispatch import run_ingest

SOURCES = {"homedepot": ("homedepot/products.tsv", "homedepot", None),
           "fashion": ("fashion/products.tsv", "fashion", "fashion"),
           "instacart": ("instacart/products.tsv", "instacart", None)}


def bench_ingest(settings: Settings, catalogue: str, limit: int | None = None, keep: bool = False,
                 echo=print) -> dict:
    """Items per second of the raw encoder, the pipeline and a re-ingest for one packaged catalogue, in one run."""
    rel, mapping, images = SOURCES[catalogue]
    path = settings.data_path / rel
    image_dir = settings.data_path / images if images else None
    items = plan(path, mapping, image_dir, limit, Summary(catalogue, "", ""), [])
    texts = [item_text(i) for i in items]
    encoder = text_encoder(settings)
    encoder.encode(texts[:64])  # load and warm up outside the timing, as the worker's is after its first chunk
    start = time.perf_counter()
    encoder.encode(texts)
    raw = len(texts) / (time.perf_counter() - start)
    echo(f"raw encoder ({encoder.name} on {encoder.device}): {len(texts)} items, {raw:.1f} items/s")

    client = connect(settings)
    index = create_catalogue_version(client, settings, catalogue, switch=False, extra_meta={"purpose": "bench"})
    try:
        first = run_ingest(settings, path, catalogue, mapping, image_dir, limit, index=index)
        pipeline = first.indexed / first.seconds
        echo(f"pipeline (Celery + OpenSearch): {first.indexed} items in {first.seconds}s, {pipeline:.1f} items/s"
             f" ({pipeline / raw:.2f}x raw)")
        again = run_ingest(settings, path, catalogue, mapping, image_dir, limit, index=index)
        reingest = again.read / again.seconds
        echo(f"re-ingest unchanged: {again.skipped_unchanged} skipped in {again.seconds}s, {reingest:.1f} items/s"
             f" ({reingest / pipeline:.1f}x first ingest)")
    finally:
        if not keep:
            client.indices.delete(index=index)
    return {"catalogue": catalogue, "items": len(texts), "raw_encoder_items_per_s": round(raw, 2),
            "pipeline_items_per_s": round(pipeline, 2), "ratio": round(pipeline / raw, 3),
            "reingest_items_per_s": round(reingest, 2), "reingest_speedup": round(reingest / pipeline, 2)}
