"""The ``shopsearch`` command line. Errors become ``click.ClickException`` with a fix-it hint here only."""

from __future__ import annotations

import json
import sys

import click
from tqdm import tqdm

from shopsearch import local_secrets
from shopsearch.cli.admin import register as register_admin
from shopsearch.cli.bench import bench
from shopsearch.cli.errors import fail_cleanly, message_for
from shopsearch.cli.output import print_json, write_json
from shopsearch.cli.eval import eval_group
from shopsearch.cli.train import ranker_group, train_cmd
from shopsearch.cluster import connect
from shopsearch.index import api_keys
from shopsearch.errors import IndexVersionError
from shopsearch.index.catalogue import create_catalogue_version, merge_segments
from shopsearch.index.versions import delete_version, list_versions, switch_alias
from shopsearch.ops import services as services_mod
from shopsearch.ingest import pipeline
from shopsearch.ingest.in_process import InProcessRunner
from shopsearch.learn.rollout import version_index
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
    print_json(services_mod.up(settings, names))


@services.command("down")
@_ONLY
@pass_settings
def services_down(settings: Settings, names: tuple[str, ...]) -> None:
    """Stop the services the project started."""
    print_json(services_mod.down(settings, names))


@services.command("status")
@pass_settings
def services_status(settings: Settings) -> None:
    """Report each service; exit 1 when one is not running."""
    st = services_mod.status(settings)
    print_json(st)
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
        click.echo(f"{'*' if v.live else ' '} {v.index:30} docs={v.docs:<9} segments={v.segments:<3} "
                   f"size={v.size_bytes / 2**20:.1f}MiB model={v.meta.get('model_version', '?')}")


@index.command("switch")
@click.argument("catalogue")
@click.argument("index_name")
@pass_settings
@fail_cleanly
def index_switch(settings: Settings, catalogue: str, index_name: str) -> None:
    """Point the alias <catalogue> at INDEX_NAME atomically."""
    previous = switch_alias(connect(settings), catalogue, index_name)
    click.echo(f"{catalogue}: {previous} -> {index_name}")


@index.command("merge")
@click.argument("catalogue")
@click.argument("version", required=False)
@click.option("--max-segments", type=click.IntRange(min=1),
              help="Segments per shard to merge to (default: the build_max_segments setting, at least 1).")
@pass_settings
@fail_cleanly
def index_merge(settings: Settings, catalogue: str, version: str | None, max_segments: int | None) -> None:
    """Merge a version (vN, N or <catalogue>-vN; default the live one) to few segments per shard.

    A reindex and a first ingest do this themselves; this is for a version built before they did,
    or one that many small ingests have split. The version keeps serving while it merges.
    """
    client = connect(settings, timeout=120)
    versions = {v.index: v for v in list_versions(client, catalogue)}
    target = version_index(catalogue, version) if version else next((i for i, v in versions.items() if v.live), None)
    known = f"versions: {', '.join(versions) or 'none'}"
    if target is None:
        raise IndexVersionError(f"{catalogue} has no live version; {known}")
    if target not in versions:
        raise IndexVersionError(f"{target} does not exist; {known}")
    merged = merge_segments(client, target, max_segments or max(settings.build_max_segments, 1))
    click.echo(f"{target}: {merged['segments_before']} -> {merged['segments']} segments in {merged['seconds']} s")


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
    print_json(counts)


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
    print_json({"profiles": app.send_task("shopsearch.profiles.update", args=[catalogue, None, since]).get(timeout=3600),
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
        write_json(out, report)
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        for line in summary_lines(report):
            click.echo(line)
    if not report["ok"]:
        raise SystemExit(1)


main.add_command(bench)
main.add_command(eval_group)
main.add_command(train_cmd)
main.add_command(ranker_group)
register_admin(main)

if __name__ == "__main__":
    main()
