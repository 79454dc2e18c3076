"""The learning loop end to end on a small Home Depot slice: simulated clicks -> fine-tune -> gate -> swap.

Real parts only: the slice is ingested through the workers, clicks are simulated through the
real shopper search and stored by the real middleware, training runs sentence-transformers and
the reindex runs through the Celery workers. Queries are split in two: clicks come from one
half, the gate reads the human judgments of the other.
"""

from __future__ import annotations

import csv
import uuid

import pytest

from shopsearch.evaluation.run import split_queries
from shopsearch.index.versions import live_index
from shopsearch.learn import loop as finetune_loop
from shopsearch.learn.registry import ModelRegistry
from shopsearch.ops.simulate import simulate_clicks
from shopsearch.workers import dispatch
from shopsearch.workers.dispatch import run_ingest

from .conftest import DATA

QUERIES = 60


def _write_tsv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture(scope="module")
def world(services, settings, client, tmp_path_factory):
    """A catalogue of the products judged for 60 queries plus 100 others, with clicks on 60 % of the queries."""
    tmp = tmp_path_factory.mktemp("loop")
    with open(DATA / "homedepot" / "judgments.tsv", newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader)
        rows = list(reader)
    queries = sorted({r[0] for r in rows})[:QUERIES * 7:7]  # spread over the alphabet, deterministic
    judged = [r for r in rows if r[0] in set(queries)]
    valid, train = split_queries(queries, 0.4, seed=1)
    _write_tsv(tmp / "train.tsv", header, [r for r in judged if r[0] in set(train)])
    _write_tsv(tmp / "valid.tsv", header, [r for r in judged if r[0] in set(valid)])
    wanted = {r[1] for r in judged}
    with open(DATA / "homedepot" / "products.tsv", newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        p_header = next(reader)
        products = [r for n, r in enumerate(reader) if r[0] in wanted or n < 100]
    _write_tsv(tmp / "products.tsv", p_header, products)
    for side in ("colors.tsv", "materials.tsv"):  # the homedepot mapping joins them (read in place)
        (tmp / side).symlink_to(DATA / "homedepot" / side)
    name = f"test_loop_{uuid.uuid4().hex[:8]}"
    summary = run_ingest(settings, tmp / "products.tsv", name, mapping="homedepot")
    assert summary.complete
    # on 24 validation queries over 400 products BM25 decides most of a hybrid ranking: the gate
    # compares the encoders themselves (dense), where a better or worse model shows
    loop_settings = settings.replace(models_dir=str(tmp / "models"), gate_strategy="dense")
    counts = simulate_clicks(loop_settings, name, str(tmp / "train.tsv"), sessions=400, seed=0)
    assert counts["click"] > 50
    yield {"catalogue": name, "settings": loop_settings, "dir": tmp}
    client.indices.delete(index=f"{name}-v*", ignore_unavailable=True, allow_no_indices=True)


# The loop's cross-encoder is trained, registered and served here; how well it ranks is
# test_finetune's matter (the gate reads the dense strategy): a few steps of 16 rows show the loop
# (40 steps took 150 of this module's 290 s in CI)
RERANK_STEPS = 6


def _run(world, **kwargs):
    kwargs.setdefault("epochs", 1)
    return dispatch.run_loop(world["settings"], world["catalogue"], world["dir"] / "valid.tsv",
                             rerank_max_steps=RERANK_STEPS, echo=lambda line: None, **kwargs)


def test_a_model_trained_on_shuffled_clicks_is_rejected_and_the_alias_stays(world, client):
    before = live_index(client, world["catalogue"])
    state = _run(world, shuffle_labels=True, rerank=False)
    gate = state["steps"]["gate"]
    assert gate["decision"] == "reject" and gate["candidate_ndcg@10"] < gate["live_ndcg@10"]
    assert state["steps"]["swap"]["swapped"] is False
    assert "not swapped in" in state["steps"]["query_gate"]["skipped"]  # its bi-encoder serves nobody
    assert live_index(client, world["catalogue"]) == before
    entry = ModelRegistry(world["settings"].models_path).load(state["version"])
    assert entry["status"] == "rejected" and entry["gate"]["decision"] == "reject"
    world["shuffled_version"] = state["version"]


def test_a_model_trained_on_the_clicks_passes_the_gate_and_goes_live(world, client):
    """A bad model went live (the shuffled one, promoted by hand); learning from the clicks repairs it."""
    from shopsearch.learn.rollout import promote
    bad = finetune_loop.load_state(world["settings"], world["shuffled_version"])
    promote(world["settings"], world["catalogue"], bad["steps"]["reindex"]["index"])

    state = _run(world, stop_after="reindex", epochs=2)  # as if the process died after the reindex
    assert set(state["steps"]) == {"collect", "train", "reindex"}
    assert state["base_version"].startswith(world["shuffled_version"] + "@")  # learns from the live model
    trained_at = state["steps"]["train"]["at"]
    summary = state["steps"]["collect"]["summary"]
    assert summary["pairs_train"] > 0 and "propensities" in summary

    state = _run(world, version=state["version"])  # resumed: nothing is trained again
    assert state["steps"]["train"]["at"] == trained_at
    gate = state["steps"]["gate"]
    assert gate["decision"] == "promote", gate
    assert gate["candidate_ndcg@10"] > gate["live_ndcg@10"] * (1 + world["settings"].gate_margin)
    assert live_index(client, world["catalogue"]) == state["steps"]["reindex"]["index"]
    meta = client.indices.get_mapping(index=state["steps"]["reindex"]["index"])
    assert next(iter(meta.values()))["mappings"]["_meta"]["model_version"].startswith(state["version"] + "@")
    registry = ModelRegistry(world["settings"].models_path)
    entry = registry.load(state["version"])
    assert entry["status"] == "promoted" and entry["gate"]["decision"] == "accept"
    assert set(entry["parts"]) == {"bi-encoder", "cross-encoder"} and registry.verify_hashes(state["version"])["ok"]
    gated = state["steps"]["query_gate"]  # the new query encoder's int8, gated once it serves
    if "skipped" in gated:
        assert "torch" in gated["skipped"]  # CUDA: torch encodes the queries
    else:
        card = entry["onnx"]["bi-encoder"]
        assert gated["serving"] == card["serving"] == ("int8" if card["gate"]["passed"] else "fp32")
        assert card["gate"]["judgments"] == str((world["dir"] / "valid.tsv").resolve()) and gated["queries"] > 0
    world["trained"] = state["version"]


def test_hybrid_rerank_uses_the_cross_encoder_trained_with_the_model(world, client):
    from shopsearch.query.searcher import Searcher, SearchRequest
    version = world.get("trained")
    assert version, "needs the model of the previous test"
    state = finetune_loop.load_state(world["settings"], version)
    searcher = Searcher(client, world["settings"].replace(result_cache_seconds=0))
    index = state["steps"]["reindex"]["index"]
    out = searcher.search(world["catalogue"], SearchRequest(q="deck over", size=10, strategy="hybrid-rerank", explain=True), index)
    head = min(world["settings"].rerank_depth, 10)
    assert out["hits"] and all("rerank" in h["explain"] for h in out["hits"][:head])
    plain = searcher.search(world["catalogue"], SearchRequest(q="deck over", size=10, strategy="hybrid"), index)
    assert {h["id"] for h in out["hits"][:head]} == {h["id"] for h in plain["hits"][:head]}  # the fused head, re-ordered
    assert [h["id"] for h in out["hits"][head:]] == [h["id"] for h in plain["hits"][head:]]  # the rest in fused order


def test_the_loop_runs_as_a_celery_chain_and_resumes_from_its_state(world):
    version = world.get("trained")
    assert version
    # every step is already done: the chain goes through the rollout worker and changes nothing
    last = dispatch.start_chain(world["settings"], world["catalogue"], None, version=version).get(timeout=600)
    final = list(finetune_loop.STEPS)[-1]  # query_gate, after the swap
    assert last == {"version": version, "step": final, "done": True,
                    "result": finetune_loop.load_state(world["settings"], version)["steps"][final]}
