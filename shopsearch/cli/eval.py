"""``shopsearch eval``: relevance on human judgments through the production query path.

Errors are translated by ``cli/errors.py``'s :func:`fail_cleanly`, the CLI's one boundary.
"""

from __future__ import annotations

import concurrent.futures
import csv
import json
from pathlib import Path

import click
from tqdm import tqdm

from shopsearch.cli.errors import fail_cleanly
from shopsearch.cluster import connect
from shopsearch.encoders.text import text_encoder
from shopsearch.evaluation.metrics import ndcg_at_k
from shopsearch.evaluation.report import write_report
from shopsearch.evaluation.run import evaluate, load_judgments, score_pairs, select_queries, split_queries
from shopsearch.evaluation.tune_fields import (QueryScores, field_scores, field_weights, fields_with_data, grid,
                                               hybrid_ranking, mean_ndcg, spec)
from shopsearch.ops.eval_personalisation import run
from shopsearch.query.build import parse_text_fields
from shopsearch.query.fuse import rank
from shopsearch.query.searcher import STRATEGIES, SearchRequest, Searcher
from shopsearch.settings import Settings


def _searcher(settings: Settings):
    # identical requests are not answered from the result cache: each query is measured for real
    return Searcher(connect(settings, timeout=120), settings.replace(result_cache_seconds=0))


def _bar(total_label: str):
    bar = tqdm(total=0, unit="search", desc=total_label)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)
    return bar, progress


@click.group("eval")
def eval_group() -> None:
    """Measure relevance on human judgments, the same way every time."""


@eval_group.command("search")
@click.option("--catalogue", required=True)
@click.option("--judgments", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--strategies", default="bm25,dense,hybrid,hybrid-rrf", show_default=True)
@click.option("--limit-queries", type=int, help="A deterministic sample of N queries.")
@click.option("--index", help="Evaluate this version of the catalogue (e.g. a candidate not yet behind the alias).")
@click.option("--json", "json_file", type=click.Path(dir_okay=False))
@click.option("--report", "report_dir", type=click.Path(file_okay=False))
@click.pass_obj
@fail_cleanly
def eval_search(settings: Settings, catalogue: str, judgments: str, strategies: str, limit_queries: int | None,
                index: str | None, json_file: str | None, report_dir: str | None) -> None:
    """Run every judged query once per strategy against the whole catalogue and score it."""
    names = [s.strip() for s in strategies.split(",") if s.strip()]
    unknown = [s for s in names if s not in STRATEGIES]
    if unknown:
        raise click.ClickException(f"unknown strategies {unknown}; known: {', '.join(STRATEGIES)}")
    searcher = _searcher(settings)
    searcher.pinned(catalogue, index) if index else searcher.live(catalogue)  # no such catalogue: fail_cleanly

    def search(query: str, strategy: str) -> list[str]:
        return [h["id"] for h in searcher.search(catalogue, SearchRequest(q=query, size=100, strategy=strategy), index)["hits"]]

    judged = load_judgments(judgments)
    bar, progress = _bar("eval")
    try:
        result = evaluate(judged, names, search, limit_queries=limit_queries, progress=progress)
    finally:
        bar.close()
    doc = result.to_json(catalogue, judgments)
    _print_table(doc)
    if json_file:
        Path(json_file).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    if report_dir:
        titles = _titles(searcher, catalogue, result)
        click.echo(f"report: {write_report(result, report_dir, catalogue, titles=titles)}")


@eval_group.command("split")
@click.option("--judgments", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--valid-fraction", default=0.3, show_default=True, type=click.FloatRange(0, 1))
@click.option("--seed", default=0, show_default=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
def eval_split(judgments: str, valid_fraction: float, seed: int, out_dir: str) -> None:
    """Split a judgments file by query into train.tsv and valid.tsv (no query in both).

    Clicks are simulated from train.tsv only; the fine-tuning gate and the final evaluation read
    valid.tsv, so a model is never judged on the queries it learnt from.
    """
    with open(judgments, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader)
        rows = list(reader)
    valid, _ = split_queries((r[0] for r in rows), valid_fraction, seed)
    valid_set = set(valid)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, keep in (("train.tsv", lambda q: q not in valid_set), ("valid.tsv", lambda q: q in valid_set)):
        part = [r for r in rows if keep(r[0])]
        with open(out / name, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(header)
            w.writerows(part)
        click.echo(f"{out / name}: {len({r[0] for r in part})} queries, {len(part)} judgments")


@eval_group.command("personalisation")
@click.option("--orders", "orders_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Instacart order_lines.tsv (products.tsv and aisles.tsv beside it).")
@click.option("--catalogue", default="instacart", show_default=True)
@click.option("--limit-users", type=int, help="The first N shoppers only (a quick run).")
@click.option("--ablation", is_flag=True, help="Also score with each profile feature switched off.")
@click.option("--learned/--no-learned", default=True, show_default=True,
              help="Also train the shopper ranker on the orders before each shopper's last and score it.")
@click.option("--proxy", help="Send events and searches to a running proxy (URL) instead of the in-process middleware.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False))
@click.pass_obj
@fail_cleanly
def eval_personalisation(settings: Settings, orders_file: str, catalogue: str, limit_users: int | None, ablation: bool,
                         learned: bool, proxy: str | None, json_file: str | None) -> None:
    """Replay real order histories as purchase events and score personalised search on the last orders."""
    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage) or bars.setdefault(stage, tqdm(total=total, desc=stage, unit="step"))
        bar.update(done - bar.n)
    try:
        doc = run(settings, orders_file, catalogue, proxy=proxy, limit_users=limit_users, ablation=ablation,
                  learned=learned, progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
    click.echo(f"users {doc['users']}, targets {doc['targets']}")
    click.echo("| ranking | MRR | HitRate@10 |\n|---|---|---|")
    rows = [("unpersonalised", doc["unpersonalised"])]
    rows += [("reference: buy again (own count, then popularity)", doc["buy_again"])] if "buy_again" in doc else []
    rows += [("personalised (script)", doc["personalised"])]
    rows += [("personalised (learned shopper ranker)", doc["learned"])] if "learned" in doc else []
    rows += list(doc.get("ablation", {}).items())
    for name, m in rows:
        click.echo(f"| {name} | {m['mrr']:.4f} | {m['hit@10']:.4f} |")
    click.echo(f"personalised / unpersonalised MRR: {doc['ratio_mrr']}")
    if "learned" in doc:
        click.echo(f"learned / unpersonalised MRR: {doc['ratio_mrr_learned']}; shopper ranker in "
                   f"{doc['shopper_ranker']['path']}")
    if json_file:
        Path(json_file).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def _titles(searcher, catalogue: str, result) -> dict[str, str]:
    """Titles of the products the report shows (only those, fetched in one mget)."""
    wanted = set()
    for per_strategy in result.top.values():
        for ids in per_strategy:
            wanted.update(ids[:5])
    if not wanted:
        return {}
    docs = searcher.client.mget(index=catalogue, body={"ids": sorted(wanted)}, _source_includes=["title"])["docs"]
    return {d["_id"]: d["_source"]["title"] for d in docs if d.get("found")}


def _print_table(doc: dict) -> None:
    click.echo(f"\n{doc['catalogue']}: {doc['queries']} queries scored")
    click.echo(f"{'strategy':12} {'nDCG@10':>8} {'cond.nDCG':>9} {'R@100':>7} {'MRR':>7} {'p50ms':>7} {'p95ms':>7}  nDCG@10 vs bm25 [95% CI]")
    for name, m in doc["strategies"].items():
        ratio = m["vs_bm25"].get("ndcg@10") or [None, None, None]
        ci = f"{ratio[0]:.3f} [{ratio[1]:.3f}, {ratio[2]:.3f}]" if ratio[0] is not None else "-"
        click.echo(f"{name:12} {m['ndcg@10']:8.4f} {m['condensed_ndcg@10']:9.4f} {m['recall@100']:7.4f} {m['mrr']:7.4f} "
                   f"{m['p50_ms']:7.1f} {m['p95_ms']:7.1f}  {ci}")


@eval_group.command("pairs")
@click.option("--pairs", "pairs_file", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--model", help="Text model (default: the text_model setting).")
@click.pass_obj
@fail_cleanly
def eval_pairs(settings: Settings, pairs_file: str, model: str | None) -> None:
    """How well an encoder orders real query-title pairs by human label (AUC 2 vs 0, Spearman)."""
    encoder = text_encoder(settings.replace(text_model=model) if model else settings)
    result = score_pairs(pairs_file, encoder.encode)
    click.echo(json.dumps({"model": encoder.version, **result}, indent=2))


@eval_group.command("tune")
@click.option("--catalogue", required=True)
@click.option("--judgments", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--validation-fraction", type=float, default=0.5, show_default=True)
@click.option("--limit-queries", type=int, help="A deterministic sample of N queries (before the split).")
@click.pass_obj
@fail_cleanly
def eval_tune(settings: Settings, catalogue: str, judgments: str, validation_fraction: float, limit_queries: int | None) -> None:
    """Search fusion settings (method, vector weight, k) on one part of the judgments, validate on the other.

    Each query's BM25 and k-NN candidates are retrieved once, through the shopper search's own
    retrieval, then fused offline for every setting with the same fusion functions. Only the
    judgments file given is read.
    """
    judged = load_judgments(judgments)
    queries = select_queries(judged, limit_queries)
    validation, tuning = split_queries(queries, validation_fraction)
    searcher = _searcher(settings)
    depth = 200
    candidates = {}
    bar, progress = _bar("retrieve")
    try:
        for n, q in enumerate(tuning + validation, 1):
            candidates[q] = searcher.candidates(catalogue, q, depth)
            progress(n, len(tuning) + len(validation))
    finally:
        bar.close()

    def score(part, method, weight, k):
        values = []
        for q in part:
            bm25, knn = candidates[q]
            ranked = [d for d, _ in rank(method, bm25[:k], knn[:k], weight, settings.rrf_k)]
            v = ndcg_at_k(ranked, judged[q], 10)
            if v is not None:
                values.append(v)
        return sum(values) / max(len(values), 1)

    grid = [(m, w, k) for m in ("minmax", "rrf") for w in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9) for k in (50, 100, 200)]
    results = sorted(((score(tuning, *g), g) for g in grid), reverse=True)
    click.echo(f"{len(tuning)} tuning queries, {len(validation)} validation queries; nDCG@10 on the tuning part:")
    for value, (m, w, k) in results[:8]:
        click.echo(f"  fusion={m:6} vector_weight={w:.1f} k={k:<3}  {value:.4f}")
    value, (m, w, k) = results[0]
    click.echo(f"best: SHOPSEARCH_FUSION={m} SHOPSEARCH_VECTOR_WEIGHT={w} SHOPSEARCH_CANDIDATE_DEPTH={k}")
    click.echo(f"  tuning nDCG@10 {value:.4f}; validation nDCG@10 {score(validation, m, w, k):.4f} "
               f"(current settings: {score(validation, settings.fusion, settings.vector_weight, settings.candidate_depth):.4f}; "
               f"k-NN alone: {score(validation, 'dense', 1.0, k):.4f}; lexical alone: {score(validation, 'minmax', 0.0, k):.4f})")


@eval_group.command("fields")
@click.option("--catalogue", required=True)
@click.option("--judgments", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The tuning part only (e.g. train.tsv of `eval split`); evaluate the choice on the other part.")
@click.option("--tune", "tuned", default="colour.text,material.text", show_default=True,
              help="Fields whose weight is searched; the others keep their text_fields weight.")
@click.option("--weights", default="0,0.25,0.5,1,2,3", show_default=True, help="Weights tried for each tuned field.")
@click.option("--tie-breakers", default="0,0.1,0.3", show_default=True)
@click.option("--limit-queries", type=int, help="A deterministic sample of N queries.")
@click.pass_obj
@fail_cleanly
def eval_fields(settings: Settings, catalogue: str, judgments: str, tuned: str, weights: str, tie_breakers: str,
                limit_queries: int | None) -> None:
    """Tune the BM25 field weights (and tie breaker) of the hybrid search on judgments; print the grid.

    Each query's per-field BM25 scores and k-NN list are fetched once, then every setting is
    scored offline as the hybrid pipeline fuses (``evaluation/tune_fields.py``).
    """
    tuned_fields = [f.strip() for f in tuned.split(",") if f.strip()]
    try:
        values = [float(v) for v in weights.split(",")]
        ties = [float(v) for v in tie_breakers.split(",")]
    except ValueError:
        raise click.ClickException("--weights and --tie-breakers are comma-separated numbers") from None
    base = field_weights(parse_text_fields(settings.text_fields))
    names = list(dict.fromkeys([*base, *tuned_fields]))
    judged = load_judgments(judgments)
    queries = select_queries(judged, limit_queries)
    searcher = _searcher(settings.replace(typo_tolerance="off"))
    live = searcher.live(catalogue)
    depth = settings.candidate_depth
    present = fields_with_data(searcher.client, live.index, names)

    def fetch(q: str) -> QueryScores:
        got = searcher.retrieve(live, q, depth, [])
        bool_query = got.bodies[0]["query"]["bool"]
        text = bool_query["must"][0]["multi_match"]["query"]
        fields, boosts, sources = field_scores(searcher.client, live.index, text, present, bool_query["filter"],
                                               bool_query.get("should", []), depth)
        return QueryScores(fields, boosts, got.knn, sources)
    bar, progress = _bar("fields")
    try:
        # a few queries in flight: each waits on the cluster most of its time
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            per_query = {}
            for n, (q, scores) in enumerate(zip(queries, pool.map(fetch, queries)), 1):
                per_query[q] = scores
                progress(n, len(queries))
    finally:
        bar.close()
    click.echo(f"fields with data in {live.index}: {', '.join(present)}")

    def score(w, tie):
        return mean_ndcg(per_query, judged, lambda s: hybrid_ranking(s, w, tie, depth, settings.vector_weight,
                                                                      settings.popularity_weight))
    results = sorted(((score(w, t), i, w, t) for i, (w, t) in enumerate(grid(base, tuned_fields, values, ties))),
                     key=lambda r: (-r[0], r[1]))
    click.echo(f"{len(per_query)} queries; hybrid nDCG@10 (vector_weight {settings.vector_weight}) per setting, best first:")
    click.echo("  " + "  ".join(f"{f:>14}" for f in tuned_fields) + "     tie  nDCG@10")
    for value, _, w, t in results:
        click.echo("  " + "  ".join(f"{w[f]:14g}" for f in tuned_fields) + f"  {t:6g}  {value:.4f}")
    without = {**base, **{f: 0.0 for f in tuned_fields}}
    click.echo(f"current text_fields: {score(base, settings.text_tie_breaker):.4f}; "
               f"without the tuned fields: {score(without, 0.0):.4f}")
    value, _, w, t = results[0]
    click.echo(f"best: SHOPSEARCH_TEXT_FIELDS='{spec(w)}' SHOPSEARCH_TEXT_TIE_BREAKER={t:g}  ({value:.4f})")
