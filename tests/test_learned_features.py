"""Specification of the learned ranker's features (``shopsearch/query/features.py``), on real Home Depot
query and title text: pure functions, one row per candidate, one column per feature.
"""

from __future__ import annotations

import csv
import hashlib
import math

import numpy as np
import pytest

NAN = float("nan")

from shopsearch import hooks
from shopsearch.query.features import BUILT_IN, MATCH_NAMES, TEXT, feature_table, sizes, shopper_features, text_features, tokens, words

from .conftest import DATA
from .reference_features import reference_feature_table
from .reference_features import tokens as reference_tokens

# real Home Depot queries and titles (../shared/data/homedepot)
QUERY = "2x6 metal brakets"
SOURCES = {
    "102893": {"title": "Simpson Strong-Tie 2 in. x 6 in. 12-Gauge Galvanized Steel Joist Hanger", "material": "Galvanized Steel"},
    "100001": {"title": "Simpson Strong-Tie 12-Gauge Angle", "material": "Galvanized Steel"},
    "173670": {"title": "Home Styles Urban Metal Arm Chair in Aged Metal", "colour": "Aged Metal"},
}
RANKED = [("173670", 0.9), ("102893", 0.6), ("100001", 0.2)]


def table(**kw):
    args = dict(bm25={"173670": 17.6, "100001": 4.0}, knn={"102893": 0.8, "100001": 0.7})
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


def test_a_candidate_the_bm25_list_missed_has_no_bm25_but_its_title_matches():
    t = table()
    row = t.row(1)  # 102893: k-NN only, "... Galvanized Steel Joist Hanger": no query word
    assert row["bm25"] is None and all(row[f"match_{n}"] == 0.0 for n in MATCH_NAMES)
    assert row["vector"] == pytest.approx(0.6)  # Lucene's (1 + cos) / 2 = 0.8 turned back into the cosine


def test_title_matches_are_read_from_the_title_for_every_candidate():
    t = feature_table("metal brakets", [("a", 1.0), ("b", 0.5), ("c", 0.2)],
                      {"a": {"title": "Steel Metal Brackets"}, "b": {"title": "Metal Brackets, 2-Pack"},
                       "c": {"title": "Brackets for a metal shelf"}}, bm25={}, knn={})
    assert [t.row(i)["match_title"] for i in range(3)] == [1.0, 1.0, 1.0]   # "metal" in each title
    assert [t.row(i)["match_title_all"] for i in range(3)] == [0.0, 0.0, 0.0]   # "brakets" in none
    assert [t.row(i)["match_title_fuzzy"] for i in range(3)] == [1.0, 1.0, 1.0]   # brakets: one edit from bracket


def test_the_phrase_needs_the_words_in_order_and_proximity_allows_three_between():
    t = feature_table("metal shelf", [("a", 1.0), ("b", 0.5), ("c", 0.2)],
                      {"a": {"title": "Metal Shelf Bracket"}, "b": {"title": "Shelf of Painted Metal"},
                       "c": {"title": "Metal Brackets for a Wall Mounted Glass Shelf"}}, bm25={}, knn={})
    assert [t.row(i)["match_title_phrase"] for i in range(3)] == [1.0, 0.0, 0.0]
    assert [t.row(i)["match_title_near"] for i in range(3)] == [1.0, 1.0, 0.0]


def test_a_typo_in_the_first_letter_or_a_short_word_is_no_fuzzy_match():
    t = feature_table("kombo 2x4", [("a", 1.0), ("b", 0.5)],
                      {"a": {"title": "Combo Kit 2x4"}, "b": {"title": "Kombi Kit 2x6"}}, bm25={}, knn={})
    assert t.row(0)["match_title_fuzzy"] == 0.0   # combo: the first letter differs
    assert t.row(1)["match_title_fuzzy"] == 0.0   # kombi is one edit away, but 2x6 is no typo of 2x4


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


# --- the table over all candidates at once gives the one-candidate-at-a-time numbers ----------

def _home_depot():
    """Real Home Depot text: every product's title, colour and material; the judged queries."""
    def read(name):
        with open(DATA / "homedepot" / name, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter="\t")
            next(reader)
            return list(reader)
    products = {r[0]: {"id": r[0], "title": r[1]} for r in read("products.tsv")}
    for side, key in (("colors.tsv", "colour"), ("materials.tsv", "material")):
        for pid, value in read(side):
            if pid in products:
                products[pid][key] = value
    judged: dict[str, list[str]] = {}
    for q, pid, _ in read("judgments.tsv"):
        judged.setdefault(q, []).append(pid)
    return products, judged


@pytest.fixture(scope="module")
def home_depot():
    return _home_depot()


def _candidates(products, judged, q, n=100):
    """A query's judged products and the next ones by id (fixed, reproducible), with retrieval
    scores derived from the ids so that some candidates miss each list, some prices missing."""
    ids = sorted(products)
    first = ids.index(judged[q][0])
    chosen = list(dict.fromkeys(judged[q] + ids[first:first + n]))[:n]
    digest = {d: int(hashlib.sha256(f"{q}|{d}".encode()).hexdigest()[:8], 16) for d in chosen}
    ranked = sorted(((d, (digest[d] % 1000) / 1000.0) for d in chosen), key=lambda p: -p[1])
    bm25 = {d: 1.0 + digest[d] % 2000 / 100.0 for d in chosen if digest[d] % 5}
    knn = {d: 0.5 + digest[d] % 500 / 1000.0 for d in chosen if digest[d] % 3}
    sources = {d: {**products[d], **({"price": digest[d] % 300 / 3.0} if digest[d] % 7 else {})} for d in chosen}
    return ranked, sources, bm25, knn


def test_the_table_over_all_candidates_equals_the_one_candidate_at_a_time_reference(home_depot):
    products, judged = home_depot
    queries = sorted(judged)[::97]  # about 85 real queries over the alphabet, some with sizes and model numbers
    for q in queries:
        ranked, sources, bm25, knn = _candidates(products, judged, q)
        new = feature_table(q, ranked, sources, bm25, knn)
        old = reference_feature_table(q, ranked, sources, bm25, knn)
        assert new.ids == old.ids and new.names[:len(old.names)] != [] and set(old.names) <= set(new.names)
        np.testing.assert_array_equal(new.select(old.names), old.matrix, err_msg=q)


def test_every_home_depot_title_tokenises_as_the_reference_does(home_depot):
    products, _ = home_depot
    for p in products.values():
        assert list(words(p["title"])) == tokens(p["title"]) == reference_tokens(p["title"]), p["title"]


@pytest.mark.parametrize("query", ["", "2x6", "dewalt 20v max drill", "ceiling fan"])
def test_one_candidates_text_features_are_its_row_of_the_table(query):
    t = feature_table(query, RANKED, SOURCES, bm25={}, knn={})
    start = list(BUILT_IN).index("title_terms_share")
    row = text_features(tokens(query), SOURCES["102893"])
    # rare_terms_share weighs by rarity among the candidates; the sizes need the query as typed
    same = [n for n in TEXT if n not in ("rare_terms_share",)]
    np.testing.assert_array_equal(np.array([row[TEXT.index(n)] for n in same]), t.select(same)[1])


@pytest.mark.parametrize("text, expected", [
    ('1/2 in. x 10 ft. PVC', {"1/2in", "10ft"}),
    ('1/2" PVC', {"1/2in"}),
    ("1/2in pvc", {"1/2in"}),
    ("DEWALT 20-Volt MAX", {"20v"}),
    ("5 gal. bucket", {"5gal"}),
    ("2x6 metal brakets", set()),
])
def test_sizes_are_one_spelling_whatever_the_writing(text, expected):
    assert sizes(text) == expected


def test_a_size_named_alike_counts_and_another_size_of_the_unit_contradicts():
    sources = {"a": {"title": '1/2 in. x 10 ft. PVC Pipe'}, "b": {"title": '3/4 in. x 10 ft. PVC Pipe'},
               "c": {"title": "PVC Cement"}}
    t = feature_table('1/2" pvc pipe', [("a", 0.9), ("b", 0.8), ("c", 0.7)], sources, bm25={}, knn={})
    assert t.column("sizes_share").tolist() == [1.0, 0.0, 0.0]
    assert t.column("size_conflict").tolist() == [0.0, 1.0, 0.0]
    assert math.isnan(feature_table("pvc pipe", [("a", 1.0)], sources, bm25={}, knn={}).row(0)["sizes_share"] or NAN)


def test_query_terms_count_as_covered_in_the_title_or_the_attributes_and_pairs_in_order():
    sources = {"a": {"title": "Arm Chair", "colour": "Aged Metal"}, "b": {"title": "Metal Arm Chair"}}
    t = feature_table("metal arm chair", [("a", 0.9), ("b", 0.8)], sources, bm25={}, knn={})
    assert t.column("covered_share").tolist() == [1.0, 1.0]
    assert t.column("title_terms_share").tolist() == pytest.approx([2 / 3, 1.0])
    assert t.column("pairs_share").tolist() == [0.5, 1.0]       # "arm chair" in both, "metal arm" in b only
    assert t.column("title_in_query").tolist() == [1.0, 1.0]


def test_pairs_in_order_and_the_titles_named_words_follow_their_definitions_on_real_queries(home_depot):
    products, judged = home_depot
    for q in sorted(judged)[::97] + ["bracket bracket shelf", "shelf"]:  # a repeated term, a one-word query
        ranked, sources, bm25, knn = _candidates(products, judged, q if q in judged else sorted(judged)[0])
        t = feature_table(q, ranked, sources, bm25, knn)
        terms, titles = tokens(q), [words(sources[d].get("title") or "") for d in t.ids]
        named = [len([w for w in title if w in set(terms)]) / len(title) if title else NAN for title in titles]
        np.testing.assert_array_equal(t.column("title_in_query"), named, err_msg=q)
        if len(terms) > 1:
            pairs = list(zip(terms, terms[1:]))
            in_order = [len([p for p in pairs if p in set(zip(title, title[1:]))]) / len(pairs) for title in titles]
            np.testing.assert_array_equal(t.column("pairs_share"), in_order, err_msg=q)


def test_a_phrase_a_word_pair_or_a_window_is_matched_within_one_candidates_title():
    sources = {"a": {"title": "Shelf Metal"}, "b": {"title": "Shelf Bracket"},
               "c": {"title": "Shelf with one two three four Metal"}, "d": {"title": "Shelf"}}
    t = feature_table("metal shelf", [("a", 0.9), ("b", 0.8), ("c", 0.7), ("d", 0.6)], sources, bm25={}, knn={})
    assert t.column("match_title_all").tolist() == [1.0, 0.0, 1.0, 0.0]
    assert t.column("match_title_phrase").tolist() == [0.0, 0.0, 0.0, 0.0]   # "metal" ends a, "shelf" starts b
    assert t.column("pairs_share").tolist() == [0.0, 0.0, 0.0, 0.0]
    assert t.column("match_title_near").tolist() == [1.0, 0.0, 0.0, 0.0]     # c's words are six apart


def test_a_candidate_without_a_title_has_no_words_and_no_share_of_them():
    sources = {"a": {"title": "Metal Shelf"}, "b": {}, "c": {"title": ""}}
    t = feature_table("metal shelf", [("a", 0.9), ("b", 0.8), ("c", 0.7)], sources, bm25={}, knn={})
    assert t.column("title_terms").tolist() == [2.0, 0.0, 0.0]
    assert t.column("match_title").tolist() == [1.0, 0.0, 0.0]
    assert t.column("title_in_query")[0] == 1.0 and np.isnan(t.column("title_in_query")[1:]).all()
