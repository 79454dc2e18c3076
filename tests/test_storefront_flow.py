"""The storefront's pure query-flow pieces: facet bodies and counts, price ranges, suggestions,
photo fusion (no services needed)."""

import pytest

from shopsearch.query.facets import FACET_FIELDS, facet_body, price_label, price_ranges, read_facets, round_price
from shopsearch.query.photo import photo_bodies, photo_ranked, with_words
from shopsearch.query.suggest import merge_suggestions, query_suggestion_body, title_suggestion_body


def test_the_facet_request_counts_only_the_ranked_ids_and_returns_no_documents():
    body = facet_body(["3", "1", "2"], [])
    assert body["size"] == 0 and body["query"] == {"ids": {"values": ["3", "1", "2"]}}
    assert set(body["aggs"]) == set(FACET_FIELDS)  # no prices: no price facet


def test_price_buckets_carry_their_bounds_and_empty_ones_are_left_out():
    got = read_facets({"aggregations": {"price": {"buckets": [
        {"key": "*-500.0", "to": 500.0, "doc_count": 3}, {"key": "500.0-1000.0", "from": 500.0, "to": 1000.0, "doc_count": 0},
        {"key": "1000.0-*", "from": 1000.0, "doc_count": 1}]}}})
    assert got["price"] == [{"value": "under 500", "count": 3, "to": 500.0},
                            {"value": "1000 and more", "count": 1, "from": 1000.0}]


@pytest.mark.parametrize("prices,expected", [
    ([], []),
    ([None, None], []),
    ([10, 10, 10], [(None, 10.0), (10.0, None)]),
    ([float("nan"), 100, 900], [(None, 500.0), (500.0, None)]),
])
def test_price_ranges_are_open_ended_at_both_ends_with_round_bounds(prices, expected):
    assert price_ranges(prices) == expected


@pytest.mark.parametrize("value,rounded", [(999, 500.0), (1000, 1000.0), (2600, 2000.0), (0, 0.0)])
def test_price_bounds_round_down_to_one_two_three_or_five(value, rounded):
    assert round_price(value) == rounded


def test_price_labels_read_as_a_shopper_would_say_them():
    assert [price_label(None, 20.0), price_label(20.0, 50.0), price_label(50.0, None)] == ["under 20", "20-50", "50 and more"]


def test_logged_queries_are_suggested_only_when_searched_often_and_found_something():
    body = query_suggestion_body("fashion", "sho", 5)
    filters = body["query"]["bool"]["filter"]
    assert {"term": {"catalogue": "fashion"}} in filters and {"exists": {"field": "query_response_hit_ids"}} in filters
    assert body["aggs"]["queries"]["terms"]["min_doc_count"] == 2


def test_title_suggestions_match_english_and_chinese_analysis_and_cap_the_typed_text():
    body = title_suggestion_body("运动" * 100, 5)
    fields = [next(iter(c["match_phrase_prefix"])) for c in body["query"]["bool"]["should"]]
    assert fields == ["title", "title.zh"]
    assert len(body["query"]["bool"]["should"][0]["match_phrase_prefix"]["title"]["query"]) == 100


def test_suggestions_come_once_each_queries_first_and_at_most_size():
    queries = [{"text": "Red Dress", "count": 4}]
    titles = [{"text": "red  dress", "count": 1}, {"text": "Red Dress Women", "count": 1}, {"text": "Red Top", "count": 1}]
    got = merge_suggestions(queries, titles, 2)
    assert [(s["text"], s["kind"]) for s in got] == [("Red Dress", "query"), ("Red Dress Women", "title")]


def test_a_photo_asks_for_neighbours_of_its_picture_and_of_titles_with_the_same_filters():
    image, text = photo_bodies([0.1] * 4, 50, [{"term": {"colour": "red"}}], {"includes": ["id"]})
    assert set(image["query"]["knn"]) == {"image_vector"} and set(text["query"]["knn"]) == {"text_vector"}
    assert image["query"]["knn"]["image_vector"]["filter"] == text["query"]["knn"]["text_vector"]["filter"]


def test_a_picture_neighbour_outranks_a_title_neighbour_of_equal_rank():
    ranked = photo_ranked({"look": 0.9, "x": 0.1}, {"title": 0.9, "x": 0.1})
    assert [d for d, _ in ranked][:2] == ["look", "title"]


def test_words_alone_or_a_photo_alone_is_its_own_ranking():
    assert with_words([], [("a", 1.0)]) == [("a", 1.0)] and with_words([("w", 1.0)], []) == [("w", 1.0)]
