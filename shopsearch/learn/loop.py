"""The learning loop: click logs -> training data -> models -> candidate index -> gate -> swap -> int8 query gate.

Steps, in order, each recorded in the model's registry entry (``model.json``) when done, so a
run that crashed is resumed by running it again with the same ``version``:

1. ``collect``: training examples from the catalogue's UBI click logs (``training_data.collect``:
   position-bias corrected, split by query), saved under ``<version>/data``;
2. ``train``: the bi-encoder fine-tuned from the live index's model (MNRL, skipped and BM25-mined
   hard negatives) and a cross-encoder re-ranker on ``cross_encoder_model`` (MiniLM by default; ``learn/train.py``);
   with ``lora_rank`` > 0 (recorded in the run's params when it starts) both as LoRA adapters,
   merged for serving (``learn/lora.py``);
3. ``reindex``: the catalogue encoded with the new bi-encoder into a new index version, verified,
   not yet behind the alias (``learn/reindex.reindex(swap=False)``);
4. ``gate``: nDCG@10 (strategy ``gate_strategy``, default ``hybrid``) on the validation judgments
   (a file given by the caller, never the training clicks' queries), live index against the
   candidate (``learn/gate.py``); the candidate passes when it beats the live one by
   ``gate_margin`` (relative). The decision and numbers go to the registry;
5. ``swap``: a passed candidate is promoted (atomic alias switch; the old version stays for
   ``rollback``) and the shoppers' profiles are rebuilt in the background (their vectors belong
   to the old model). A rejected one is left unpromoted;
6. ``query_gate``: once the new bi-encoder serves, its int8 query vectors against fp32 on the same
   validation judgments (``learn/onnx_gate.py``); its card records which variant serves (fp32
   until int8 passes, as for a model trained by ``train --encoders``).

The steps are a table (:data:`STEPS`, name -> function): each function takes the run's
:class:`Context` and returns what is recorded for it in ``loop.json``; :func:`run` walks the
table, skipping the steps already recorded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from shopsearch.cluster import connect
from shopsearch.encoders.text import resolve_model_path
from shopsearch.errors import InputError, Missing
from shopsearch.evaluation.run import load_judgments
from shopsearch.files import read_json, write_json_atomic
from shopsearch.index.versions import live_index
from shopsearch.ingest.pipeline import Runner
from shopsearch.learn import gate as gating
from shopsearch.learn import rollout
from shopsearch.learn import train as ft
from shopsearch.learn.lora import LoraOptions
from shopsearch.learn.onnx_gate import gate_swapped_query_encoder
from shopsearch.learn.registry import ModelRegistry
from shopsearch.learn.reindex import reindex as build_index
from shopsearch.learn.training_data import TrainingData, collect as collect_clicks, query_bucket
from shopsearch.settings import Settings

# Each cross-encoder row is one transformer pass over (query, title): on CPU a step of 16 rows
# takes about 2 s, so training is capped (pairs x negatives would take hours for a large log).
RERANK_MAX_STEPS = 900
# Measured on the Home Depot clicks (300 validation queries, hybrid 0.3699): 250 steps at the
# default rates learnt nothing (0.3695 at rerank_weight 0.1); 900 steps with these gave 0.3888
# at rerank_weight 0.3. The head starts random, so it needs a far higher rate than the body.
CROSS_ENCODER_PARAMS = {"lr": 5e-5, "head_lr": 1e-2, "random_negatives": 2, "max_negatives": 2}
DEFAULTS = {"epochs": 1, "batch_size": 32, "max_pairs": None, "min_sessions": 1, "limit_queries": None,
            "seed": 0, "shuffle_labels": False, "rerank": True, "rerank_max_steps": RERANK_MAX_STEPS, "promote": True}


@dataclass
class Context:
    """What a step works with: the run's settings, cluster, registry, state (``loop.json``) and runner."""
    settings: Settings
    client: object
    registry: ModelRegistry
    version: str
    state: dict
    runner: Runner
    echo: Callable[[str], None] = print

    @property
    def params(self) -> dict:
        return self.state["params"]

    @property
    def steps(self) -> dict:
        return self.state["steps"]

    @property
    def home(self) -> Path:
        return self.registry.path(self.version)


# --- the steps, in order ------------------------------------------------------------------------

def collect(ctx: Context) -> dict:
    """Training data from the catalogue's click logs in the run's window, saved under ``<version>/data``."""
    w, p = ctx.state["window"], ctx.params
    data = collect_clicks(ctx.client, ctx.settings, ctx.state["catalogue"], w["since"], w["until"],
                          min_sessions=p["min_sessions"])
    if p["max_pairs"] and len(data.train) > p["max_pairs"]:  # a cap by query hash: no alphabetical bias
        data.train = sorted(data.train, key=lambda e: (query_bucket(e.query), e.query))[:p["max_pairs"]]
    data.save(ctx.home / "data")
    return {"summary": data.summary()}


def train(ctx: Context) -> dict:
    """The bi-encoder (and, with ``rerank``, the cross-encoder) trained into the version; then registered."""
    data, p, reg, state = TrainingData.load(ctx.home / "data"), ctx.params, ctx.registry, ctx.state
    negatives = ft.mine_negatives(ctx.client, state["base_index"], data.train)
    lora = LoraOptions.from_dict(p.get("lora"))
    bi = ft.train_bi_encoder(resolve_model_path(state["base_model"]), data.train, reg.part_dir(ctx.version, "bi-encoder"),
                             epochs=p["epochs"], batch_size=p["batch_size"], hard_negatives=negatives,
                             seed=p["seed"], shuffle_labels=p["shuffle_labels"], lora=lora)
    info = {"bi_encoder": bi.as_dict()}
    if p["rerank"]:
        ce = ft.train_cross_encoder(resolve_model_path(ctx.settings.cross_encoder_model), data.train,
                                    reg.part_dir(ctx.version, "cross-encoder"), epochs=max(p["epochs"], 2),
                                    hard_negatives=negatives, seed=p["seed"], shuffle_labels=p["shuffle_labels"],
                                    max_steps=p.get("rerank_max_steps"), lora=lora, **CROSS_ENCODER_PARAMS)
        info["cross_encoder"] = ce.as_dict()
    for result in info.values():
        result.pop("losses", None)
    reg.register(ctx.version, base_model=state["base_model"], base_version=state["base_version"],
                 window=state["window"], data=ctx.steps["collect"]["summary"], params=p, catalogue=state["catalogue"])
    return info


def reindex(ctx: Context) -> dict:
    """The catalogue encoded with the new bi-encoder into a new, verified index version, not yet live."""
    result = build_index(ctx.settings, ctx.state["catalogue"], model=str(ctx.registry.resolve(ctx.version)),
                         swap=False, client=ctx.client, runner=ctx.runner)
    return {"index": result["index"], "model_version": result.get("model_version"), "docs": result.get("docs")}


def gate(ctx: Context) -> dict:
    """Live index against the candidate on the validation judgments; the decision goes to the registry."""
    settings, version, judgments = ctx.settings, ctx.version, ctx.state["judgments"]
    decision = gating.compare(ctx.client, settings, ctx.state["catalogue"], live_index(ctx.client, ctx.state["catalogue"]),
                              ctx.steps["reindex"]["index"], load_judgments(judgments), ctx.params["limit_queries"])
    strategy = settings.gate_strategy
    ctx.registry.record_metrics(version, {f"valid_{strategy}_ndcg@10": decision["candidate_ndcg@10"],
                                          f"live_{strategy}_ndcg@10": decision["live_ndcg@10"],
                                          "valid_queries": decision["queries"]})
    ctx.registry.record_gate(version, "accept" if decision["decision"] == "promote" else "reject", decision,
                             settings.gate_margin, judgments)
    return decision


def swap(ctx: Context) -> dict:
    """A passed candidate behind the alias, and the shoppers' profiles rebuilt; a rejected one left unpromoted."""
    if ctx.steps["gate"]["decision"] != "promote":
        return {"swapped": False, "reason": "the gate rejected the candidate", "seconds": 0.0}
    if not ctx.params["promote"]:
        return {"swapped": False, "reason": "not asked to promote (promote it with shopsearch promote)", "seconds": 0.0}
    catalogue, index = ctx.state["catalogue"], ctx.steps["reindex"]["index"]
    rollout.promote(ctx.settings, catalogue, index, client=ctx.client)
    ctx.registry.set_status(ctx.version, "promoted")
    # profile vectors of the old model are ignored from now on: rebuild them (in the background)
    ctx.runner.send("shopsearch.profiles.update", catalogue)
    return {"swapped": True, "index": index}


def query_gate(ctx: Context) -> dict:
    """The swapped-in bi-encoder's int8 query vectors gated against fp32 on the validation judgments."""
    if not ctx.steps["swap"].get("swapped"):
        return {"skipped": "the candidate was not swapped in: its bi-encoder does not serve"}
    judgments = ctx.state["judgments"]
    return gate_swapped_query_encoder(ctx.client, ctx.settings, ctx.state["catalogue"], load_judgments(judgments),
                                      judgments, ctx.params["limit_queries"], ctx.echo)


STEPS: dict[str, Callable[[Context], dict]] = {
    "collect": collect, "train": train, "reindex": reindex, "gate": gate, "swap": swap, "query_gate": query_gate}


# --- running the table --------------------------------------------------------------------------

def prepare(settings: Settings, catalogue: str, judgments_path: str | Path | None, *, since: str | None = None,
            until: str | None = None, client=None, **params) -> str:
    """Start a run: a new version with its inputs recorded in ``loop.json``; returns the version."""
    if judgments_path is None:
        raise InputError("a validation judgments file is needed for the gate (--judgments)")
    client = client or connect(settings, timeout=120)
    live = live_index(client, catalogue)
    if live is None:
        raise Missing(f"catalogue {catalogue!r} has no live index")
    meta = client.indices.get_mapping(index=live)[live]["mappings"].get("_meta", {})
    reg = ModelRegistry(settings.models_path)
    version = reg.new_version()
    _save_state(reg.path(version), {
        "version": version, "catalogue": catalogue, "judgments": str(Path(judgments_path).resolve()),
        "base_model": meta.get("model") or settings.text_model, "base_version": meta.get("model_version"),
        "base_index": live, "window": {"since": since, "until": until}, "steps": {},
        "params": {**DEFAULTS, "lora": (lambda o: o and o.as_dict())(LoraOptions.from_settings(settings)), **params}})
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
        raise InputError(f"stop_after must be one of {', '.join(STEPS)}")
    client = connect(settings, timeout=120)
    reg = ModelRegistry(settings.models_path)
    if not version:
        version = prepare(settings, catalogue, judgments_path, since=since, until=until, epochs=epochs,
                          batch_size=batch_size, max_pairs=max_pairs, min_sessions=min_sessions,
                          limit_queries=limit_queries, rerank=rerank, rerank_max_steps=rerank_max_steps, promote=promote,
                          shuffle_labels=shuffle_labels, seed=seed, client=client)
    ctx = Context(settings, client, reg, version, _load_state(reg.path(version)), runner, echo)
    for name, step in STEPS.items():
        if name not in ctx.steps:
            started = time.perf_counter()
            info = step(ctx)
            info.setdefault("seconds", time.perf_counter() - started)
            ctx.steps[name] = {**info, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            _save_state(ctx.home, ctx.state)
            echo(f"{version}: {name} done in {info['seconds']:.0f} s")
        if name == stop_after:
            break
    return ctx.state


def load_state(settings: Settings, version: str) -> dict:
    """The state of the run ``version`` (``loop.json``)."""
    return _load_state(ModelRegistry(settings.models_path).path(version))


def _load_state(home: Path) -> dict:
    path = home / "loop.json"
    if not path.exists():
        raise Missing(f"no fine-tuning run {home.name} (no {path})")
    return read_json(path)


def _save_state(home: Path, state: dict) -> None:
    write_json_atomic(home / "loop.json", state)
