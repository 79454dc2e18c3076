"""The ``shopsearch`` command line. Errors become ``click.ClickException`` with a fix-it hint here only."""

from __future__ import annotations

import json
import sys

import click
from tqdm import tqdm

from shopsearch import local_secrets
from shopsearch.cli.admin import register as register_admin
from shopsearch.cli.errors import fail_cleanly, message_for
from shopsearch.cli.eval import eval_group
from shopsearch.cli.train import ranker_group, train_cmd
from shopsearch.cluster import connect
from shopsearch.index import api_keys
from shopsearch.index.catalogue import create_catalogue_version
from shopsearch.index.versions import delete_version, list_versions, switch_alias
from shopsearch.ops import services as services_mod
from shopsearch.ingest import pipeline
from shopsearch.ingest.in_process import InProcessRunner
from shopsearch.ops.bench_encoder import bench_encoder
from shopsearch.ops.bench_faults import bench_faults
from shopsearch.ops.bench_ingest import RUNNERS, bench_ingest
from shopsearch.ops.bench_query import MODES as BENCH_MODES, bench_query
from shopsearch.ops.bench_versions import bench_versions
from shopsearch.ops.bench_ranker import bench_ranker
from shopsearch.ops.bench_rerank import bench_rerank
from shopsearch.ops import serve
from shopsearch.ops.check_security import check_security, summary_lines
from shopsearch.ops.demo import run_demo
from shopsearch.ops.simulate import simulate_clicks
from shopsearch.settings import SETTINGS, Settings, SettingsError, check_secrets, load_settings, settings_table_markdown
from shopsearch.workers.app import make_app
from shopsearch.workers.dispatch import run_ingest


@click.group()
@click.option("--config", type=click.Path(exists=True, dir_okay=False), help="TOML settings file (else SHOPSEARCH_CONFIG).")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """shopsearch: an AI search layer in front of your OpenSearch."""
    try:
        ctx.obj = load_settings(config_file=config)
    except SettingsError as e:  # the group runs before any command's fail_cleanly
        raise click.ClickException(message_for(e)) from None


pass_settings = click.make_pass_decorator(Settings)


def _print(data) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


# --- settings -------------------------------------------------------------------------------

@main.command("settings")
@click.option("--markdown", is_flag=True, help="Print the README's settings table.")
@pass_settings
def settings_cmd(settings: Settings, markdown: bool) -> None:
    """Show every setting with its current value."""
    if markdown:
        click.echo(settings_table_markdown())
        return
    for s in SETTINGS:
        click.echo(f"{s.name:22} {settings.values[s.name]!s:40} {s.env}")


# --- services -------------------------------------------------------------------------------

@main.group()
def services() -> None:
    """Start, stop and inspect the project's own OpenSearch, Redis and Celery worker."""


_ONLY = click.argument("names", nargs=-1, type=click.Choice([n for n, _ in services_mod.ORDER]))


@services.command("up")
@_ONLY
@pass_settings
@fail_cleanly
def services_up(settings: Settings, names: tuple[str, ...]) -> None:
    """Start the services (idempotent) and print their status."""
    _print(services_mod.up(settings, names))


@services.command("down")
@_ONLY
@pass_settings
def services_down(settings: Settings, names: tuple[str, ...]) -> None:
    """Stop the services the project started."""
    _print(services_mod.down(settings, names))


@services.command("status")
@pass_settings
def services_status(settings: Settings) -> None:
    """Report each service; exit 1 when one is not running."""
    st = services_mod.status(settings)
    _print(st)
    sys.exit(0 if all(s.get("running") for s in st.values()) else 1)


# --- index ----------------------------------------------------------------------------------

@main.group()
def index() -> None:
    """Versioned catalogue indices behind an alias."""


@index.command("create")
@click.argument("catalogue")
@click.option("--model", help="Text model for this version (default: the text_model setting).")
@click.option("--no-switch", is_flag=True, help="Create the version without pointing the alias at it.")
@pass_settings
@fail_cleanly
def index_create(settings: Settings, catalogue: str, model: str | None, no_switch: bool) -> None:
    """Create <catalogue>-v<N> from mappings/products.json and point <catalogue> at it."""
    name = create_catalogue_version(connect(settings), settings, catalogue, model=model, switch=not no_switch)
    click.echo(name)


@index.command("list")
@click.argument("catalogue")
@pass_settings
@fail_cleanly
def index_list(settings: Settings, catalogue: str) -> None:
    """List the versions of a catalogue; * marks the live one."""
    for v in list_versions(connect(settings), catalogue):
        click.echo(f"{'*' if v.live else ' '} {v.index:30} docs={v.docs:<9} model={v.meta.get('model_version', '?')}")


@index.command("switch")
@click.argument("catalogue")
@click.argument("index_name")
@pass_settings
@fail_cleanly
def index_switch(settings: Settings, catalogue: str, index_name: str) -> None:
    """Point the alias <catalogue> at INDEX_NAME atomically."""
    previous = switch_alias(connect(settings), catalogue, index_name)
    click.echo(f"{catalogue}: {previous} -> {index_name}")


@index.command("delete")
@click.argument("catalogue")
@click.argument("index_name")
@click.option("--force", is_flag=True, help="Also delete the live version.")
@pass_settings
@fail_cleanly
def index_delete(settings: Settings, catalogue: str, index_name: str, force: bool) -> None:
    """Delete one version of a catalogue (not the live one unless --force)."""
    delete_version(connect(settings), catalogue, index_name, force=force)
    click.echo(f"deleted {index_name}")


# --- ingest ---------------------------------------------------------------------------------

@main.command("ingest")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--catalogue", required=True, help="Catalogue (alias) to ingest into; created when missing.")
@click.option("--mapping", help="Built-in mapping name or a JSON mapping file (default: by catalogue name).")
@click.option("--images", type=click.Path(exists=True, file_okay=False), help="Directory image paths are relative to.")
@click.option("--limit", type=int, help="Read at most N records.")
@click.option("--chunk-size", type=int, default=256, show_default=True, help="Items per chunk.")
@click.option("--in-process", is_flag=True, help="Encode and write in this process (an encode thread feeding the bulk "
              "writer) instead of on the Celery workers.")
@pass_settings
@fail_cleanly
def ingest_cmd(settings: Settings, path: str, catalogue: str, mapping: str | None, images: str | None,
               limit: int | None, chunk_size: int, in_process: bool) -> None:
    """Clean, encode and index a catalogue file through the Celery workers (or in this process)."""

    bar = tqdm(total=0, unit="item", desc="encode+index")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        if in_process:
            summary = pipeline.run_ingest(settings, path, catalogue, mapping, images, limit, chunk_size,
                                          on_progress=progress, runner=InProcessRunner(settings, connect(settings, timeout=120)))
        else:
            summary = run_ingest(settings, path, catalogue, mapping, images, limit, chunk_size, on_progress=progress)
    finally:
        bar.close()
    rows = [("read", summary.read), ("accepted", summary.accepted),
            *((f"rejected: {r}", n) for r, n in sorted(summary.rejected.items())),
            ("superseded (same id later)", summary.superseded), ("skipped unchanged", summary.skipped_unchanged),
            ("encoded", summary.encoded), ("indexed", summary.indexed), ("failed", len(summary.failed)),
            ("image unreadable (text only)", summary.image_unreadable), ("duplicate groups", summary.duplicate_groups)]
    click.echo(f"\n{summary.catalogue} -> {summary.index} in {summary.seconds}s")
    for name, n in rows:
        click.echo(f"  {name:30} {n:>8}")
    click.echo(f"  dead letters: {summary.dead_letters}")
    sys.exit(0 if summary.complete else 1)


# --- bench --------------------------------------------------------------------------------

def _write_json(json_file: str | None, figures: dict) -> None:
    """A benchmark's figures to ``--json FILE``, when asked for."""
    if json_file:
        with open(json_file, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2)


@main.group()
def bench() -> None:
    """Benchmarks: commands that print figures measured side by side in one run."""


@bench.command("ingest")
@click.option("--catalogue", type=click.Choice(["homedepot", "fashion", "instacart"]), default="homedepot", show_default=True)
@click.option("--limit", type=int, help="Only the first N records.")
@click.option("--keep", is_flag=True, help="Keep the benchmark's index version instead of deleting it.")
@click.option("--runner", type=click.Choice(RUNNERS), default="celery", show_default=True,
              help="Where the pipeline's chunks run: the Celery workers, or this process (encode thread + bulk writer).")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), help="Write the figures to this file.")
@pass_settings
@fail_cleanly
def bench_ingest_cmd(settings: Settings, catalogue: str, limit: int | None, keep: bool, runner: str,
                     json_file: str | None) -> None:
    """Raw encoder vs full pipeline vs unchanged re-ingest (items/s), measured in one run."""
    figures = bench_ingest(settings, catalogue, limit, keep, echo=click.echo, runner=runner)
    _print(figures)
    _write_json(json_file, figures)


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
@pass_settings
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
    _write_json(json_file, figures)


@bench.command("versions")
@click.option("--catalogue", default="homedepot", show_default=True)
@click.argument("version_a")
@click.argument("version_b")
@click.option("--queries", type=int, default=300, show_default=True, help="Real shopper queries, each sent to both.")
@click.option("--depth", type=int, default=100, show_default=True, help="Candidates of the BM25 and k-NN requests.")
@click.option("--rounds", type=int, default=2, show_default=True)
@click.option("--json", "json_file", type=click.Path(dir_okay=False))
@pass_settings
@fail_cleanly
def bench_versions_cmd(settings: Settings, catalogue: str, version_a: str, version_b: str, queries: int, depth: int,
                       rounds: int, json_file: str | None) -> None:
    """The same search requests on two index versions, alternately: median latency of each, and the ratio A / B."""
    figures = bench_versions(settings, catalogue, version_a, version_b, queries, depth, rounds, echo=click.echo)
    _write_json(json_file, figures)


@bench.command("encoder")
@click.option("--queries", type=int, default=300, show_default=True, help="Distinct Home Depot queries timed one by one.")
@click.option("--batches", type=int, default=8, show_default=True, help="Batches of batch_size product texts for throughput.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False))
@pass_settings
@fail_cleanly
def bench_encoder_cmd(settings: Settings, queries: int, batches: int, json_file: str | None) -> None:
    """Query encoder through torch vs ONNX fp32 vs ONNX int8: latency, batch throughput, cosine vs torch."""
    figures = bench_encoder(settings, queries, batches, echo=click.echo)
    _write_json(json_file, figures)


@bench.command("rerank")
@click.option("--catalogue", default="homedepot", show_default=True)
@click.option("--judgments", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Validation judgments (never the re-ranker's training queries).")
@click.option("--depths", default="5,10,20,30,50", show_default=True, help="rerank_depth values to compare.")
@click.option("--limit-queries", type=int, help="A deterministic sample of N judged queries.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False))
@pass_settings
@fail_cleanly
def bench_rerank_cmd(settings: Settings, catalogue: str, judgments: str, depths: str, limit_queries: int | None,
                     json_file: str | None) -> None:
    """hybrid-rerank against rerank_depth: nDCG@10, cost per query and first-page change beside hybrid."""
    try:
        values = sorted({int(d) for d in depths.split(",") if d.strip()})
    except ValueError:
        raise click.BadParameter(f"comma-separated whole numbers, got {depths!r}", param_hint="--depths") from None
    if not values or min(values) < 1:
        raise click.BadParameter("give at least one depth, each 1 or more", param_hint="--depths")
    figures = bench_rerank(settings, catalogue, judgments, values, limit_queries, echo=click.echo)
    _write_json(json_file, figures)


@bench.command("faults")
@click.option("--limit", type=int, default=600, show_default=True, help="Products ingested through each ingest fault.")
@click.option("--clients", type=int, default=4, show_default=True, help="Shoppers searching during the outage and the swap.")
@click.option("--events", type=int, default=20, show_default=True, help="Events posted during the outage.")
@click.option("--down-seconds", type=float, default=3.0, show_default=True, help="How long OpenSearch stays stopped under load.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), help="Write the figures to this file.")
@pass_settings
@fail_cleanly
def bench_faults_cmd(settings: Settings, limit: int, clients: int, events: int, down_seconds: float,
                     json_file: str | None) -> None:
    """Worker kill and OpenSearch restart mid-ingest, OpenSearch restart under queries and events, alias swap under load: lost, duplicated, errors, seconds to recover. Stops and starts this home's own services."""
    if limit < 1 or clients < 1 or events < 0 or down_seconds < 0:
        raise click.BadParameter("--limit and --clients at least 1, --events and --down-seconds at least 0")
    figures = bench_faults(settings, limit, clients, events, down_seconds, echo=click.echo)
    _print(figures)
    _write_json(json_file, figures)


@bench.command("ranker")
@click.option("--catalogue", default="homedepot", show_default=True)
@click.option("--queries", type=int, default=300, show_default=True, help="Real queries to time.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False))
@pass_settings
@fail_cleanly
def bench_ranker_cmd(settings: Settings, catalogue: str, queries: int, json_file: str | None) -> None:
    """The learned ranker's cost per query (features, predict) and learned vs hybrid, side by side."""
    figures = bench_ranker(settings, catalogue, queries, echo=click.echo)
    _write_json(json_file, figures)


# --- simulate and profiles -------------------------------------------------------------------

@main.group()
def simulate() -> None:
    """Simulated shoppers, for training and tests (never for evaluation)."""


@simulate.command("clicks")
@click.option("--catalogue", required=True)
@click.option("--judgments", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--sessions", type=int, default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--proxy", help="URL of a running proxy (default: the middleware in-process).")
@pass_settings
@fail_cleanly
def simulate_clicks_cmd(settings: Settings, catalogue: str, judgments: str, sessions: int, seed: int, proxy: str | None) -> None:
    """Send judged queries through the shopper search and post clicks from a position-based model."""

    with tqdm(total=sessions, unit="session") as bar:
        counts = simulate_clicks(settings, catalogue, judgments, sessions, seed, proxy,
                                 progress=lambda done, total: bar.update(done - bar.n))
    _print(counts)


@main.group()
def profiles() -> None:
    """Shopper profiles built from click logs."""


@profiles.command("update", help="Update shopper profiles and product popularity from click logs.")
@click.option("--catalogue", required=True)
@click.option("--since", help="Only shoppers with events received after this ISO time.")
@pass_settings
@fail_cleanly
def profiles_update_cmd(settings: Settings, catalogue: str, since: str | None) -> None:
    """Update the profiles of shoppers with new events, and product popularity (Celery tasks)."""
    app = make_app(settings)
    _print({"profiles": app.send_task("shopsearch.profiles.update", args=[catalogue, None, since]).get(timeout=3600),
            "popularity": app.send_task("shopsearch.profiles.popularity", args=[catalogue]).get(timeout=3600)})


# --- secrets --------------------------------------------------------------------------------

@main.group("secrets")
def secrets_group() -> None:
    """The install's own pseudonym salt and admin token."""


@secrets_group.command("init")
@pass_settings
@fail_cleanly
def secrets_init(settings: Settings) -> None:
    """Make this install's secrets (random; kept if they exist) and print where they are."""
    local_secrets.create(settings.home)
    click.echo(f"{local_secrets.path(settings.home)} (mode 0600): pseudonym_salt and admin_token; the proxy, the "
               "workers and the CLI of this install read it. SHOPSEARCH_PSEUDONYM_SALT / SHOPSEARCH_ADMIN_TOKEN win.")


# --- API keys -------------------------------------------------------------------------------

@main.group("keys")
def keys_group() -> None:
    """API keys with roles (read, write, admin) for the internal face, kept in the cluster."""


@keys_group.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(api_keys.ROLES), required=True,
              help="read: read and search APIs on any index but the project's own; write: and document writes; "
                   "admin: what the admin token opens.")
@pass_settings
@fail_cleanly
def keys_create(settings: Settings, name: str, role: str) -> None:
    """Make a key; it is printed once (only its hash is kept). Send it as X-Api-Key or 'Authorization: ApiKey <key>'."""
    key, secret = api_keys.create_key(connect(settings), settings, name, role)
    click.echo(secret)
    click.echo(f"key {key.name!r} (role {key.role}, id {key.key_id}): shown once, keep it now", err=True)


@keys_group.command("list")
@pass_settings
@fail_cleanly
def keys_list(settings: Settings) -> None:
    """The keys (names, roles, ids, creation times; never the keys themselves)."""
    for key in api_keys.list_keys(connect(settings), settings):
        click.echo(f"{key.name}\t{key.role}\t{key.key_id}\t{key.created}")


@keys_group.command("revoke")
@click.argument("name")
@pass_settings
@fail_cleanly
def keys_revoke(settings: Settings, name: str) -> None:
    """Delete the key named NAME (proxies stop taking it within api_key_cache_seconds)."""
    n = api_keys.revoke_key(connect(settings), settings, name)
    click.echo(f"revoked {n} key(s) named {name!r}")


# --- demo -----------------------------------------------------------------------------------

@main.command("demo")
@click.option("--no-serve", is_flag=True, help="Exit after the example queries instead of serving.")
@click.option("--all-products", is_flag=True, help="Ingest all 44,446 fashion products (default: those with pictures "
              "and 100 of each article type).")
@pass_settings
@fail_cleanly
def demo_cmd(settings: Settings, no_serve: bool, all_products: bool) -> None:
    """Start everything, ingest the fashion sample, serve the proxy and the storefront, show example queries."""
    run_demo(settings, serve=not no_serve, everything=all_products)


# --- serve ----------------------------------------------------------------------------------

@main.command("serve")
@click.option("--face", "faces", type=click.Choice(["public", "internal", "both"]), default="both", show_default=True,
              help="Which face to serve: the public shopper API, the internal OpenSearch-compatible face, or both.")
@pass_settings
@fail_cleanly
def serve_cmd(settings: Settings, faces: str) -> None:
    """Serve the middleware: the public face on proxy_host:proxy_port, the internal face on
    internal_host:internal_port (each a gunicorn server; Ctrl-C or SIGTERM stops both)."""
    check_secrets(settings)  # refuse at once, naming the setting, rather than in every worker
    running = serve.start(settings, serve.FACES if faces == "both" else (faces,))
    for face in running:
        click.echo(f"{face.name} face: {face.url}")
    raise SystemExit(serve.serve_forever(running))


# --- check security -------------------------------------------------------------------------

@main.group("check")
def check_group() -> None:
    """Checks a shop runs against its own deployment."""


@check_group.command("security")
@click.option("--public", "public", default=None, help="The public face's URL (default: proxy_host:proxy_port).")
@click.option("--internal", "internal", default=None,
              help="The internal face's URL (default: internal_host:internal_port).")
@click.option("--catalogue", default=None, help="A catalogue the faces serve (fuzzed paths name it; events follow a search of it).")
@click.option("--fuzz", "fuzz_requests", type=click.IntRange(0), default=10_000, show_default=True,
              help="Requests generated from the faces' OpenAPI documents, shared among them.")
@click.option("--events", type=click.IntRange(0), default=200, show_default=True,
              help="Click events posted with a search's event token (each accepted one must be stored).")
@click.option("--admin-token", default=None, help="Lets the check read the cluster's state and count stored events "
              "through the internal face (default: the admin_token setting). Never sent with the probes.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the JSON report to this file.")
@pass_settings
@fail_cleanly
def check_security_cmd(settings: Settings, public, internal, catalogue, fuzz_requests, events, admin_token, seed,
                       as_json, out) -> None:
    """Probe the faces as an attacker would: path tricks, admin actions without a credential,
    fuzzed requests from the OpenAPI documents, spoofed and real events. Exit 1 on any finding."""
    public = public or f"http://{settings.proxy_host}:{settings.proxy_port}"
    internal = internal or f"http://{settings.internal_host}:{settings.internal_port}"
    report = check_security(public, internal, fuzz_requests, catalogue, admin_token or settings.admin_token or None,
                            events, seed, echo=lambda line: click.echo(line, err=True))
    if out:
        _write_json(out, report)
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        for line in summary_lines(report):
            click.echo(line)
    if not report["ok"]:
        raise SystemExit(1)


main.add_command(eval_group)
main.add_command(train_cmd)
main.add_command(ranker_group)
register_admin(main)

if __name__ == "__main__":
    main()
