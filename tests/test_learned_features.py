"""Specification of the learned ranker's features (``shopsearch/query/features.py``), on real Home Depot
query and title text: pure functions, one row per candidate, one column per feature.
"""

from __future__ import annotations

import math

import pytest

from shopsearch import hooks
from shopsearch.query.build import bm25_body, feature_clauses
from shopsearch.query.features import BUILT_IN, MATCH_NAMES, feature_table, shopper_features, text_features, tokens

# real Home Depot queries and titles (../shared/data/homedepot)
QUERY = "2x6 metal brakets"
SOURCES = {
    "102893": {"title": "Simpson Strong-Tie 2 in. x 6 in. 12-Gauge Galvanized Steel Joist Hanger", "material": "Galvanized Steel"},
    "100001": {"title": "Simpson Strong-Tie 12-Gauge Angle", "material": "Galvanized Steel"},
    "173670": {"title": "Home Styles Urban Metal Arm Chair in Aged Metal", "colour": "Aged Metal"},
}
RANKED = [("173670", 0.9), ("102893", 0.6), ("100001", 0.2)]


def table(**kw):
    args = dict(bm25={"173670": 17.6, "100001": 4.0}, knn={"102893": 0.8, "100001": 0.7},
                matched={"173670": ["title", "title_fuzzy"], "100001": {"title": 3.5}})
    args.update(kw)
    return feature_table(QUERY, RANKED, SOURCES, **args)


@pytest.mark.parametrize("text, expected", [
    ("2 x 6 Brackets", ["2x6", "bracket"]),
    ("DEWALT 20-Volt MAX", ["dewalt", "20", "volt", "max"]),
    ("glass", ["glass"]),
])
def test_tokens_join_dimensions_and_drop_plurals(text, expected):
    assert tokens(text) == expected


def test_every_candidate_gets_one_row_in_the_fused_order_with_every_built_in_column():
    t = table()
    assert t.ids == ["173670", "102893", "100001"] and list(t.names[:len(BUILT_IN)]) == list(BUILT_IN)
    assert t.matrix.shape == (3, len(t.names))
    assert t.column("fused_rank").tolist() == [1.0, 2.0, 3.0]


def test_a_candidate_the_bm25_list_missed_has_no_bm25_and_unknown_named_matches():
    t = table()
    row = t.row(1)  # 102893: k-NN only
    assert row["bm25"] is None and all(row[f"match_{n}"] is None for n in MATCH_NAMES)
    assert row["vector"] == pytest.approx(0.6)  # Lucene's (1 + cos) / 2 = 0.8 turned back into the cosine


def test_named_matches_are_flags_or_the_clusters_scores_when_it_sends_them():
    t = table()
    assert t.row(0)["match_title"] == 1.0 and t.row(0)["match_title_fuzzy"] == 1.0 and t.row(0)["match_title_phrase"] == 0.0
    assert t.row(2)["match_title"] == 3.5 and t.row(2)["match_brand"] == 0.0


def test_dimensions_in_the_query_match_the_title_written_with_inches():
    # "2x6" in the query and "2 in. x 6 in." in the title share the numbers 2 and 6
    assert table().row(1)["numbers_share"] == 1.0
    assert table().row(0)["numbers_share"] == 0.0


def test_colour_and_material_words_named_in_the_query_count():
    assert table().row(0)["colour_in_query"] == 0.5   # "Aged Metal": metal is in the query
    assert table().row(1)["material_in_query"] == 0.0
    assert math.isnan(text_features(tokens(QUERY), {"title": "x"})[6])  # no colour: unknown, not 0


def test_price_is_compared_with_the_querys_other_candidates():
    sources = {d: {**s, "price": p} for (d, s), p in zip(SOURCES.items(), (10.0, 20.0, 40.0))}
    t = feature_table(QUERY, RANKED, sources, bm25={}, knn={})
    assert t.row(1)["price_vs_candidates"] == pytest.approx(math.log(10.0 / 20.0))  # 102893 at 10, median 20


def test_shopper_features_are_missing_without_a_profile_and_read_it_with_one():
    assert all(v is None for k, v in table().row(0).items() if k.startswith("shopper_"))
    profile = {"items": {"100001": 3.0}, "categories": {}, "brands": {}, "price_band": [5.0, 15.0]}
    rows = shopper_features(profile, {"100001": {"price": 10.0}}, ["100001", "173670"])
    assert rows[0].tolist() == [3.0, 0.0, 0.0, 1.0] and rows[1][0] == 0.0


def test_a_plugin_ranking_feature_becomes_a_column():
    class TitleLength:
        @hooks.hookimpl
        def ranking_features(self):
            return [("title_chars", lambda c: len(c["source"].get("title", "")))]
    name = hooks.register(TitleLength(), name="test-title-length")
    try:
        t = table()
    finally:
        hooks.unregister(name)
    assert t.column("title_chars").tolist() == [len(SOURCES[d]["title"]) for d, _ in RANKED]


def test_named_clauses_ride_in_filter_context_beside_match_all_so_no_score_changes():
    body = bm25_body(QUERY, 10, named=True)
    assert body["query"]["bool"]["must"] == bm25_body(QUERY, 10)["query"]["bool"]["must"]
    should = body["query"]["bool"]["filter"][-1]["bool"]["should"]
    assert should[-1] == {"match_all": {}} and should[:-1] == feature_clauses(QUERY)
