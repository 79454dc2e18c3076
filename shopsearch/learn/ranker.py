"""The learned ranker: LightGBM LambdaMART over the features of each query's hybrid candidates.

Training rows come from the very pipeline that serves strategy ``learned``: each query runs
``Retrieve(named matches) >> MinMax >> ... >> Boosts`` (everything before ``LearnedRank``) and its
candidates' :class:`~shopsearch.query.features.FeatureTable` is one LambdaMART group. Labels are
the judged relevance on Home Depot's 1-3 scale, ``round(2 (relevance - 1))`` (0..4) with gains
``label / 2``, the evaluation's own linear gain ``relevance - 1``; a candidate nobody judged is
label 0, as the evaluation counts it.

Saved under the model registry's ``<version>/ranker/``: ``model.txt`` (LightGBM's text model,
which the query side loads with :class:`~shopsearch.query.learned.Ranker`) and ``card.json``, the
model card: feature names, importances (gain and splits), parameters, the data summary, the
split and the figures (tuning nDCG@10 per round kept at the best one, the gate's numbers).

Parameters are fixed here, not tuned: the number of rounds is the one best on the *tuning*
queries (a part of the training queries, by query hash), never on validation queries.

>>> label(3.0), label(2.33), label(1.0), label(None)
(4, 3, 0, 0)
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import lightgbm
import numpy as np
from opensearchpy.helpers import scan

from shopsearch.errors import RegistryError
from shopsearch.files import write_json_atomic
from shopsearch.learn.registry import ModelRegistry, now_iso
from shopsearch.index.meta import read_meta, update_meta
from shopsearch.query.features import FeatureTable, words
from shopsearch.query.learned import LearnedRank, Ranker, table_of
from shopsearch.query.searcher import Searcher, SearchRequest
from shopsearch.query.stages import Pipeline, Search
from shopsearch.query.strategies import pipeline
from shopsearch.query.title_bm25 import TitleStats

LABEL_GAIN = [0.0, 0.5, 1.0, 1.5, 2.0]  # label l has gain l / 2 = relevance - 1, the evaluation's gain
# num_leaves 15 (was 31): the best of 23 settings (leaves 15/31/63 x min_data_in_leaf 20/50/100 x
# feature_fraction 0.6/0.8, truncation 15/60, learning rate 0.03, lambda_l2 10) by tuning-query
# nDCG@10 (907 queries, never the validation ones): 0.5938 against 0.5864 for 31; the three best
# all had 15 leaves (docs/ARCHITECTURE.md). learning_rate 0.05: on the tuning queries 0.1 gave the
# same nDCG@10 (best round, three seeds: 0.5929 against 0.5932 for 0.05) at 119-136 rounds instead
# of 162-396, and was served while LightGBM's predict cost 16 ns a tree and candidate; compiled to
# machine code (query/compiled_ranker.py) the trees cost a third of that in the stage (0.18 ms for
# 100 candidates at 197 trees against LightGBM's 0.62), so the slower rate is back
PARAMS = {"objective": "lambdarank", "metric": "ndcg", "eval_at": [10], "label_gain": LABEL_GAIN,
          "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 50, "feature_fraction": 0.8,
          "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0, "lambdarank_truncation_level": 30,
          "num_threads": 2, "seed": 0, "deterministic": True, "force_row_wise": True, "verbose": -1}
ROUNDS = 600
EARLY_STOPPING = 60


def label(relevance: float | None) -> int:
    """The LambdaMART label of a judged relevance on the 1-3 scale (unjudged: 0)."""
    if relevance is None:
        return 0
    return int(min(4, max(0, round(2 * (float(relevance) - 1)))))


# --- training rows: the serving pipeline up to the ranker ----------------------------------------

def before_ranker(settings) -> Pipeline:
    """The ``learned`` pipeline's stages before ``LearnedRank``: what the ranker's candidates come from."""
    stages = pipeline("learned", settings).stages
    return Pipeline(stages[:next(i for i, s in enumerate(stages) if isinstance(s, LearnedRank))])


def candidate_tables(searcher: Searcher, catalogue: str, queries: list[str], index: str | None = None,
                     threads: int = 3, progress: Callable[[int, int], None] | None = None,
                     title_stats: TitleStats | None = None) -> dict[str, FeatureTable]:
    """Each query's candidate feature table, exactly as strategy ``learned`` builds it when serving
    (with ``title_stats``, those the ranker will be saved with)."""
    live = searcher.pinned(catalogue, index) if index else searcher.live(catalogue)
    steps, s = before_ranker(searcher.settings), searcher.settings

    def one(q: str) -> FeatureTable:
        req = SearchRequest(q=q, size=100, strategy="learned")
        done = steps.run(Search(req=req, live=live, searcher=searcher, depth=max(s.candidate_depth, 100),
                                weight=s.vector_weight))
        return table_of(done, title_stats)

    out: dict[str, FeatureTable] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        for n, (q, table) in enumerate(zip(queries, pool.map(one, queries)), 1):
            out[q] = table
            if progress:
                progress(n, len(queries))
    return out


@dataclass
class RankingData:
    """Rows of many queries: features ``x``, labels ``y``, ``groups`` (rows per query, in order)."""
    names: list[str]
    x: np.ndarray
    y: np.ndarray
    groups: list[int]
    queries: list[str] = field(default_factory=list)
    judged_missing: int = 0  # judged positives the candidates did not contain (a recall ceiling)

    def summary(self) -> dict:
        """Counts for the model card."""
        return {"queries": len(self.groups), "rows": int(len(self.y)),
                "labels": {str(k): int(v) for k, v in zip(*np.unique(self.y, return_counts=True))},
                "judged_positives_not_retrieved": self.judged_missing}


def ranking_data(tables: dict[str, FeatureTable], judgments: dict[str, dict[str, float]]) -> RankingData:
    """The rows of the queries in ``tables`` labelled by ``judgments`` (queries without candidates dropped)."""
    names = next((t.names for t in tables.values() if t.ids), [])
    xs, ys, groups, queries, missing = [], [], [], [], 0
    for q, table in tables.items():
        if not table.ids:
            continue
        judged = judgments.get(q, {})
        xs.append(table.select(names))
        ys.append([label(judged.get(d)) for d in table.ids])
        groups.append(len(table.ids))
        queries.append(q)
        missing += sum(1 for d, r in judged.items() if label(r) >= 3 and d not in set(table.ids))
    x = np.vstack(xs) if xs else np.zeros((0, len(names)))
    return RankingData(names, x, np.concatenate(ys).astype(int) if ys else np.zeros(0, int), groups, queries, missing)


# --- training, the model card, saving ----------------------------------------------------------

def train_ranker(train: RankingData, tune: RankingData | None = None, params: dict | None = None,
                 rounds: int = ROUNDS, early_stopping: int = EARLY_STOPPING) -> tuple[lightgbm.Booster, dict]:
    """A LambdaMART booster on ``train``; with ``tune``, rounds stop where tuning nDCG@10 stops improving."""
    p = {**PARAMS, **(params or {})}
    data = lightgbm.Dataset(train.x, train.y, group=train.groups, feature_name=train.names, free_raw_data=False)
    valid, callbacks, record = [], [], {}
    if tune is not None and tune.groups:
        valid = [lightgbm.Dataset(tune.x, tune.y, group=tune.groups, reference=data)]
        callbacks = [lightgbm.early_stopping(early_stopping, verbose=False), lightgbm.record_evaluation(record)]
    started = time.perf_counter()
    booster = lightgbm.train(p, data, num_boost_round=rounds, valid_sets=valid, valid_names=["tune"][:len(valid)],
                             callbacks=callbacks)
    curve = record.get("tune", {}).get("ndcg@10", [])
    best = booster.best_iteration or booster.current_iteration()
    info = {"rounds": best, "seconds": round(time.perf_counter() - started, 2),
            "tune_ndcg@10": round(float(curve[best - 1]), 6) if curve else None}
    return booster, info


def importances(booster: lightgbm.Booster) -> list[dict]:
    """Every feature's total gain and split count, largest gain first."""
    gain = booster.feature_importance("gain", iteration=booster.best_iteration or None)
    split = booster.feature_importance("split", iteration=booster.best_iteration or None)
    rows = [{"feature": n, "gain": round(float(g), 3), "splits": int(s)}
            for n, g, s in zip(booster.feature_name(), gain, split)]
    return sorted(rows, key=lambda r: -r["gain"])


def model_card(booster: lightgbm.Booster, info: dict, data: dict, split: dict, params: dict | None = None) -> dict:
    """What the ranker is: features, importances, parameters, data, split and figures."""
    return {"kind": "lightgbm-lambdarank", "lightgbm": lightgbm.__version__, "created_at": now_iso(),
            "features": booster.feature_name(), "importances": importances(booster),
            "params": {**PARAMS, **(params or {})}, "training": info, "data": data, "split": split, "figures": {}}


def save_ranker(registry: ModelRegistry, version: str, booster: lightgbm.Booster, card: dict,
                title_stats: TitleStats | None = None) -> Path:
    """``<version>/ranker/model.txt`` (the best rounds only), ``card.json`` and the title
    statistics its features were computed with (``title_stats.json``); returns the model file."""
    directory = registry.part_dir(version, "ranker")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.txt"
    booster.save_model(str(path), num_iteration=booster.best_iteration or None)
    if title_stats is not None:
        title_stats.save(directory)
    write_json_atomic(directory / "card.json", card)
    return path


def index_title_stats(client, index: str) -> TitleStats:
    """The title statistics of every product in ``index`` (one scroll over the titles)."""
    hits = scan(client, index=index, query={"query": {"match_all": {}}}, _source=["title"], size=2000,
                scroll="2m")
    return TitleStats.from_titles(words(h["_source"].get("title") or "") for h in hits)


def load_ranker(registry: ModelRegistry, version: str) -> Ranker:
    """The ranker of a registered version."""
    return Ranker.load(registry.resolve(version, "ranker") / "model.txt", version)


def read_card(registry: ModelRegistry, version: str) -> dict:
    """The model card of a version's ranker."""
    return json.loads((registry.resolve(version, "ranker") / "card.json").read_text(encoding="utf-8"))


def record_figures(registry: ModelRegistry, version: str, figures: dict) -> dict:
    """Merge ``figures`` into the model card (the gate's numbers, after the gate ran).

    The card sits beside ``model.txt``, whose hash alone the registry records for the ranker.
    """
    path = registry.resolve(version, "ranker") / "card.json"
    card = json.loads(path.read_text(encoding="utf-8"))
    card["figures"].update(figures)
    write_json_atomic(path, card)
    return card


# --- serving: the live index's ``_meta.ranker`` ---------------------------------------------------

def promote_ranker(client, registry: ModelRegistry, catalogue: str, index: str, version: str, gate: dict) -> dict:
    """Serve ``version``'s ranker for ``index`` (``_meta.ranker``), mark it promoted and the one it replaces retired."""
    meta = read_meta(client, index)
    previous = (meta.get("ranker") or {}).get("version")
    ranker = load_ranker(registry, version)
    entry = {"version": version, "path": str(registry.resolve(version, "ranker") / "model.txt"),
             "features": ranker.features, "model_version": meta.get("model_version"), "catalogue": catalogue,
             "promoted_at": now_iso(), "gate": gate, "previous": previous}
    update_meta(client, index, {"ranker": entry})
    registry.set_status(version, "promoted")
    if previous and previous != version:
        try:
            registry.set_status(previous, "retired")
        except RegistryError:  # a previous ranker not in this registry has no status to change
            pass
    return entry


def withdraw_ranker(client, index: str) -> dict | None:
    """Stop serving a ranker for ``index`` (``learned`` answers in hybrid order again); returns what was served."""
    withdrawn = []
    update_meta(client, index, lambda meta: withdrawn.append(meta.pop("ranker", None)))
    return withdrawn[0]
