"""Specification of how a search's hits bring their fields (``shopsearch/index/fetch.py``): from doc
values where the index's mapping keeps every wanted field exactly, else from ``_source``.

Pure functions over the project's own mapping (``mappings/products.json``) and the mapping of an
index made before the ``raw`` sub-fields; the search itself against a real OpenSearch is in
``tests/test_shop_search.py``.
"""

from __future__ import annotations

import copy
import math

import pytest

from shopsearch.index.fetch import MAX_KEYWORD_CHARS, doc_value_path, plan_fetch, shown_float
from shopsearch.index.mapping import products_body
from shopsearch.index.vectors import TITLE_COLUMN, title_column
from shopsearch.query.build import RANKING_FIELDS, fetch_for
from shopsearch.settings import default

PROPERTIES = products_body(384, {})["mappings"]["properties"]


def before_raw_subfields(properties: dict) -> dict:
    """The mapping of an index made before #13's ``raw`` sub-fields (title.raw stopped at 512 characters)."""
    old = copy.deepcopy(properties)
    for field in old.values():
        field.get("fields", {}).pop("raw", None)
    old["title"]["fields"]["raw"] = {"type": "keyword", "ignore_above": 512}
    return old


def before_the_title_column(properties: dict) -> dict:
    """The mapping of an index made before the title was kept as binary doc values."""
    return {k: v for k, v in properties.items() if k != TITLE_COLUMN}


def test_the_default_result_list_and_the_ranking_fields_are_read_from_doc_values():
    fetch = fetch_for(PROPERTIES, default("response_fields"))
    assert not fetch.from_source
    assert fetch.body["stored_fields"] == "_none_" and fetch.body["_source"] is False
    paths = set(fetch.body["docvalue_fields"])
    assert {"id", TITLE_COLUMN, "brand.raw", "category.raw", "colour.raw", "material.raw", "price", "in_stock"} <= paths
    assert not any(p.endswith("_vector") or p == "vector_copy" for p in paths)


def test_the_title_is_read_from_its_binary_column_where_the_version_has_one_else_from_its_keyword():
    # a keyword's doc values decompress a block of its terms dictionary for every hit: a third of a hybrid _msearch
    assert doc_value_path("title", PROPERTIES) == (TITLE_COLUMN, "binary")
    assert doc_value_path("title", before_the_title_column(PROPERTIES)) == ("title.raw", "keyword")
    fetch = fetch_for(before_the_title_column(PROPERTIES), default("response_fields"))
    assert "title.raw" in fetch.body["docvalue_fields"] and TITLE_COLUMN not in fetch.body["docvalue_fields"]


def test_a_title_read_from_its_binary_column_is_the_text_as_written():
    fetch = plan_fetch(PROPERTIES, ["title"])
    for title in ("Puma Men Black Shoes", "耐克 男士 跑步鞋", "2x6 \"brackets\" – 18v", "Mug", "Mugs"):
        as_given = title_column(title).rstrip("=")  # OpenSearch gives binary doc values back without base64's padding
        assert fetch.read({"fields": {"id": ["1"], TITLE_COLUMN: [as_given]}}) == ("1", {"id": "1", "title": title})


@pytest.mark.parametrize("field, path", [("title", TITLE_COLUMN), ("brand", "brand.raw"), ("image", "image"),
                                         ("price", "price"), ("in_stock", "in_stock"), ("id", "id")])
def test_a_field_is_read_from_its_exact_column(field, path):
    assert doc_value_path(field, PROPERTIES)[0] == path


@pytest.mark.parametrize("field", ["description", "attributes", "indexed_at", "fused_vector", "no_such_field"])
def test_a_field_without_an_exact_column_has_none(field):
    # text without raw, flat_object, a date (formatted anew), a vector, an unknown name
    assert doc_value_path(field, PROPERTIES) is None


def test_one_wanted_field_without_a_column_makes_every_hit_bring_its_source():
    fetch = fetch_for(PROPERTIES, "id,title,description")
    assert fetch.from_source and "description" in fetch.body["_source"]["includes"]
    assert fetch.body["_source"]["excludes"] == ["*_vector", "vector_copy"]


def test_every_field_asked_for_means_source():
    assert fetch_for(PROPERTIES, None).from_source


def test_an_index_made_before_the_raw_subfields_is_read_from_source():
    # a brand's keyword is lower-cased by its normalizer, and a title over 512 characters had no doc value
    assert fetch_for(before_raw_subfields(PROPERTIES), default("response_fields")).from_source


def test_a_keyword_that_drops_long_values_is_no_exact_column():
    short = {"title": {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": MAX_KEYWORD_CHARS - 1}}}}
    assert doc_value_path("title", short) is None


def test_a_hit_reads_back_as_its_source_would():
    fetch = plan_fetch(PROPERTIES, ["title", "price", "price_norm", "category_path", "colour"], shown=["title", "price"])
    hit = {"_score": 2.0, "fields": {"id": ["8065"], TITLE_COLUMN: [title_column("Puma Men Black Shoes")], "price": [19.989999771118164],
                                     "price_norm": [0.12345679104328156], "category_path.raw": ["Footwear"],
                                     "colour.raw": ["Black", "Grey"]}}
    assert fetch.read(hit) == ("8065", {"id": "8065", "title": "Puma Men Black Shoes", "price": 19.99,
                                        "price_norm": 0.12345679104328156, "category_path": ["Footwear"],
                                        "colour": ["Black", "Grey"]})


@pytest.mark.parametrize("stored,shown", [(19.989999771118164, 19.99), (649.0, 649.0), (0.0, 0.0), (-0.0, -0.0),
                                          (3.4028234663852886e38, 3.4028235e38)])
def test_a_shown_float_is_the_shortest_decimal_of_its_float32_whatever_was_shown_before(stored, shown):
    for earlier in (0.0, -0.0, 19.989999771118164, stored):  # converted values are kept: none may stand in for another
        shown_float(earlier)
    got = shown_float(stored)
    assert got == shown and math.copysign(1.0, got) == math.copysign(1.0, shown)


def test_a_nan_float_stays_nan():
    assert math.isnan(shown_float(float("nan")))


def test_a_field_the_document_lacks_is_missing_from_the_hit():
    fetch = plan_fetch(PROPERTIES, ["title", "brand"])
    assert fetch.read({"_score": 1.0, "fields": {"id": ["1"], TITLE_COLUMN: [title_column("Mug")]}}) == ("1", {"id": "1", "title": "Mug"})


def test_the_ranking_fields_all_have_columns():
    assert all(doc_value_path(f, PROPERTIES) is not None for f in RANKING_FIELDS)
