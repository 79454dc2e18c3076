"""The learned ranker on real Home Depot rows: it learns an ordering, explains itself, and the gate keeps its word.

Real parts only: the products judged for 40 real queries (plus 50 others) are ingested through
the Celery workers into a test catalogue; candidates come from the real shopper search
(``Retrieve(named matches) >> MinMax >> ...``), the ranker is LightGBM, the gate searches
through the ``Searcher``.
"""

from __future__ import annotations


import numpy as np
import pytest

from shopsearch.evaluation.metrics import ndcg_at_k
from shopsearch.evaluation.run import split_queries
from shopsearch.index.versions import live_index
from shopsearch.learn import gate as gating
from shopsearch.learn import ranker as rk
from shopsearch.learn.registry import ModelRegistry
from shopsearch.learn.rollout_state import read_meta
from shopsearch.learn.train_ranker import run_training
from shopsearch.query import features
from shopsearch.query.learned import Ranker, warm_product_text
from shopsearch.query.searcher import Searcher, SearchRequest

from .judged_catalogue import ingest_judged_catalogue, judged_queries

QUERIES = 40


@pytest.fixture(scope="module")
def world(services, settings, client, tmp_path_factory):
    """A test catalogue of the products judged for 40 real queries and 50 others; its judgments."""
    tmp = tmp_path_factory.mktemp("ranker")
    queries, judgments = judged_queries(0, 23, QUERIES)
    name = ingest_judged_catalogue(settings, tmp, judgments, "test_rank")
    local = settings.replace(models_dir=str(tmp / "models"), result_cache_seconds=0)
    searcher = Searcher(client, local)
    valid, train = split_queries(queries, 0.4, seed=0)
    stats = rk.index_title_stats(client, live_index(client, name))
    tables = rk.candidate_tables(searcher, name, queries, threads=2, title_stats=stats)
    yield {"catalogue": name, "settings": local, "judgments": judgments, "train": train, "valid": valid,
           "tables": tables, "registry": ModelRegistry(tmp / "models"), "searcher": searcher, "title_stats": stats}
    client.indices.delete(index=f"{name}-v*", ignore_unavailable=True, allow_no_indices=True)


def _data(world, queries, relabel=None):
    tables = {q: world["tables"][q] for q in queries}
    data = rk.ranking_data(tables, world["judgments"])
    if relabel is not None:
        data.y = relabel(data.y)
    return data


def _mean_ndcg(world, queries, order) -> float:
    values = [ndcg_at_k(order(q), world["judgments"][q], 10) for q in queries]
    return float(np.mean([v for v in values if v is not None]))


@pytest.fixture(scope="module")
def trained(world):
    booster, info = rk.train_ranker(_data(world, world["train"]), rounds=80)
    return Ranker(booster, booster.feature_name(), "test", world["title_stats"]), info


def test_the_title_statistics_count_every_product_of_the_index(world, client):
    stats, index = world["title_stats"], live_index(client, world["catalogue"])
    assert stats.docs == client.count(index=index)["count"] and stats.df and stats.avg_words > 1
    table = next(t for t in world["tables"].values() if t.ids)
    assert not np.isnan(table.column("title_bm25")).all()  # the training tables carry the title's BM25


def test_the_ranker_orders_judged_products_above_the_rest_better_than_the_fused_order(world, trained):
    ranker, _ = trained

    def learned(q):
        table = world["tables"][q]
        return [table.ids[i] for i in np.argsort(-ranker.score_table(table), kind="stable")]
    fused = _mean_ndcg(world, world["train"], lambda q: world["tables"][q].ids)
    assert _mean_ndcg(world, world["train"], learned) > fused


def test_each_candidates_contributions_sum_to_its_prediction(world, trained):
    ranker, _ = trained
    table = world["tables"][world["valid"][0]]
    x = table.select(ranker.features)
    contrib = ranker.contributions(x)
    assert contrib.shape == (len(table.ids), len(ranker.features) + 1)
    np.testing.assert_allclose(contrib.sum(axis=1), ranker.predict(x), rtol=1e-6, atol=1e-6)


def test_a_served_rankers_process_prepares_the_most_popular_products_text_before_queries_need_it(world, client):
    index = live_index(client, world["catalogue"])
    features.words.cache_clear()
    assert warm_product_text(client, index, 3) == 3 and features.words.cache_info().currsize >= 3
    count = client.count(index=index)["count"]
    assert warm_product_text(client, index, 10 * count) == count
    titles = [h["_source"]["title"] for h in client.search(index=index, size=count, _source=["title"])["hits"]["hits"]]
    before = features.words.cache_info()
    for title in titles:
        features.words(title)
    assert features.words.cache_info().hits - before.hits == len(titles)  # every title tokenised already
    assert warm_product_text(client, "no-such-index", 10) == 0  # a failed warm-up ends quietly


def test_a_saved_ranker_loads_with_the_same_features_and_predictions(world, trained, tmp_path):
    ranker, info = trained
    registry = ModelRegistry(tmp_path)
    card = rk.model_card(ranker.booster, info, {"train": {}}, {"rule": "test"})
    rk.save_ranker(registry, "rank-a", ranker.booster, card, ranker.title_stats)
    registry.register("rank-a", base_model="lightgbm-lambdarank")
    again = rk.load_ranker(registry, "rank-a")
    x = world["tables"][world["valid"][0]].select(ranker.features)
    assert again.features == ranker.features and again.title_stats == ranker.title_stats
    assert again.backend == "compiled" and ranker.backend == "lightgbm-c"
    np.testing.assert_allclose(again.predict(x), ranker.predict(x), rtol=0, atol=1e-9)
    assert list(registry.resolve("rank-a", "ranker").glob("compiled/*.o"))
    assert registry.verify_hashes("rank-a")["ok"]  # the machine code is derived, not a hashed weight


def test_without_a_ranker_learned_answers_in_hybrid_order_and_hybrid_stays_the_default(world):
    searcher, name = world["searcher"], world["catalogue"]
    q = world["valid"][0]
    hybrid = searcher.search(name, SearchRequest(q=q, size=20, strategy="hybrid"))
    learned = searcher.search(name, SearchRequest(q=q, size=20, strategy="learned"))
    assert [h["id"] for h in learned["hits"]] == [h["id"] for h in hybrid["hits"]]
    assert any(note.startswith("learned: no ranker") for note in learned["filters_applied"])
    assert searcher.search(name, SearchRequest(q=q, size=5))["strategy"] == "hybrid"


def test_the_gate_refuses_a_ranker_trained_on_inverted_labels(world, client):
    booster, _ = rk.train_ranker(_data(world, world["train"], relabel=lambda y: 4 - y), rounds=80)
    worse = Ranker(booster, booster.feature_name(), "worse")
    valid = {q: world["judgments"][q] for q in world["valid"]}
    decision = gating.compare_ranker(client, world["settings"], world["catalogue"], worse, valid)
    assert decision["decision"] == "reject"
    assert decision["candidate_ndcg@10"] < decision["live_ndcg@10"]
    assert "ranker" not in read_meta(client, live_index(client, world["catalogue"]))


def test_train_splits_by_query_times_each_step_and_writes_the_model_card(world, client):
    judgments = world["judgments"]
    report = run_training(world["settings"], client, world["catalogue"], judgments, echo=lambda line: None,
                          valid_fraction=0.4, threads=2, promote=False)
    steps = report["steps"]
    assert list(steps) == ["split", "features", "fit", "gate", "promote", "query_gate"]
    assert all(step["seconds"] >= 0 for step in steps.values())
    split = steps["split"]
    assert split["train_queries"] + split["tune_queries"] + split["valid_queries"] == len(judgments)
    valid, _ = split_queries(judgments, 0.4, 0)
    assert split["valid_queries"] == len(valid) and steps["gate"]["queries"] <= len(valid)
    card = rk.read_card(world["registry"], report["version"])
    assert card["features"] and {r["feature"] for r in card["importances"]} == set(card["features"])
    assert sum(r["gain"] for r in card["importances"]) > 0
    assert card["params"]["objective"] == "lambdarank" and card["split"]["valid_queries"] == split["valid_queries"]
    assert card["figures"]["gate"]["decision"] == steps["gate"]["decision"]
    model = world["registry"].load(report["version"])
    assert model["parts"] == ["ranker"] and model["gate"]["numbers"]["queries"] == steps["gate"]["queries"]
    assert "ranker/title_stats.json" in model["files"]  # saved beside the model, hashed with it
    assert rk.load_ranker(world["registry"], report["version"]).title_stats == world["title_stats"]
    assert steps["features"]["title_stats"]["titles"] == world["title_stats"].docs
    assert steps["promote"]["promoted"] is False  # not asked to: nothing served
    assert "ranker" not in read_meta(client, live_index(client, world["catalogue"]))


def test_train_gates_the_live_query_encoders_int8_once_where_it_has_no_decision(world, client):
    """A fresh install serves fp32 query vectors until an int8 gate passed: its first training run gates
    the live bi-encoder on its validation queries; a later run leaves the recorded decision."""
    from shopsearch.encoders.onnx import read_card
    from shopsearch.learn.onnx_gate import gate_undecided_query_encoder, live_onnx_encoder
    settings = world["settings"].replace(models_dir=str(world["registry"].root.parent / "models-fresh"))
    _, encoder = live_onnx_encoder(Searcher(client, settings), settings, world["catalogue"])
    assert read_card(encoder.path, encoder.export_dir) == {}  # nothing decided in this fresh models directory
    report = run_training(settings, client, world["catalogue"], world["judgments"], echo=lambda line: None,
                          valid_fraction=0.4, threads=2, promote=False)
    gated = report["steps"]["query_gate"]
    card = read_card(encoder.path, encoder.export_dir)
    assert gated["serving"] == card["serving"] == ("int8" if card["gate"]["passed"] else "fp32")
    assert card["gate"]["judgments"] == report["steps"]["split"]["valid_judgments"]
    assert card["gate"]["queries"] == gated["queries"] == report["steps"]["split"]["valid_queries"]
    again = gate_undecided_query_encoder(client, settings, world["catalogue"], world["judgments"], "other.tsv")
    assert "was gated at" in again["skipped"] and read_card(encoder.path, encoder.export_dir) == card


def test_a_promoted_ranker_becomes_the_default_and_explain_shows_each_feature_and_its_contribution(world, trained, client):
    ranker, info = trained
    registry, name = world["registry"], world["catalogue"]
    rk.save_ranker(registry, "rank-served", ranker.booster, rk.model_card(ranker.booster, info, {}, {}),
                   ranker.title_stats)
    registry.register("rank-served", base_model="lightgbm-lambdarank", catalogue=name)
    index = live_index(client, name)
    rk.promote_ranker(client, registry, name, index, "rank-served", {"decision": "promote"})
    try:
        searcher = Searcher(client, world["settings"])
        out = searcher.search(name, SearchRequest(q=world["valid"][0], size=5, explain=True))
        assert out["strategy"] == "learned" and registry.load("rank-served")["status"] == "promoted"
        assert "LearnedRank(ranker, features)" in out["explain"]["pipeline"]
        for hit in out["hits"]:
            learned = hit["explain"]["learned"]
            assert set(learned["features"]) == set(ranker.features)
            total = learned["expected"] + sum(f["contribution"] for f in learned["features"].values())
            assert total == pytest.approx(learned["score"], abs=1e-4)
        assert any(h["explain"]["learned"]["features"]["title_bm25"]["value"] for h in out["hits"])  # served with its statistics
        scores = [h["explain"]["learned"]["score"] for h in out["hits"]]
        assert scores == sorted(scores, reverse=True)
    finally:
        rk.withdraw_ranker(client, index)
    assert Searcher(client, world["settings"]).search(name, SearchRequest(q=world["valid"][0]))["strategy"] == "hybrid"
