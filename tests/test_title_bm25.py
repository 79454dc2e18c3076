"""The title's own BM25 score: Lucene's formula over the catalogue's title statistics (pure)."""

import math

import numpy as np
import pytest

from shopsearch.query.features import feature_table, words
from shopsearch.query.title_bm25 import TitleStats, title_bm25

CATALOGUE = ["Simpson Strong-Tie 2x6 Galvanized Joist Hanger", "Everbilt 2x6 Metal Bracket",
             "Everbilt Zinc Corner Bracket", "Husky Steel Shelf Bracket", "Glacier Bay Chrome Faucet",
             "DEWALT 20-Volt Drill Driver Kit"]
STATS = TitleStats.from_titles(words(t) for t in CATALOGUE)


def lucene_bm25(terms, title, stats):
    """BM25 written out term by term, as Lucene's BM25Similarity scores one field."""
    score = 0.0
    for t in terms:
        tf = title.count(t)
        n = stats.df.get(t, 1)
        idf = math.log(1 + (stats.docs - n + 0.5) / (n + 0.5))
        score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len(title) / stats.avg_words))
    return score


def test_each_title_scores_as_lucene_bm25_over_the_catalogue_statistics():
    titles = [words(t) for t in CATALOGUE]
    for query in ("2x6 metal brackets", "bracket bracket", "dewalt drill", "toilet"):
        terms = words(query)
        np.testing.assert_allclose(title_bm25(terms, titles, STATS), [lucene_bm25(terms, t, STATS) for t in titles])


def test_a_rare_word_weighs_more_than_a_common_one_and_a_longer_title_less():
    bracket, hanger = title_bm25(["bracket"], [("bracket",)], STATS)[0], title_bm25(["hanger"], [("hanger",)], STATS)[0]
    assert hanger > bracket  # in one title of six against three
    short, long = title_bm25(["bracket"], [("metal", "bracket"), ("metal", "steel", "corner", "bracket")], STATS)
    assert short > long > 0


def test_a_word_the_statistics_lack_counts_as_in_one_title():
    assert STATS.idf("unseenword") == STATS.idf("hanger") == pytest.approx(math.log(1 + 5.5 / 1.5))


def test_the_statistics_keep_the_most_frequent_words_and_survive_a_save(tmp_path):
    capped = TitleStats.from_titles((words(t) for t in CATALOGUE), max_words=2)
    assert capped.df == {"bracket": 3, "2x6": 2} and capped.docs == 6  # of the words in two titles, the first
    path = STATS.save(tmp_path)
    assert path.name == "title_stats.json" and TitleStats.load(tmp_path) == STATS
    assert TitleStats.load(tmp_path / "elsewhere") is None


def test_the_feature_table_carries_the_score_only_with_statistics():
    sources = {str(i): {"title": t} for i, t in enumerate(CATALOGUE)}
    ranked = [(str(i), 1.0 - i / 10) for i in range(len(CATALOGUE))]
    with_stats = feature_table("2x6 metal bracket", ranked, sources, bm25={}, knn={}, title_stats=STATS)
    expected = [lucene_bm25(words("2x6 metal bracket"), words(t), STATS) for t in CATALOGUE]
    np.testing.assert_allclose(with_stats.column("title_bm25"), expected)
    assert with_stats.column("title_bm25")[1] == max(expected)  # the Everbilt 2x6 metal bracket
    without = feature_table("2x6 metal bracket", ranked, sources, bm25={}, knn={})
    assert np.isnan(without.column("title_bm25")).all()
