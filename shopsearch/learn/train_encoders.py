"""``shopsearch train``'s encoder steps: judgments -> bi-encoder + cross-encoder -> candidate index.

Two steps of :data:`shopsearch.learn.train_ranker.STEPS`, run when ``encoders`` is on, between
``split`` and ``features``:

1. ``encoders``: the training queries' judgments (and joined clicks) become examples
   (``learn/judged_examples.py``); the live index's bi-encoder (or, where an earlier ``train`` made
   it from judgments, the model that run started from: :func:`starting_model`) is fine-tuned with MNRL on the
   positives with their low-judged and BM25-mined hard negatives, and a cross-encoder (a head on
   ``cross_encoder_model``, MiniLM by default) on graded targets, both by the click loop's own trainers
   (``learn/train.py``; ``lora_rank`` > 0: LoRA adapters, merged for serving). Both go into one
   encoder version of the registry (``ft-...``, like the click loop's), so strategy
   ``hybrid-rerank`` on an index encoded with that bi-encoder finds the cross-encoder beside it.
   The cross-encoder's serving variant is prepared here (ONNX Runtime fp32 on CPU, exported once
   into the registry; torch on CUDA) and recorded on its card (``model.json``'s ``onnx``).
   The registry entry records one name of every input (:func:`training_inputs`); where the live
   index's encoders carry the same name (a second run on the same judgments, no new click or
   product text), they are kept (:func:`kept_encoders`): no training, no reindex, the ranker fitted
   and gated on the live index, the serving variants left as decided.
2. ``reindex``: the catalogue encoded with the new bi-encoder into a new, verified index version,
   not behind the alias (``learn/reindex.reindex(swap=False)``, through the caller's runner).
3. ``rerank_gate``, after ``promote``: once the candidate is live, the int8 cross-encoder against
   the fp32 one on the validation judgments (``learn/rerank_gate.py``, what ``shopsearch models
   onnx --part cross-encoder --variant int8`` runs); the card then says which variant serves.
   Skipped where nothing was swapped in or where torch serves (CUDA).
4. ``query_gate``, after it: the new bi-encoder's int8 query vectors against fp32 on the same
   judgments (``learn/onnx_gate.py``, what ``shopsearch models onnx --variant int8`` runs), so the
   query encoder that was just trained gets its faster variant where it loses nothing. Skipped
   where nothing was swapped in or where torch serves (CUDA).

The ranker is then fitted on that candidate index (its features computed on the index it will
serve), the gate compares what shoppers get now with ``learned`` on the candidate
(``gate.compare_candidate``), and only a passed candidate is swapped in (:func:`swap_in`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from shopsearch.encoders.text import choose_backend, choose_device, resolve_model_path
from shopsearch.errors import RegistryError
from shopsearch.index.meta import read_meta
from shopsearch.index.versions import live_index
from shopsearch.learn import ranker as rk
from shopsearch.learn import rollout
from shopsearch.learn import train as ft
from shopsearch.learn.judged_examples import judged_examples
from shopsearch.learn.lora import LoraOptions
from shopsearch.learn.onnx_gate import gate_swapped_query_encoder, gate_undecided_query_encoder
from shopsearch.learn.rerank_gate import gate_rerank_int8
from shopsearch.learn.reindex import reindex as build_index
from shopsearch.query.rerank import cached_reranker

# On this 2-core machine a bi-encoder step (32 rows with a hard negative) takes 1.2-1.6 s and a
# cross-encoder step (16 rows) 0.3-0.5 s: at these caps the encoders take 14-23 minutes of the 23-35
# a Home Depot `shopsearch train` takes on CPU, inside its 45-minute budget (docs/ARCHITECTURE.md,
# "Encoders from judgments"; the 35 with a test run sharing the cores).
BI_ENCODER_MAX_STEPS = 400
CROSS_ENCODER_MAX_STEPS = 900
CROSS_ENCODER_PARAMS = {"lr": 5e-5, "head_lr": 1e-2, "random_negatives": 1}  # the click loop's rates


def train_encoders(run) -> dict:
    """The ``encoders`` step: examples from the training judgments, both encoders trained and registered;
    or, where the live index's encoders were trained from the very same inputs, those kept (:func:`kept_encoders`)."""
    client, registry, p = run.client, run.registry, run.params
    index = live_index(client, run.catalogue)
    meta = read_meta(client, index)
    base_model, base_version = starting_model(registry, meta.get("model") or run.settings.text_model,
                                              meta.get("model_version"))
    labelled = run.parts["labelled"]
    data = judged_examples(client, index, labelled, run.parts["train"])  # training queries only
    rank = run.settings.lora_rank if p["lora_rank"] is None else p["lora_rank"]
    lora = LoraOptions.from_settings(run.settings.replace(lora_rank=rank))  # None at rank 0: every weight trains
    params = {"source": "judgments", "lora": lora.as_dict() if lora else None,
              "cross_encoder_model": run.settings.cross_encoder_model,
              "bi_encoder_max_steps": p["bi_encoder_max_steps"], "batch_size": p["batch_size"],
              "cross_encoder_max_steps": p["cross_encoder_max_steps"], **CROSS_ENCODER_PARAMS}
    inputs = training_inputs(data, base_model, base_version, params)
    kept = kept_encoders(registry, meta.get("model_version"), inputs)
    if kept:
        run.parts["kept_encoders"] = kept
        return {"version": kept, "kept": f"{index} serves encoders trained from the same examples, starting model "
                                          "and parameters: not trained again, no reindex",
                "inputs": inputs, "base_model": base_model, "base_index": index, "data": data["summary"]}
    version = registry.new_version()
    bi = ft.train_bi_encoder(resolve_model_path(base_model), data["bi_encoder"], registry.part_dir(version, "bi-encoder"),
                             batch_size=p["batch_size"], hard_negatives=data["bi_encoder_negatives"],
                             max_steps=p["bi_encoder_max_steps"], lora=lora)
    ce = ft.train_cross_encoder(resolve_model_path(run.settings.cross_encoder_model), data["cross_encoder"],
                                registry.part_dir(version, "cross-encoder"), hard_negatives=None,
                                max_steps=p["cross_encoder_max_steps"], lora=lora,
                                **CROSS_ENCODER_PARAMS)
    results = {"bi_encoder": bi.as_dict(), "cross_encoder": ce.as_dict()}
    for r in results.values():
        r["final_loss"] = r["losses"][-1] if r["losses"] else None
        r.pop("losses", None)
    registry.register(version, base_model=base_model, base_version=base_version,
                      catalogue=run.catalogue, window={"since": p["clicks_since"], "until": None},
                      data={**data["summary"], "split": run.steps["split"], "inputs": inputs}, params=params)
    results["rerank_serving"] = prepare_reranker(run.settings, registry, version)
    run.parts["encoder_version"] = version
    return {"version": version, "inputs": inputs, "base_model": base_model, "base_index": index, "data": data["summary"],
            **results}


def training_inputs(data: dict, base_model: str, base_version: str | None, params: dict) -> str:
    """One name for everything the encoders are trained from (pure): the examples with their texts and
    mined negatives, the starting model (its version names its weights' hash) and the parameters.

    >>> from shopsearch.learn.training_data import Example
    >>> data = {"bi_encoder": [Example("drill", "a", "cordless drill")], "bi_encoder_negatives": [["saw"]],
    ...         "cross_encoder": []}
    >>> training_inputs(data, "m", "m@1", {"steps": 4}) == training_inputs(data, "m", "m@1", {"steps": 4})
    True
    >>> training_inputs(data, "m", "m@1", {"steps": 4}) == training_inputs(data, "m", "m@1", {"steps": 5})
    False
    """
    rows = [base_model, base_version, params, [asdict(e) for e in data["bi_encoder"]], data["bi_encoder_negatives"],
            [asdict(e) for e in data["cross_encoder"]]]
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()[:16]


def kept_encoders(registry, model_version: str | None, inputs: str) -> str | None:
    """The live index's encoder version where an earlier ``train`` made it from ``inputs``, else None.

    Training is deterministic on CPU (two full Home Depot runs gave the same bi-encoder), so a second
    run on the same judgments would spend its encoder steps and a reindex (17-27 minutes on 2 cores)
    to serve the same weights again; it keeps them and trains the ranker on the live index instead.
    A new judgment, click, product text, parameter or starting model changes ``inputs``.
    """
    if not model_version:
        return None
    version = model_version.split("@")[0]
    try:
        entry = registry.load(version)
    except RegistryError:  # a packaged model, or a version this registry does not hold
        return None
    if (entry.get("data") or {}).get("inputs") != inputs or "cross-encoder" not in entry.get("parts", ()):
        return None
    return version


def starting_model(registry, model: str, model_version: str | None) -> tuple[str, str | None]:
    """``(model, model_version)``: the bi-encoder the ``encoders`` step fine-tunes, given the live index's.

    The live model, unless an earlier ``shopsearch train`` made it from judgments: then the model that
    run started from (and so on back). The judgments file holds every label each time, so a second
    run on the same judgments trains the same bi-encoder again instead of another epoch over them
    (the cross-encoder starts from ``cross_encoder_model`` each time too). A model the click loop
    made stays the start: its clicks are not in the judgments.
    """
    while model_version:
        try:
            entry = registry.load(model_version.split("@")[0])
        except RegistryError:  # a packaged model, or a version this registry does not hold
            break
        if (entry.get("params") or {}).get("source") != "judgments":
            break
        model, model_version = entry["base_model"], entry.get("base_version")
    return model, model_version


def prepare_reranker(settings, registry, version: str) -> dict:
    """Load the cross-encoder as ``hybrid-rerank`` will serve it (exporting ONNX once) and record the variant."""
    path = registry.resolve(version, "cross-encoder")
    device = choose_device(settings.device)
    backend = choose_backend(settings.inference_backend, device, queries=True)
    reranker = cached_reranker(str(path), settings.device, settings.inference_backend, str(settings.models_path),
                               settings.inference_threads)
    card = {"serving": "fp32" if backend == "onnx" else "torch", "backend": backend, "device": device,
            "version": reranker.version}
    if backend == "onnx":
        card["export"] = str(reranker.scorer.export_dir)
        registry.record_onnx(version, "cross-encoder", card)
    return card


def reindex_candidate(run) -> dict:
    """The ``reindex`` step: the catalogue encoded with the new bi-encoder into a verified version, not live."""
    if run.parts.get("kept_encoders"):
        return {"skipped": "the live index already serves these encoders", "live": live_index(run.client, run.catalogue)}
    model = run.registry.resolve(run.parts["encoder_version"], "bi-encoder")
    result = build_index(run.settings, run.catalogue, model=str(model), swap=False, client=run.client, runner=run.runner)
    run.parts["index"] = result["index"]
    return {"index": result["index"], "model_version": result.get("model_version"), "docs": result.get("docs"),
            "live": live_index(run.client, run.catalogue)}


def swap_in(run, gate: dict) -> dict:
    """A passed candidate behind the alias, its ranker already in its ``_meta``; profiles rebuilt in the background."""
    index, version = run.parts["index"], run.parts["encoder_version"]
    entry = rk.promote_ranker(run.client, run.registry, run.catalogue, index, run.version, gate)
    rollout.promote(run.settings, run.catalogue, index, client=run.client)
    run.registry.set_status(version, "promoted")
    run.runner.send("shopsearch.profiles.update", run.catalogue)  # profile vectors belong to the old model
    return {"promoted": True, "index": index, "version": entry["version"], "encoder_version": version}


def gate_rerank(run) -> dict:
    """The ``rerank_gate`` step: int8 against fp32 for the cross-encoder now live; the card records which serves."""
    if run.parts.get("kept_encoders"):
        return {"skipped": "the live cross-encoder was kept: its serving variant stands (shopsearch models onnx "
                           "--part cross-encoder --variant int8 gates it again)"}
    if not (run.steps.get("promote") or {}).get("promoted"):
        return {"skipped": "the candidate was not swapped in: its cross-encoder does not serve"}
    if run.steps["encoders"]["rerank_serving"]["backend"] != "onnx":
        return {"skipped": "torch serves the cross-encoder (CUDA): no int8 variant to gate"}
    valid = {q: run.judgments[q] for q in run.parts["valid"]}
    card = gate_rerank_int8(run.client, run.settings, run.catalogue, valid, run.steps["split"]["valid_judgments"],
                            limit_queries=run.params["gate_queries"], echo=run.echo)
    return {"serving": card["serving"], **{k: card["gate"][k] for k in ("passed", "worst_loss", "ndcg@10", "queries")}}


def gate_query_encoder(run) -> dict:
    """The ``query_gate`` step: int8 against fp32 query vectors for the bi-encoder now live; its card records which
    serves. Without ``encoders`` the live bi-encoder stays, and is gated only where it has no decision yet."""
    valid = {q: run.judgments[q] for q in run.parts["valid"]}
    if not run.params["encoders"] or run.parts.get("kept_encoders"):
        return gate_undecided_query_encoder(run.client, run.settings, run.catalogue, valid,
                                            run.steps["split"]["valid_judgments"], run.params["gate_queries"], run.echo)
    if not (run.steps.get("promote") or {}).get("promoted"):
        return {"skipped": "the candidate was not swapped in: its bi-encoder does not serve"}
    return gate_swapped_query_encoder(run.client, run.settings, run.catalogue, valid,
                                      run.steps["split"]["valid_judgments"], run.params["gate_queries"], run.echo)
