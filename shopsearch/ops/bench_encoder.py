"""``shopsearch bench encoder``: the query encoder through torch, ONNX Runtime fp32 and int8, side by side in one run.

On real Home Depot query text (distinct queries of ``homedepot/judgments.tsv``, a deterministic
sample) and product texts (``item_text`` of ``homedepot/products.tsv``):

1. per-query latency: single queries, one intra-op thread each, the back-ends taking turns on
   every query (so drift on a shared machine hits all alike); p50 / p95 and the ratio to torch;
2. batch throughput: batches of ``batch_size`` product texts (what an ingest chunk encodes), at
   the ``inference_threads`` setting (0: each library's default), texts per second;
3. cosine of each ONNX variant's query vectors against torch's: min, mean, share ≥ 0.9999.

The int8 figures are measured whatever its card says (``OnnxTextEncoder.trial``); whether int8
may *serve* is the gate's decision (``shopsearch models onnx``).
"""

from __future__ import annotations

import csv
import time

import numpy as np

from shopsearch.encoders.onnx import OnnxTextEncoder
from shopsearch.encoders.text import item_text, load_text_encoder, resolve_model_path
from shopsearch.settings import Settings


def sample_queries(settings: Settings, n: int) -> list[str]:
    """``n`` distinct Home Depot queries, spread evenly over the judgments file (deterministic)."""
    with open(settings.data_path / "homedepot" / "judgments.tsv", encoding="utf-8", newline="") as f:
        queries = list(dict.fromkeys(row["query"] for row in csv.DictReader(f, delimiter="\t")))
    step = max(1, len(queries) // max(1, n))
    return queries[::step][:n]


def sample_titles(settings: Settings, n: int) -> list[str]:
    """The texts of the first ``n`` Home Depot products, as ingest encodes them."""
    with open(settings.data_path / "homedepot" / "products.tsv", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        return [item_text({"title": row["title"]}) for row, _ in zip(reader, range(n))]


def _percentiles(ms: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3)}


def _cosines(reference: np.ndarray, other: np.ndarray) -> dict:
    c = (reference * other).sum(1)
    return {"min": round(float(c.min()), 5), "mean": round(float(c.mean()), 5),
            "share_ge_0.9999": round(float((c >= 0.9999).mean()), 4)}


def bench_encoder(settings: Settings, queries: int = 300, batches: int = 8, echo=print) -> dict:
    """Latency, throughput and cosine figures of torch / ONNX fp32 / ONNX int8 for the configured text model."""
    import torch  # why: heavy; the torch back-end is one of the three measured

    model = settings.text_model
    path = resolve_model_path(model)
    qs, texts = sample_queries(settings, queries), sample_titles(settings, batches * settings.batch_size)
    threads = settings.inference_threads
    torch_enc = load_text_encoder(model, "cpu", settings.batch_size, backend="torch")
    fp32 = OnnxTextEncoder(model, path, settings.models_path, settings.batch_size, threads=1)
    backends = {"torch": torch_enc, "onnx_fp32": fp32, "onnx_int8": fp32.trial("int8")}
    echo(f"{model} ({torch_enc.version}), {len(qs)} Home Depot queries, ONNX export in {fp32.export_dir}")

    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for enc in backends.values():
        enc.encode(qs[:8])  # warm up outside the timing
    latency = {name: [] for name in backends}
    vectors = {name: [] for name in backends}
    for q in qs:
        for name, enc in backends.items():
            start = time.perf_counter()
            vectors[name].append(enc.encode([q])[0])
            latency[name].append((time.perf_counter() - start) * 1000.0)
    single = {name: _percentiles(ms) for name, ms in latency.items()}

    torch.set_num_threads(threads if threads > 0 else default_threads)
    batch_backends = {"torch": torch_enc, "onnx_fp32": fp32.trial("fp32", threads), "onnx_int8": fp32.trial("int8", threads)}
    throughput = {}
    for name, enc in batch_backends.items():
        enc.encode(texts[:settings.batch_size])
        start = time.perf_counter()
        for i in range(0, len(texts), settings.batch_size):
            enc.encode(texts[i:i + settings.batch_size])
        throughput[name] = round(len(texts) / (time.perf_counter() - start), 1)

    ref = np.stack(vectors["torch"])
    cosine = {name: _cosines(ref, np.stack(vectors[name])) for name in ("onnx_fp32", "onnx_int8")}
    base_p50 = single["torch"]["p50_ms"]
    ratios = {f"{name}_p50_vs_torch": round(single[name]["p50_ms"] / base_p50, 3) for name in ("onnx_fp32", "onnx_int8")}
    ratios |= {f"{name}_batch_vs_torch": round(throughput[name] / throughput["torch"], 3) for name in ("onnx_fp32", "onnx_int8")}
    echo("| back-end | 1 query p50 ms | p95 ms | batch of %d: texts/s | cosine vs torch: min / mean |" % settings.batch_size)
    echo("|---|---|---|---|---|")
    for name in backends:
        cos = cosine.get(name)
        echo(f"| {name} | {single[name]['p50_ms']} | {single[name]['p95_ms']} | {throughput[name]} | "
             f"{'%s / %s' % (cos['min'], cos['mean']) if cos else 1} |")
    echo(f"ratios: {ratios}")
    return {"model": model, "version": torch_enc.version, "queries": len(qs), "batch_size": settings.batch_size,
            "batch_texts": len(texts), "batch_threads": threads or "library default", "single_query_1_thread": single,
            "batch_texts_per_s": throughput, "cosine_vs_torch": cosine, "ratios": ratios}
