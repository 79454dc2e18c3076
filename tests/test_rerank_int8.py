"""Specification of the cheaper cross-encoder (encoders/onnx.py OnnxCrossScorer, query/rerank.py, learn/rerank_gate.py).

Real parts only: MiniLM (the packaged all-MiniLM-L6-v2) with a fresh one-logit head as the
cross-encoder, exported through ONNX Runtime and quantised by onnxruntime.quantization; Home Depot
queries and titles read in place from ../shared/data/homedepot; the gate runs hybrid-rerank
through the production Searcher on a Home Depot catalogue ingested by the project's own services.
"""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from shopsearch.encoders.onnx import quantise_int8, read_card, write_card
from shopsearch.encoders.onnx_cross import OnnxCrossScorer
from shopsearch.learn.rerank_gate import gate_rerank_int8
from shopsearch.query.rerank import OnnxReranker, cached_reranker, reranker_for, variant_on_trial
from shopsearch.workers.dispatch import run_ingest

from .conftest import DATA
from .cross_encoders import homedepot_titles, save_cross_encoder

PASSED = {"serving": "int8", "gate": {"passed": True}}


def judged_rows() -> list[dict]:
    with open(DATA / "homedepot" / "judgments.tsv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


QUERIES = list(dict.fromkeys(r["query"] for r in judged_rows()))[::400][:12]
TITLES = homedepot_titles(40)


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory):
    """The tests' small cross-encoder (``cross_encoders.py``), outside any registry version."""
    root = tmp_path_factory.mktemp("ce-int8")
    return root / "models", save_cross_encoder(root / "packages" / "ce-int8")


@pytest.fixture(scope="module")
def scorers(cross_encoder):
    root, path = cross_encoder
    fp32 = OnnxCrossScorer(path, root, "ce-int8")
    return fp32, fp32.trial("int8")


def test_int8_scores_stay_close_to_fp32_and_keep_their_order(scorers):
    # an untrained head spreads the weights' rounding wider than a trained one: this model moves
    # 0.02-0.045 on average (its scores spread about 0.09); the judgments-trained Home Depot
    # cross-encoder moves 0.006 (docs/ARCHITECTURE.md)
    fp32, int8 = scorers
    for query in QUERIES:
        a, b = np.array(fp32.score(query, TITLES)), np.array(int8.score(query, TITLES))
        assert a.std() > 0.05 and np.abs(a - b).mean() < 0.06 and np.abs(a - b).max() < 0.15
        assert np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1] > 0.85


@pytest.mark.parametrize("pairs_per_run", [1, 3, 8, 32])
def test_pairs_run_in_length_order_give_each_text_its_own_score(cross_encoder, scorers, pairs_per_run):
    root, path = cross_encoder
    one_batch = np.array(scorers[0].score(QUERIES[0], TITLES))
    scorer = OnnxCrossScorer(path, root, "ce-int8", pairs_per_run=pairs_per_run)
    assert np.abs(np.array(scorer.score(QUERIES[0], TITLES)) - one_batch).max() < 1e-5
    assert scorer.score(QUERIES[0], []) == []


def test_the_int8_export_is_cached_beside_the_fp32_one_and_not_redone(cross_encoder, scorers):
    root, path = cross_encoder
    target = quantise_int8(scorers[0].export_dir)
    assert target.parent == scorers[0].export_dir and target.name == "int8.onnx"
    before = os.stat(target).st_mtime_ns
    write_card(scorers[0].export_dir, PASSED)
    again = OnnxCrossScorer(path, root, "ce-int8", variant="int8")
    assert again.variant == "int8" and again.exported is False
    assert quantise_int8(again.export_dir) == target and os.stat(target).st_mtime_ns == before
    (scorers[0].export_dir / "card.json").unlink()


@pytest.mark.parametrize("card, wanted, serving", [
    ({}, "int8", "fp32"),
    ({"serving": "fp32", "gate": {"passed": False}}, "int8", "fp32"),
    (PASSED, "int8", "int8"),
    (PASSED, "fp32", "fp32"),
])
def test_int8_serves_only_where_the_card_says_its_gate_passed(cross_encoder, scorers, card, wanted, serving):
    root, path = cross_encoder
    card_file = scorers[0].export_dir / "card.json"
    if card:
        write_card(scorers[0].export_dir, card)
    try:
        assert OnnxReranker(path, root, variant=wanted).variant == serving
    finally:
        card_file.unlink(missing_ok=True)


# --- the gate, through the production pipeline ---------------------------------------------------

@pytest.fixture(scope="module")
def shop(services, settings, client):
    name = "test_rerank_int8_homedepot"
    client.indices.delete(index=f"{name}-v*", ignore_unavailable=True, allow_no_indices=True)
    run_ingest(settings, DATA / "homedepot" / "products.tsv", name, mapping="homedepot", limit=300)
    yield name
    client.indices.delete(index=f"{name}-v*", ignore_unavailable=True, allow_no_indices=True)


@pytest.fixture(scope="module")
def shop_judgments(shop, client):
    """Home Depot judgments of the queries that have a judged product among those ingested."""
    ids = {h["_id"] for h in client.search(index=shop, body={"size": 1000, "_source": False})["hits"]["hits"]}
    judged: dict[str, dict[str, float]] = {}
    for r in judged_rows():
        if r["product_uid"] in ids:
            judged.setdefault(r["query"], {})[r["product_uid"]] = float(r["relevance"])
    assert len(judged) >= 10
    return dict(sorted(judged.items())[:30])


def test_the_gate_records_its_decision_and_serving_follows_it(settings, client, cross_encoder, shop, shop_judgments):
    root, path = cross_encoder
    gated = settings.replace(rerank_model=str(path), models_dir=str(root), inference_backend="onnx", rerank_depth=10)
    card = gate_rerank_int8(client, gated, shop, shop_judgments, "test judgments", echo=lambda *_: None)
    export = OnnxCrossScorer(path, root, "ce-int8").export_dir
    assert read_card(path, export) == card and card["gate"]["queries"] == len(shop_judgments)
    loss = card["gate"]["ndcg@10"]["fp32"]["hybrid-rerank"] - card["gate"]["ndcg@10"]["int8"]["hybrid-rerank"]
    assert card["gate"]["passed"] is (loss <= 0.002 + 1e-9) and card["serving"] == ("int8" if card["gate"]["passed"] else "fp32")
    live = reranker_for(gated, {})
    assert live.variant == card["serving"]
    with variant_on_trial("fp32"):
        assert reranker_for(gated, {}).variant == "fp32"
    with variant_on_trial("int8"):
        assert reranker_for(gated, {}).variant == "int8"
    assert reranker_for(gated, {}) is live  # outside a trial: the served one again


def test_the_gate_refuses_a_variant_that_loses_more_than_allowed(settings, client, cross_encoder, shop, shop_judgments):
    root, path = cross_encoder
    gated = settings.replace(rerank_model=str(path), models_dir=str(root), inference_backend="onnx", rerank_depth=10)
    card = gate_rerank_int8(client, gated, shop, shop_judgments, "test judgments", max_loss=-1.0, echo=lambda *_: None)
    assert card["gate"]["passed"] is False and card["serving"] == "fp32"
    cached_reranker.cache_clear()
    assert reranker_for(gated.replace(rerank_variant="int8"), {}).variant == "fp32"
