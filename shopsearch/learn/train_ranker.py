"""``shopsearch train``: human judgments (and clicks) -> learned ranker -> gate -> served.

Steps, in order, each timed (:data:`STEPS`, name -> function over the run's :class:`Run`):

1. ``split``: the judged queries split by a hash of their text (``evaluation.run.split_queries``,
   the ``shopsearch eval split`` rule: ``valid_fraction`` with ``seed``) into validation and the
   rest; the rest split again (``tune_fraction``, another seed) into tuning and training. Click
   examples (``--clicks-since``, ``learn/training_data.collect``) join the training part as
   judgments (the clicked item rated 2.5, the items skipped above it 1), except for queries
   whose normalised text is a validation query's. ``<version>/ranker-data/valid.tsv`` keeps the
   validation judgments, for ``shopsearch eval search``.
2. with ``encoders`` on, ``encoders`` and ``reindex`` (``learn/train_encoders.py``): a bi-encoder
   and a cross-encoder trained on the *training* queries' judgments (and clicks), registered as
   one encoder version, and the catalogue encoded with the new bi-encoder into a candidate index
   version, not yet live;
3. ``features``: the title statistics of the index the ranker will serve (the candidate with
   ``encoders``, else the live one; ``query/title_bm25.py``), then each training and tuning
   query's candidates through the serving pipeline up to the ranker
   (``ranker.candidate_tables``) on that index;
4. ``fit``: LambdaMART on the training queries, rounds chosen on the tuning queries; saved with
   its model card and the title statistics, and registered (part ``ranker``);
5. ``gate``: on the validation queries, what shoppers get now against ``learned`` with this
   ranker (``gate.compare_ranker``; with ``encoders``, on the candidate index:
   ``gate.compare_candidate``); the decision goes to the registry and the card;
6. ``promote``: a ranker that passed is served for its index (``_meta.ranker``), which makes
   ``learned`` the catalogue's default strategy; with ``encoders`` the candidate index is then
   swapped in behind the alias. A rejected one is left registered, unserved, the alias untouched.
7. with ``encoders`` on, ``rerank_gate``: the new cross-encoder's int8 variant gated against fp32
   on the validation queries, now that it serves (``train_encoders.gate_rerank``); then
   ``query_gate``: the new bi-encoder's int8 query vectors likewise (``train_encoders.gate_query_encoder``).
   Without ``encoders``, ``query_gate`` gates the live bi-encoder's int8 where it has no decision
   yet for its recipe (a fresh install serves fp32 query vectors until one passed), and leaves a
   recorded decision as it is.

Each step's time, the split and the gate's figures go on the ranker's model card and, with
``encoders``, into the encoder version's registry entry.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from shopsearch.errors import InputError
from shopsearch.evaluation.run import Judgments, select_queries, split_queries
from shopsearch.index.versions import live_index
from shopsearch.learn import gate as gating
from shopsearch.learn import ranker as rk
from shopsearch.learn import train_encoders as enc
from shopsearch.learn.registry import ModelRegistry
from shopsearch.learn.training_data import collect as collect_clicks
from shopsearch.query.searcher import Searcher
from shopsearch.query.understand import normalise_query
from shopsearch.settings import Settings

CLICKED_RELEVANCE = 2.5   # a clicked item: between "relevant" and "exact" on the 1-3 scale
SKIPPED_RELEVANCE = 1.0   # an item shown above a click and passed by
TUNE_SEED = 1             # the tuning part is drawn with another seed than validation


@dataclass
class Run:
    """One training run: its inputs, the parts it builds, and what each step recorded."""
    settings: Settings
    client: object
    registry: ModelRegistry
    catalogue: str
    judgments: Judgments
    version: str
    params: dict
    echo: Callable[[str], None] = print
    runner: object = None  # an ingest ``Runner``: the reindex and the profile rebuild go through it
    parts: dict = field(default_factory=dict)
    steps: dict = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.registry.path(self.version)


def click_judgments(examples, exclude: set[str]) -> Judgments:
    """Judgments from click examples (pure): clicked 2.5, skipped above it 1; queries in ``exclude`` left out.

    >>> from shopsearch.learn.training_data import Example
    >>> click_judgments([Example("drill", "a", negative_ids=["b"])], set())
    {'drill': {'a': 2.5, 'b': 1.0}}
    """
    out: Judgments = {}
    for e in examples:
        if e.query in exclude:
            continue
        rated = out.setdefault(e.query, {})
        rated[e.positive_id] = max(rated.get(e.positive_id, 0.0), CLICKED_RELEVANCE)
        for d in e.negative_ids:
            rated.setdefault(d, SKIPPED_RELEVANCE)
    return out


def write_judgments(path: Path, judgments: Judgments) -> None:
    """A judgments TSV (``query``, ``product_uid``, ``relevance``) that ``eval search`` reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["query", "product_uid", "relevance"])
        for q in sorted(judgments):
            for d, r in judgments[q].items():
                w.writerow([q, d, r])


# --- the steps ----------------------------------------------------------------------------------

def split(run: Run) -> dict:
    p = run.params
    queries = select_queries(run.judgments, p["limit_queries"])
    valid, rest = split_queries(queries, p["valid_fraction"], p["seed"])
    tune, train = split_queries(rest, p["tune_fraction"], TUNE_SEED)
    labelled = {q: run.judgments[q] for q in rest}
    clicks = {}
    if p["clicks_since"] is not None:
        data = collect_clicks(run.client, run.settings, run.catalogue, p["clicks_since"] or None, None)
        clicks = click_judgments(data.train + data.valid, {normalise_query(q) for q in valid + tune})
        for q, rated in clicks.items():  # human judgments win where both rate a product
            if q not in labelled:
                train.append(q)
            labelled[q] = {**rated, **labelled.get(q, {})}
        train = sorted(set(train))
    write_judgments(run.home / "ranker-data" / "valid.tsv", {q: run.judgments[q] for q in valid})
    run.parts.update(train=train, tune=tune, valid=valid, labelled=labelled)
    return {"rule": f"sha256(seed, query text): validation fraction {p['valid_fraction']} (seed {p['seed']}), "
                    f"then tuning fraction {p['tune_fraction']} of the rest (seed {TUNE_SEED})",
            "train_queries": len(train), "tune_queries": len(tune), "valid_queries": len(valid),
            "click_queries": len(clicks), "valid_judgments": str(run.home / "ranker-data" / "valid.tsv")}


def features(run: Run) -> dict:
    searcher = Searcher(run.client, run.settings.replace(result_cache_seconds=0))
    wanted = run.parts["train"] + run.parts["tune"]
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.monotonic() - last[0] > 30 or done == total:
            last[0] = time.monotonic()
            run.echo(f"features: {done}/{total} queries")
    index = run.parts.get("index") or live_index(run.client, run.catalogue)  # the one the ranker will serve
    stats = rk.index_title_stats(run.client, index)
    tables = rk.candidate_tables(searcher, run.catalogue, wanted, index=run.parts.get("index"),
                                 threads=run.params["threads"], progress=progress, title_stats=stats)
    run.parts.update(tables=tables, title_stats=stats)
    return {"queries": len(tables), "candidates": sum(len(t.ids) for t in tables.values()), "index": index,
            "title_stats": {"titles": stats.docs, "words": len(stats.df), "avg_words": round(stats.avg_words, 2)}}


def fit(run: Run) -> dict:
    tables, labelled = run.parts["tables"], run.parts["labelled"]
    train = rk.ranking_data({q: tables[q] for q in run.parts["train"]}, labelled)
    tune = rk.ranking_data({q: tables[q] for q in run.parts["tune"]}, labelled)
    if not train.groups:
        raise InputError("no training query returned candidates: is the catalogue indexed?")
    booster, info = rk.train_ranker(train, tune)
    data = {"train": train.summary(), "tune": tune.summary()}
    card = rk.model_card(booster, info, data, run.steps["split"])
    rk.save_ranker(run.registry, run.version, booster, card, run.parts["title_stats"])
    run.registry.register(run.version, base_model="lightgbm-lambdarank", catalogue=run.catalogue, data=data,
                          params=card["params"], metrics={"tune_ndcg@10": info["tune_ndcg@10"]},
                          window={"since": run.params["clicks_since"], "until": None})
    return {**info, "index": run.steps["features"]["index"], "encoder_version": run.parts.get("encoder_version"),
            "top_features": [r["feature"] for r in card["importances"][:8]]}


def gate(run: Run) -> dict:
    valid = {q: run.judgments[q] for q in run.parts["valid"]}
    ranker = rk.load_ranker(run.registry, run.version)
    if run.parts.get("index"):
        decision = gating.compare_candidate(run.client, run.settings, run.catalogue, run.parts["index"], ranker, valid,
                                            run.params["gate_queries"])
    else:
        decision = gating.compare_ranker(run.client, run.settings, run.catalogue, ranker, valid, run.params["gate_queries"])
    run.registry.record_metrics(run.version, {"valid_live_ndcg@10": decision["live_ndcg@10"],
                                              "valid_learned_ndcg@10": decision["candidate_ndcg@10"],
                                              "valid_queries": decision["queries"]})
    run.registry.record_gate(run.version, "accept" if decision["decision"] == "promote" else "reject", decision,
                             run.settings.gate_margin, run.steps["split"]["valid_judgments"])
    rk.record_figures(run.registry, run.version, {"gate": decision})
    if run.parts.get("encoder_version"):  # the encoders are judged by the same gate
        run.registry.record_gate(run.parts["encoder_version"], "accept" if decision["decision"] == "promote" else "reject",
                                 decision, run.settings.gate_margin, run.steps["split"]["valid_judgments"])
    return decision


def promote(run: Run) -> dict:
    if run.steps["gate"]["decision"] != "promote":
        return {"promoted": False, "reason": "the gate rejected the ranker"}
    if not run.params["promote"]:
        return {"promoted": False, "reason": "not asked to promote"}
    if run.parts.get("index"):
        return enc.swap_in(run, run.steps["gate"])
    entry = rk.promote_ranker(run.client, run.registry, run.catalogue, run.steps["fit"]["index"], run.version,
                              run.steps["gate"])
    return {"promoted": True, "index": run.steps["fit"]["index"], "version": entry["version"]}


STEPS: dict[str, Callable[[Run], dict]] = {"split": split, "encoders": enc.train_encoders,
                                           "reindex": enc.reindex_candidate, "features": features, "fit": fit,
                                           "gate": gate, "promote": promote, "rerank_gate": enc.gate_rerank,
                                           "query_gate": enc.gate_query_encoder}
ENCODER_STEPS = ("encoders", "reindex", "rerank_gate")  # query_gate runs either way (train_encoders.gate_query_encoder)
DEFAULTS = {"valid_fraction": 0.3, "tune_fraction": 0.15, "seed": 0, "limit_queries": None, "gate_queries": None,
            "clicks_since": None, "promote": True, "threads": 3, "encoders": False, "lora_rank": None, "batch_size": 32,
            "bi_encoder_max_steps": enc.BI_ENCODER_MAX_STEPS, "cross_encoder_max_steps": enc.CROSS_ENCODER_MAX_STEPS}


def run_training(settings: Settings, client, catalogue: str, judgments: Judgments, *, echo: Callable[[str], None] = print,
                 runner=None, **params) -> dict:
    """Run every step for ``catalogue``; returns the report (the version, each step's record and seconds).

    ``encoders=True`` adds the ``encoders`` and ``reindex`` steps and needs ``runner`` (an ingest
    ``Runner``: the candidate index is encoded through it).
    """
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise InputError(f"unknown training parameters: {', '.join(sorted(unknown))}")
    if not judgments:
        raise InputError("the judgments file rates nothing")
    p = {**DEFAULTS, **params}
    if p["encoders"] and runner is None:
        raise InputError("training the encoders reindexes the catalogue: give a runner (the Celery workers)")
    registry = ModelRegistry(settings.models_path)
    run = Run(settings, client, registry, catalogue, judgments, registry.new_version(prefix="rank"), p, echo, runner)
    started = time.perf_counter()
    for name, step in STEPS.items():
        if name in ENCODER_STEPS and not p["encoders"]:
            continue
        t = time.perf_counter()
        info = step(run)
        run.steps[name] = {**info, "seconds": round(time.perf_counter() - t, 2)}
        echo(f"{run.version}: {name} done in {run.steps[name]['seconds']:.1f} s")
    seconds = round(time.perf_counter() - started, 2)
    record_times(run, seconds)
    return {"version": run.version, "catalogue": catalogue, "params": run.params, "steps": run.steps,
            "seconds": seconds, "encoder_version": run.parts.get("encoder_version"),
            "card": str(registry.part_dir(run.version, "ranker") / "card.json")}


def record_times(run: Run, seconds: float) -> None:
    """Each step's seconds (and the whole run's) on the ranker's card and in the encoder version's metrics."""
    times = {**{name: step["seconds"] for name, step in run.steps.items()}, "total": seconds}
    rk.record_figures(run.registry, run.version, {"step_seconds": times})
    if run.parts.get("encoder_version"):
        run.registry.record_metrics(run.parts["encoder_version"], {"step_seconds": times, "ranker": run.version})
