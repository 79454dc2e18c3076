"""The quantisation gate: an int8 query encoder serves only if it costs at most 0.002 nDCG@10.

Dynamic int8 quantisation (``encoders/onnx.py``) makes the query encoder faster but moves its
vectors (mean cosine to fp32 0.993 for MiniLM with ``onnx.INT8_RECIPE``'s per-channel MatMul
weights). So it is measured the way relevance always is here: the ``eval search`` runner over
validation judgments (never training queries), every vector strategy (``dense``, ``hybrid``,
``hybrid-rrf``, and ``learned``, the default shopper strategy once a ranker serves) through the production
:class:`~shopsearch.query.searcher.Searcher` on the live index, once with fp32 query vectors and
once with int8 ones (the index's item vectors stay as they are). int8 passes when no strategy
loses more than :data:`~shopsearch.encoders.onnx.INT8_MAX_NDCG_LOSS`. The decision and the
figures go on the model card: ``model.json``'s ``onnx`` entry for a registry model
(:meth:`ModelRegistry.record_onnx`), ``card.json`` beside the export for a model package; the
encoder reads that card before it serves int8 (``onnx.serving_variant``).
"""

from __future__ import annotations

import numpy as np

from shopsearch.encoders.onnx import INT8_MAX_NDCG_LOSS, OnnxTextEncoder, card_path, write_card
from shopsearch.encoders.text import choose_backend, choose_device, load_text_encoder
from shopsearch.errors import InputError
from shopsearch.evaluation.run import evaluate
from shopsearch.learn.registry import ModelRegistry, now_iso
from shopsearch.query.searcher import Searcher, SearchRequest
from shopsearch.settings import Settings

STRATEGIES = ("dense", "hybrid", "hybrid-rrf", "learned")  # learned: hybrid order where no ranker is served


def variant_gate(fp32: dict[str, float], int8: dict[str, float], max_loss: float = INT8_MAX_NDCG_LOSS) -> dict:
    """Whether int8 lost at most ``max_loss`` nDCG@10 on every strategy (pure).

    >>> variant_gate({"hybrid": 0.380}, {"hybrid": 0.379})["passed"]
    True
    >>> variant_gate({"dense": 0.270, "hybrid": 0.380}, {"dense": 0.266, "hybrid": 0.380})["worst_loss"]
    0.004
    """
    losses = {s: round(fp32[s] - int8[s], 6) for s in fp32}
    worst = max(losses.values())
    return {"passed": worst <= max_loss, "max_loss": max_loss, "worst_loss": round(worst, 6), "loss": losses}


def live_onnx_encoder(searcher: Searcher, settings: Settings, catalogue: str):
    """``(live, encoder)``: the catalogue's live index and the ONNX query encoder of the model it was encoded with."""
    live = searcher.live(catalogue)
    model = live.meta.get("model") or settings.text_model
    encoder = load_text_encoder(model, "cpu", settings.batch_size, backend="onnx", threads=settings.inference_threads,
                                models_root=settings.models_path, queries=True)
    if not isinstance(encoder, OnnxTextEncoder):
        raise InputError(f"model {model} of {live.index} is not a sentence-transformers model: no ONNX variant to gate")
    if live.meta.get("model_version") and encoder.version != live.meta["model_version"]:
        raise InputError(f"{live.index} was encoded with {live.meta['model_version']}, not {encoder.version}")
    return live, encoder


def gate_int8(client, settings: Settings, catalogue: str, judgments, judgments_name: str,
              strategies=STRATEGIES, limit_queries: int | None = None, echo=print) -> dict:
    """Measure int8 against fp32 query vectors on ``catalogue``'s live index and record the card; returns it."""
    searcher = Searcher(client, settings.replace(result_cache_seconds=0, query_cache_size=0))
    live, encoder = live_onnx_encoder(searcher, settings, catalogue)

    def search(q: str, s: str) -> list[str]:
        return [h["id"] for h in searcher.search(catalogue, SearchRequest(q=q, size=100, strategy=s))["hits"]]

    scores, vectors = {}, {}
    for variant in ("fp32", "int8"):
        trial = encoder.trial(variant)
        # the one difference between the two runs: the query vector (the retriever's own method, replaced here)
        searcher.retriever.query_vector = lambda _live, text, e=trial: (e.encode([text])[0].tolist(), False)
        result = evaluate(judgments, list(strategies), search, limit_queries=limit_queries)
        scores[variant] = {s: round(result.mean(s, "ndcg@10"), 6) for s in strategies}
        vectors[variant] = trial.encode(result.queries)
        echo(f"{variant}: nDCG@10 {scores[variant]} on {len(result.queries)} queries")
    cos = (vectors["fp32"] * vectors["int8"]).sum(1)
    decision = variant_gate(scores["fp32"], scores["int8"])
    card = {"serving": "int8" if decision["passed"] else "fp32", "export": str(encoder.export_dir),
            "version": encoder.version, "recipe": encoder.recipe,
            "gate": decision | {"ndcg@10": scores, "queries": len(result.queries), "judgments": judgments_name,
                                "index": live.index, "cosine_int8_vs_fp32": {"min": round(float(cos.min()), 5),
                                                                             "mean": round(float(np.mean(cos)), 5)},
                                "at": now_iso()}}
    path, part = card_path(encoder.path, encoder.export_dir)
    if part:
        ModelRegistry(path.parent.parent).record_onnx(path.parent.name, part, card)
    else:
        write_card(encoder.export_dir, card)
    echo(f"int8 {'passes' if decision['passed'] else 'fails'} (worst loss {decision['worst_loss']}, "
         f"at most {decision['max_loss']}): {card['serving']} serves; card: {path}")
    return card


def gate_swapped_query_encoder(client, settings: Settings, catalogue: str, judgments, judgments_name: str,
                               limit_queries: int | None = None, echo=print) -> dict:
    """:func:`gate_int8` for a bi-encoder a learning run has just swapped in (``train --encoders``'
    ``query_gate``, the click loop's ``query_gate``): what the run records. Skipped, with why, where
    torch serves the queries (CUDA) or the model has no ONNX variant: the swap stands, fp32 serves."""
    if choose_backend(settings.inference_backend, choose_device(settings.device), queries=True) != "onnx":
        return {"skipped": "torch serves the query encoder (CUDA): no int8 variant to gate"}
    try:
        card = gate_int8(client, settings, catalogue, judgments, judgments_name, limit_queries=limit_queries, echo=echo)
    except InputError as e:
        return {"skipped": str(e)}
    return {"serving": card["serving"], "recipe": card["recipe"],
            **{k: card["gate"][k] for k in ("passed", "worst_loss", "ndcg@10", "queries")}}


def gate_undecided_query_encoder(client, settings: Settings, catalogue: str, judgments, judgments_name: str,
                                 limit_queries: int | None = None, echo=print) -> dict:
    """:func:`gate_swapped_query_encoder` for a run that kept the live bi-encoder (``train`` without
    ``--encoders``), where its int8 has no decision yet for the current recipe: a fresh install serves
    fp32 query vectors until a gate passed, and its first training run has validation judgments at
    hand. A decision already recorded stands (``shopsearch models onnx`` measures again)."""
    if choose_backend(settings.inference_backend, choose_device(settings.device), queries=True) != "onnx":
        return {"skipped": "torch serves the query encoder (CUDA): no int8 variant to gate"}
    try:
        _, encoder = live_onnx_encoder(Searcher(client, settings), settings, catalogue)
    except InputError as e:
        return {"skipped": str(e)}
    gate = encoder.card.get("gate")
    if gate and encoder.card.get("recipe") == encoder.recipe:
        return {"skipped": f"int8 of {encoder.version} was gated at {gate.get('at')} ({encoder.card.get('serving')} "
                           f"serves); shopsearch models onnx gates it again"}
    return gate_swapped_query_encoder(client, settings, catalogue, judgments, judgments_name, limit_queries, echo)
