"""Specification of the evaluation core: metrics by hand, then judgments, runner, JSON, report.

Every test here is pure: the search under evaluation is a plain function returning fixed
rankings (the documented ``search(query, strategy)`` interface), not a service.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from shopsearch.evaluation import metrics
from shopsearch.evaluation.report import write_report
from shopsearch.evaluation.run import (
    METRICS, evaluate, load_judgments, score_pairs, select_queries, split_queries, without_latency,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LOG3 = math.log2(3)


# --- nDCG@10 -------------------------------------------------------------------------------

@pytest.mark.parametrize("ranked, judged, expected", [
    pytest.param(["a", "b", "c"], {"a": 3, "b": 2, "c": 1}, 1.0, id="perfect"),
    pytest.param(["c", "b", "a"], {"a": 3, "b": 2, "c": 1}, (1 / LOG3 + 1) / (2 + 1 / LOG3), id="reversed"),
    pytest.param(["x", "a"], {"a": 3}, (2 / LOG3) / 2, id="unrated-first-counts-zero"),
    pytest.param(["b", "a"], {"a": 3, "b": 3}, 1.0, id="ties-either-order"),
    pytest.param(["a", "b"], {"a": 3, "b": 3}, 1.0, id="ties-other-order"),
    pytest.param([], {"a": 3}, 0.0, id="nothing-returned"),
    pytest.param([f"x{i}" for i in range(10)] + ["a"], {"a": 3}, 0.0, id="relevant-at-11-is-past-k"),
    pytest.param(["a", "a"], {"a": 3, "b": 3}, 2 / (2 + 2 / LOG3), id="duplicate-counts-once"),
    pytest.param(["a"], {"a": 2}, 1.0, id="gain-is-relevance-minus-one"),
])
def test_ndcg_at_10(ranked, judged, expected):
    assert metrics.ndcg_at_k(ranked, judged) == pytest.approx(expected)


def test_ndcg_ideal_uses_all_judged_gains_cut_at_k():
    judged = {f"p{i}": 3 for i in range(12)}
    assert metrics.ndcg_at_k([f"p{i}" for i in range(10)], judged) == pytest.approx(1.0)


@pytest.mark.parametrize("score", [metrics.ndcg_at_k, metrics.condensed_ndcg_at_k])
def test_ndcg_is_undefined_when_every_judged_product_is_irrelevant(score):
    assert score(["a", "b"], {"a": 1, "b": 1}) is None


@pytest.mark.parametrize("ranked, judged, plain, condensed", [
    pytest.param(["x", "a"], {"a": 3}, 1 / LOG3, 1.0, id="unrated-first"),
    pytest.param(["x", "y", "b", "a"], {"a": 3, "b": 2},
                 (1 / 2 + 2 / math.log2(5)) / (2 + 1 / LOG3), (1 + 2 / LOG3) / (2 + 1 / LOG3), id="keeps-order"),
    pytest.param(["a", "b"], {"a": 3, "b": 2}, 1.0, 1.0, id="all-rated-same"),
])
def test_condensed_ndcg_drops_unrated_products_but_keeps_order(ranked, judged, plain, condensed):
    assert metrics.ndcg_at_k(ranked, judged) == pytest.approx(plain)
    assert metrics.condensed_ndcg_at_k(ranked, judged) == pytest.approx(condensed)


def test_condensed_ndcg_fills_the_cut_with_rated_products_found_deeper():
    ranked = [f"x{i}" for i in range(20)] + ["a"]
    assert metrics.ndcg_at_k(ranked, {"a": 3}) == 0.0
    assert metrics.condensed_ndcg_at_k(ranked, {"a": 3}) == 1.0


# --- Recall@100 and reciprocal rank ----------------------------------------------------------

@pytest.mark.parametrize("ranked, judged, expected", [
    pytest.param(["a", "b"], {"a": 3, "b": 2.33}, 1.0, id="all-found"),
    pytest.param(["a", "x"], {"a": 3, "b": 2.67}, 0.5, id="half-found"),
    pytest.param(["x"], {"a": 3}, 0.0, id="none-found"),
    pytest.param(["a", "c"], {"a": 3, "c": 2.25}, 1.0, id="below-threshold-is-not-a-positive"),
    pytest.param([f"x{i}" for i in range(100)] + ["a"], {"a": 3}, 0.0, id="rank-101-is-past-k"),
    pytest.param([f"x{i}" for i in range(99)] + ["a"], {"a": 3}, 1.0, id="rank-100-counts"),
    pytest.param(["a", "a"], {"a": 3, "b": 3}, 0.5, id="duplicate-counts-once"),
])
def test_recall_at_100(ranked, judged, expected):
    assert metrics.recall_at_k(ranked, judged) == pytest.approx(expected)


@pytest.mark.parametrize("ranked, judged, expected", [
    pytest.param(["a", "b"], {"a": 3}, 1.0, id="first"),
    pytest.param(["x", "a"], {"a": 3}, 0.5, id="second"),
    pytest.param(["b", "x", "a"], {"a": 2.33, "b": 2.0}, 1 / 3, id="rated-below-threshold-skipped"),
    pytest.param(["x", "y"], {"a": 3}, 0.0, id="none-returned-scores-zero"),
    pytest.param([f"x{i}" for i in range(500)] + ["a"], {"a": 3}, 1 / 501, id="whole-list-no-cut"),
])
def test_reciprocal_rank(ranked, judged, expected):
    assert metrics.reciprocal_rank(ranked, judged) == pytest.approx(expected)


@pytest.mark.parametrize("score", [metrics.recall_at_k, metrics.reciprocal_rank])
def test_queries_without_a_positive_are_undefined_for_recall_and_mrr(score):
    assert score(["a", "b"], {"a": 2.0, "b": 1}) is None


# --- percentile and bootstrap ----------------------------------------------------------------

@pytest.mark.parametrize("values, q, expected", [
    ([1, 2, 3, 4], 50, 2.5), ([10, 20, 30, 40, 50], 95, 48.0), ([7], 95, 7.0), ([3, 1, 2], 50, 2.0),
])
def test_percentile_interpolates_linearly(values, q, expected):
    assert metrics.percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_nan():
    assert math.isnan(metrics.percentile([], 50))


A = [0.9, 0.1, 0.5, 0.7, 0.3, 0.8, 0.2, 0.6]
B = [0.5, 0.2, 0.4, 0.6, 0.1, 0.4, 0.3, 0.5]


def test_bootstrap_is_deterministic_for_a_seed():
    assert metrics.bootstrap_ratio(A, B, n=1000, seed=7) == metrics.bootstrap_ratio(A, B, n=1000, seed=7)


def test_bootstrap_interval_contains_the_ratio_of_means():
    ratio, low, high = metrics.bootstrap_ratio(A, B, n=1000, seed=0)
    assert ratio == pytest.approx(sum(A) / sum(B))
    assert low < ratio < high


def test_bootstrap_of_identical_lists_is_one_with_a_degenerate_interval():
    assert metrics.bootstrap_ratio(A, A) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("a, b", [pytest.param([], [], id="no-queries"), pytest.param([1.0], [0.0], id="baseline-zero")])
def test_bootstrap_ratio_is_nan_when_undefined(a, b):
    assert all(math.isnan(x) for x in metrics.bootstrap_ratio(a, b))


def test_bootstrap_needs_paired_samples():
    with pytest.raises(ValueError):
        metrics.bootstrap_ratio([1.0, 2.0], [1.0])


def test_bootstrap_mean_interval_brackets_the_mean():
    mean, low, high = metrics.bootstrap_mean(A, n=1000)
    assert mean == pytest.approx(sum(A) / len(A)) and low < mean < high


# --- AUC and Spearman ------------------------------------------------------------------------

@pytest.mark.parametrize("pos, neg, expected", [
    pytest.param([3, 4], [1, 2], 1.0, id="perfect"),
    pytest.param([1, 2], [3, 4], 0.0, id="reversed"),
    pytest.param([5, 5], [5, 5, 5], 0.5, id="all-tied"),
    pytest.param([2, 1], [1, 0], 0.875, id="one-tie-counts-half"),
    pytest.param([3, 1], [2], 0.5, id="one-above-one-below"),
])
def test_auc(pos, neg, expected):
    assert metrics.auc(pos, neg) == pytest.approx(expected)


def test_auc_without_one_side_is_nan():
    assert math.isnan(metrics.auc([], [1.0]))


@pytest.mark.parametrize("x, y, expected", [
    pytest.param([1, 2, 3], [10, 20, 30], 1.0, id="perfect"),
    pytest.param([1, 2, 3], [30, 20, 10], -1.0, id="reversed"),
    pytest.param([1, 2, 3], [1, 4, 9], 1.0, id="monotone-not-linear"),
    pytest.param([1, 2, 3, 4], [1, 1, 2, 2], 4 / math.sqrt(20), id="ties-take-mid-ranks"),
])
def test_spearman(x, y, expected):
    assert metrics.spearman(x, y) == pytest.approx(expected)


def test_spearman_of_a_constant_is_nan():
    assert math.isnan(metrics.spearman([1, 2, 3], [5, 5, 5]))


def test_average_ranks_share_ties():
    assert metrics.average_ranks([10, 20, 20, 30]).tolist() == [1.0, 2.5, 2.5, 4.0]


# --- judgments and query selection -----------------------------------------------------------

def write_tsv(path: Path, rows: list[tuple]) -> Path:
    path.write_text("query\tproduct_uid\trelevance\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def test_load_judgments_groups_by_exact_query_text(tmp_path):
    path = write_tsv(tmp_path / "j.tsv", [("Shoes", 100001, 3), ("shoes ", 100001, 1.33),
                                          ("Shoes", 100002, 2.67), ("shoes", 100003, 2)])
    assert load_judgments(path) == {"Shoes": {"100001": 3.0, "100002": 2.67},
                                    "shoes ": {"100001": 1.33}, "shoes": {"100003": 2.0}}


def test_load_judgments_reads_the_real_home_depot_file_header():
    judged = load_judgments(DATA / "homedepot" / "judgments.tsv")
    assert judged["deck over"]["100002"] == 3.0
    assert len(judged) == 8248


@pytest.mark.parametrize("content, message", [
    pytest.param("q\tid\trel\nx\t1\t3\n", "header", id="wrong-header"),
    pytest.param("query\tproduct_uid\trelevance\nx\t1\thigh\n", "not a number", id="relevance-not-numeric"),
    pytest.param("query\tproduct_uid\trelevance\nx\t1\t3\nx\t1\t2\n", "rated twice", id="duplicate-pair"),
])
def test_load_judgments_rejects_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_judgments(path)


QUERIES = [f"query {i}" for i in range(1000)]


def test_split_queries_is_deterministic_disjoint_and_complete():
    part, rest = split_queries(QUERIES, 0.3, seed=1)
    assert (part, rest) == split_queries(reversed(QUERIES), 0.3, seed=1)
    assert not set(part) & set(rest) and sorted(part + rest) == sorted(QUERIES)
    assert 250 < len(part) < 350


def test_split_queries_keeps_a_query_on_its_side_when_the_set_grows():
    part, _ = split_queries(QUERIES[:500], 0.3)
    bigger, _ = split_queries(QUERIES, 0.3)
    assert set(part) <= set(bigger)


@pytest.mark.parametrize("fraction, sizes", [(0.0, (0, 1000)), (1.0, (1000, 0))])
def test_split_queries_extremes(fraction, sizes):
    assert tuple(map(len, split_queries(QUERIES, fraction))) == sizes


def test_select_queries_limit_is_a_stable_sorted_sample():
    chosen = select_queries(QUERIES, 10)
    assert chosen == sorted(chosen) and len(chosen) == 10
    assert chosen == select_queries(reversed(QUERIES), 10)
    assert chosen != sorted(QUERIES)[:10]  # a hash sample, not the alphabetical head


# --- evaluate() and its JSON -----------------------------------------------------------------

JUDGED = {
    "drill": {"d1": 3, "d2": 2, "d3": 1},
    "hammer": {"h1": 3},
    "rare": {"r1": 2},  # no positive: nDCG only
    "void": {"v1": 1},  # ideal DCG 0: scored by nothing
}
RANKINGS = {
    "bm25": {"drill": ["d1", "d2", "d3"], "hammer": ["h1"], "rare": ["r1"], "void": []},
    "hybrid": {"drill": ["x", "d1"], "hammer": [], "rare": ["r1"], "void": ["v1"]},
}


def fixed_search(query: str, strategy: str) -> list[str]:
    """A search function with fixed answers: the documented interface, no service behind it."""
    return RANKINGS[strategy][query]


def test_evaluate_runs_each_query_once_per_strategy_in_sorted_order():
    calls, ticks = [], []

    def search(query, strategy):
        calls.append((query, strategy))
        return fixed_search(query, strategy)

    result = evaluate(JUDGED, ["bm25", "hybrid"], search, progress=lambda done, total: ticks.append((done, total)))
    assert calls == [(q, s) for q in sorted(JUDGED) for s in ("bm25", "hybrid")]
    assert ticks[-1] == (8, 8) and len(ticks) == 8
    assert len(result.latency_ms["bm25"]) == 4


def test_evaluate_scores_hand_computed_means():
    result = evaluate(JUDGED, ["bm25", "hybrid"], fixed_search)
    assert result.counts() == {"ndcg@10": 3, "condensed_ndcg@10": 3, "recall@100": 2, "mrr": 2}
    assert result.mean("bm25", "ndcg@10") == pytest.approx(1.0)
    # hybrid: drill 2/log2(3) / (2 + 1/log2(3)), hammer 0, rare 1
    drill = (2 / LOG3) / (2 + 1 / LOG3)
    assert result.mean("hybrid", "ndcg@10") == pytest.approx((drill + 0 + 1) / 3)
    assert result.mean("hybrid", "condensed_ndcg@10") == pytest.approx((2 / (2 + 1 / LOG3) + 0 + 1) / 3)
    assert result.mean("hybrid", "recall@100") == pytest.approx(0.5)
    assert result.mean("hybrid", "mrr") == pytest.approx(0.25)


def test_to_json_has_exactly_the_documented_structure():
    doc = evaluate(JUDGED, ["bm25", "hybrid"], fixed_search).to_json("homedepot", "judgments.tsv")
    assert list(doc) == ["catalogue", "judgments", "queries", "strategies"]
    assert (doc["catalogue"], doc["judgments"], doc["queries"]) == ("homedepot", "judgments.tsv", 3)
    assert list(doc["strategies"]) == ["bm25", "hybrid"]
    for entry in doc["strategies"].values():
        assert list(entry) == [*METRICS, "p50_ms", "p95_ms", "vs_bm25"]
        assert list(entry["vs_bm25"]) == list(METRICS)
        assert all(len(v) == 3 for v in entry["vs_bm25"].values())
    assert doc["strategies"]["bm25"]["vs_bm25"]["ndcg@10"] == [1.0, 1.0, 1.0]
    assert doc["strategies"]["hybrid"]["vs_bm25"]["mrr"][0] == pytest.approx(0.25)
    json.dumps(doc, allow_nan=False)  # strict JSON: undefined numbers are null


def test_to_json_is_deterministic_apart_from_latency():
    def run():
        return evaluate(JUDGED, ["bm25", "hybrid"], fixed_search).to_json("c", "j.tsv")
    assert without_latency(run()) == without_latency(run())
    assert "p50_ms" not in without_latency(run())["strategies"]["bm25"]


def test_to_json_without_a_bm25_run_writes_null_ratios():
    doc = evaluate(JUDGED, ["hybrid"], fixed_search).to_json("c", "j.tsv")
    assert doc["strategies"]["hybrid"]["vs_bm25"]["ndcg@10"] == [None, None, None]


def test_evaluate_limit_queries_takes_the_first_of_the_stable_sample():
    result = evaluate(JUDGED, ["bm25"], fixed_search, limit_queries=2)
    assert result.queries == select_queries(JUDGED, 2) and len(result.queries) == 2


def test_evaluate_compares_ids_as_strings():
    result = evaluate({"q": {"1": 3}}, ["bm25"], lambda query, strategy: [1])
    assert result.mean("bm25", "ndcg@10") == 1.0


# --- report ----------------------------------------------------------------------------------

def test_report_writes_markdown_plots_and_the_worst_queries(tmp_path):
    result = evaluate(JUDGED, ["bm25", "hybrid"], fixed_search)
    path = write_report(result, tmp_path / "report", "homedepot", titles={"h1": "Claw | Hammer"})
    text = path.read_text(encoding="utf-8")
    assert path.suffix == ".md"
    assert list((tmp_path / "report").glob("*.png"))
    assert "'hammer'" in text and "'drill'" in text  # both lose nDCG@10 to bm25
    assert "Claw \\| Hammer" in text  # titles shown, escaped for the table
    assert "| hybrid | 0 | 1 | 2 |" in text  # wins, ties, losses: void has no nDCG


# --- Chinese query-title pairs ---------------------------------------------------------------

def char_counts(texts: list[str]):
    """A tiny bag-of-characters encoder: enough to test the scoring, no model needed."""
    out = np.zeros((len(texts), 512))
    for i, text in enumerate(texts):
        for ch in text:
            out[i, ord(ch) % 512] += 1
    return out


def test_score_pairs_on_hand_made_pairs(tmp_path):
    rows = [("鞋", "鞋子", 2), ("鞋", "鞋店", 2), ("鞋", "天气", 0), ("鞋", "新闻", 0), ("鞋", "鞋鞋", 1)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"id": i, "query": q, "title": t, "label": str(lab)}, ensure_ascii=False) + "\n"
                            for i, (q, t, lab) in enumerate(rows)), encoding="utf-8")
    scores = score_pairs(path, char_counts)
    assert scores["pairs"] == 5 and scores["auc_2_vs_0"] == 1.0
    assert -1.0 <= scores["spearman"] <= 1.0


def test_score_pairs_reads_the_real_qbqtc_file():
    scores = score_pairs(DATA / "chinese" / "qbqtc_test.jsonl", char_counts)
    assert scores["pairs"] == 5000
    assert scores["auc_2_vs_0"] > 0.6  # shared characters already separate 2 from 0
