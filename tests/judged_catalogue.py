"""A small Home Depot test catalogue: the products judged for some real queries, and 50 others."""

import csv
import uuid

from shopsearch.workers.dispatch import run_ingest

from .conftest import DATA


def _read(path):
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        return next(reader), list(reader)


def judged_queries(start: int, step: int, n: int = 40) -> tuple[list[str], dict[str, dict[str, float]]]:
    """``n`` real judged queries spread over the alphabet (every ``step``-th from ``start``), and their judgments."""
    _, rows = _read(DATA / "homedepot" / "judgments.tsv")
    queries = sorted({r[0] for r in rows})[start::step][:n]
    chosen, judgments = set(queries), {}
    for q, pid, rel in rows:
        if q in chosen:
            judgments.setdefault(q, {})[pid] = float(rel)
    return queries, judgments


def ingest_judged_catalogue(settings, tmp, judgments: dict, prefix: str) -> str:
    """Ingest the judged products and the catalogue's first 50 through the real workers; the catalogue's name."""
    wanted = {d for rated in judgments.values() for d in rated}
    header, products = _read(DATA / "homedepot" / "products.tsv")
    with open(tmp / "products.tsv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        w.writerows(r for n, r in enumerate(products) if r[0] in wanted or n < 50)
    for side in ("colors.tsv", "materials.tsv"):  # the homedepot mapping joins them (read in place)
        (tmp / side).symlink_to(DATA / "homedepot" / side)
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    assert run_ingest(settings, tmp / "products.tsv", name, mapping="homedepot").complete
    return name
