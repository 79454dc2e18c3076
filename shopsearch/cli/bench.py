"""``shopsearch bench``: commands that print figures measured side by side in one run (``shopsearch/ops/bench_*``).

Errors are translated by ``cli/errors.py``'s :func:`fail_cleanly`, the CLI's one boundary.
"""

from __future__ import annotations


import click

from shopsearch.cli.errors import fail_cleanly
from shopsearch.cli.output import print_json, write_json
from shopsearch.ops.bench_encoder import bench_encoder
from shopsearch.ops.bench_faults import bench_faults
from shopsearch.ops.bench_ingest import RUNNERS, bench_ingest
from shopsearch.ops.bench_query import MODES as BENCH_MODES
from shopsearch.ops.bench_query import bench_query
from shopsearch.ops.bench_ranker import bench_ranker
from shopsearch.ops.bench_rerank import bench_rerank
from shopsearch.ops.bench_versions import bench_versions
from shopsearch.settings import Settings


@click.group()
def bench() -> None:
    """Benchmarks: commands that print figures measured side by side in one run."""


@bench.command("ingest")
@click.option("--catalogue", type=click.Choice(["homedepot", "fashion", "instacart"]), default="homedepot", show_default=True)
@click.option("--limit", type=int, help="Only the first N records.")
@click.option("--keep", is_flag=True, help="Keep the benchmark's index version instead of deleting it.")
@click.option("--runner", type=click.Choice(RUNNERS), default="celery", show_default=True,
              help="Where the pipeline's chunks run: the Celery workers, or this process (encode thread + bulk writer).")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), help="Write the figures to this file.")
@click.pass_obj
@fail_cleanly
def bench_ingest_cmd(settings: Settings, catalogue: str, limit: int | None, keep: bool, runner: str,
                     json_file: str | None) -> None:
    """Raw encoder vs full pipeline vs unchanged re-ingest (items/s), measured in one run."""
    figures = bench_ingest(settings, catalogue, limit, keep, echo=click.echo, runner=runner)
    print_json(figures)
    write_json(json_file, figures)


@bench.command("query")
@click.option("--catalogue", default="homedepot", show_default=True)
@click.option("--clients", type=int, default=16, show_default=True)
@click.option("--seconds", type=float, default=20.0, show_default=True, help="Per mode, at --clients clients.")
@click.option("--one-client-seconds", type=float, help="Per mode at one client (default: half of --seconds).")
@click.option("--modes", default=",".join(BENCH_MODES), show_default=True, help="Comma-separated modes to run.")
@click.option("--zipf/--no-zipf", default=True, show_default=True, help="Also replay queries with Zipf frequencies (hybrid, personalised).")
@click.option("--proxy-workers", type=int, help="gunicorn workers of the proxy under test (default: proxy_workers).")
@click.option("--proxy-threads", type=int, help="Threads per worker (default: proxy_threads).")
@click.option("--intra-threads", type=int, help="Intra-op threads per worker (default: inference_threads).")
@click.option("--json", "json_file", type=click.Path(dir_okay=False))
@click.pass_obj
@fail_cleanly
def bench_query_cmd(settings: Settings, catalogue: str, clients: int, seconds: float, one_client_seconds: float | None,
                    modes: str, zipf: bool, proxy_workers: int | None, proxy_threads: int | None,
                    intra_threads: int | None, json_file: str | None) -> None:
    """Direct BM25 vs pass-through vs hybrid vs personalised vs re-rank, at N clients and at one, no-repeat and Zipf: latency, QPS, errors, ratios, memory."""
    chosen = tuple(m.strip() for m in modes.split(",") if m.strip())
    unknown = set(chosen) - set(BENCH_MODES)
    if unknown:
        raise click.BadParameter(f"unknown modes {', '.join(sorted(unknown))}; known: {', '.join(BENCH_MODES)}", param_hint="--modes")
    figures = bench_query(settings, catalogue, clients, seconds, proxy_workers, echo=click.echo,
                          one_client_seconds=one_client_seconds, modes=chosen, zipf=zipf, proxy_threads=proxy_threads,
                          intra_threads=intra_threads)
    write_json(json_file, figures)


@bench.command("versions")
@click.option("--catalogue", default="homedepot", show_default=True)
@click.argument("version_a")
@click.argument("version_b")
@click.option("--queries", type=int, default=300, show_default=True, help="Real shopper queries, each sent to both.")
@click.option("--depth", type=int, default=100, show_default=True, help="Candidates of the BM25 and k-NN requests.")
@click.option("--rounds", type=int, default=2, show_default=True)
@click.option("--json", "json_file", type=click.Path(dir_okay=False))
@click.pass_obj
@fail_cleanly
def bench_versions_cmd(settings: Settings, catalogue: str, version_a: str, version_b: str, queries: int, depth: int,
                       rounds: int, json_file: str | None) -> None:
    """The same search requests on two index versions, alternately: median latency of each, and the ratio A / B."""
    figures = bench_versions(settings, catalogue, version_a, version_b, queries, depth, rounds, echo=click.echo)
    write_json(json_file, figures)


@bench.command("encoder")
@click.option("--queries", type=int, default=300, show_default=True, help="Distinct Home Depot queries timed one by one.")
@click.option("--batches", type=int, default=8, show_default=True, help="Batches of batch_size product texts for throughput.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False))
@click.pass_obj
@fail_cleanly
def bench_encoder_cmd(settings: Settings, queries: int, batches: int, json_file: str | None) -> None:
    """Query encoder through torch vs ONNX fp32 vs ONNX int8: latency, batch throughput, cosine vs torch."""
    figures = bench_encoder(settings, queries, batches, echo=click.echo)
    write_json(json_file, figures)


@bench.command("rerank")
@click.option("--catalogue", default="homedepot", show_default=True)
@click.option("--judgments", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Validation judgments (never the re-ranker's training queries).")
@click.option("--depths", default="5,10,20,30,50", show_default=True, help="rerank_depth values to compare.")
@click.option("--variants", default="fp32,int8", show_default=True,
              help="ONNX variants of the cross-encoder to compare (each run whatever its card says).")
@click.option("--limit-queries", type=int, help="A deterministic sample of N judged queries.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False))
@click.pass_obj
@fail_cleanly
def bench_rerank_cmd(settings: Settings, catalogue: str, judgments: str, depths: str, variants: str,
                     limit_queries: int | None, json_file: str | None) -> None:
    """hybrid-rerank against rerank_depth: nDCG@10, cost per query and first-page change beside hybrid."""
    try:
        values = sorted({int(d) for d in depths.split(",") if d.strip()})
    except ValueError:
        raise click.BadParameter(f"comma-separated whole numbers, got {depths!r}", param_hint="--depths") from None
    if not values or min(values) < 1:
        raise click.BadParameter("give at least one depth, each 1 or more", param_hint="--depths")
    chosen = [v.strip() for v in variants.split(",") if v.strip()]
    if not chosen or set(chosen) - {"fp32", "int8"}:
        raise click.BadParameter(f"comma-separated fp32, int8; got {variants!r}", param_hint="--variants")
    figures = bench_rerank(settings, catalogue, judgments, values, limit_queries, echo=click.echo, variants=chosen)
    write_json(json_file, figures)


@bench.command("faults")
@click.option("--limit", type=int, default=600, show_default=True, help="Products ingested through each ingest fault.")
@click.option("--clients", type=int, default=4, show_default=True, help="Shoppers searching during the outage and the swap.")
@click.option("--events", type=int, default=20, show_default=True, help="Events posted during the outage.")
@click.option("--down-seconds", type=float, default=3.0, show_default=True, help="How long OpenSearch stays stopped under load.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), help="Write the figures to this file.")
@click.pass_obj
@fail_cleanly
def bench_faults_cmd(settings: Settings, limit: int, clients: int, events: int, down_seconds: float,
                     json_file: str | None) -> None:
    """Worker kill and OpenSearch restart mid-ingest, OpenSearch restart under queries and events, alias swap under load: lost, duplicated, errors, seconds to recover. Stops and starts this home's own services."""
    if limit < 1 or clients < 1 or events < 0 or down_seconds < 0:
        raise click.BadParameter("--limit and --clients at least 1, --events and --down-seconds at least 0")
    figures = bench_faults(settings, limit, clients, events, down_seconds, echo=click.echo)
    print_json(figures)
    write_json(json_file, figures)


@bench.command("ranker")
@click.option("--catalogue", default="homedepot", show_default=True)
@click.option("--queries", type=int, default=300, show_default=True, help="Real queries to time.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False))
@click.pass_obj
@fail_cleanly
def bench_ranker_cmd(settings: Settings, catalogue: str, queries: int, json_file: str | None) -> None:
    """The learned ranker's cost per query (features, predict) and learned vs hybrid, side by side."""
    figures = bench_ranker(settings, catalogue, queries, echo=click.echo)
    write_json(json_file, figures)


# --- simulate and profiles -------------------------------------------------------------------
