"""Attributes in search: Home Depot colours and materials, fashion category, gender and usage are
searchable text; the field list is one setting; a mapping change reindexes without re-encoding."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopsearch.errors import SettingsError
from shopsearch.query.build import TEXT_FIELDS, field_names, parse_text_fields
from shopsearch.query.searcher import SearchRequest, Searcher
from shopsearch.settings import default
from shopsearch.workers.dispatch import reindex, run_ingest
from shopsearch.index.vectors import read_with_vectors

FIXTURES = Path(__file__).parent / "fixtures"


def lexical(client, settings) -> Searcher:
    """The shopper BM25 query alone: no k-NN, no facet boosts, no spelling (only the text fields act)."""
    return Searcher(client, settings.replace(vector_weight=0.0, query_filters="off", typo_tolerance="off",
                                             result_cache_seconds=0, popularity_weight=0.0))


@pytest.fixture(scope="module")
def homedepot(services, settings, client):
    name = "test_attr_hd"
    client.indices.delete(index=f"{name}-v*", ignore_unavailable=True, allow_no_indices=True)
    run_ingest(settings, FIXTURES / "homedepot" / "products.tsv", name, mapping="homedepot")
    yield name
    client.indices.delete(index=f"{name}-v*", ignore_unavailable=True, allow_no_indices=True)


@pytest.fixture(scope="module")
def fashion(services, settings, client):
    name = "test_attr_fashion"
    client.indices.delete(index=f"{name}-v*", ignore_unavailable=True, allow_no_indices=True)
    run_ingest(settings, FIXTURES / "fashion" / "products.tsv", name, mapping="fashion")
    yield name
    client.indices.delete(index=f"{name}-v*", ignore_unavailable=True, allow_no_indices=True)


def ids(out) -> list[str]:
    return [h["id"] for h in out["hits"]]


def test_material_words_match_the_material_field(client, settings, homedepot):
    # no title says "vitreous china"; three of the excerpt's toilets are made of it
    out = lexical(client, settings).search(homedepot, SearchRequest(q="vitreous china toilet"))
    assert set(ids(out)[:3]) == {"100042", "100108", "102917"}
    assert all(h["material"] == "Vitreous China" for h in out["hits"][:3])


def test_colour_words_match_the_colour_field(client, settings, homedepot):
    # DEWALT combo kits, none "yellow" in its title; their colour rows say it
    out = lexical(client, settings).search(homedepot, SearchRequest(q="yellow"))
    assert ids(out) and all("yellow" in h["colour"].lower() for h in out["hits"])
    assert ids(lexical(client, settings.replace(text_fields="title^3")).search(homedepot, SearchRequest(q="yellow"))) == []


def test_without_the_attribute_fields_the_attribute_words_find_nothing_more(client, settings, homedepot):
    title_only = lexical(client, settings.replace(text_fields="title^3"))
    assert ids(title_only.search(homedepot, SearchRequest(q="vitreous china"))) == []
    assert ids(lexical(client, settings).search(homedepot, SearchRequest(q="vitreous china")))


@pytest.mark.parametrize("query, expected", [
    ("unisex", {"5386", "5387"}),          # gender; neither title says it
    ("casual", {"15970"}),                 # usage (an attribute): "Turtle Check Men Navy Blue Shirt"
    ("topwear", {"15970", "11276"}),       # a level of the category path
    ("footwear", {"5386", "5387", "5402", "5361"}),
])
def test_fashion_gender_usage_and_category_are_searchable(client, settings, fashion, query, expected):
    assert set(ids(lexical(client, settings).search(fashion, SearchRequest(q=query)))) == expected


def test_attribute_values_are_indexed_as_text(client, fashion):
    doc = client.get(index=fashion, id="15970")["_source"]
    assert doc["attribute_text"] == "Fall Casual"  # season and usage; the year is no word


def test_the_text_fields_are_one_setting_that_other_code_reads():
    assert TEXT_FIELDS == parse_text_fields(default("text_fields"))
    assert {"title", "colour.text", "material.text", "category.text", "gender.text", "attribute_text"} <= set(field_names(TEXT_FIELDS))


@pytest.mark.parametrize("spec", ["title^x", "^2", "title^-1", "title^0", ""])
def test_a_bad_text_fields_setting_is_a_clear_error(spec):
    with pytest.raises(SettingsError, match="text_fields"):
        parse_text_fields(spec)


def test_a_reindex_with_the_same_model_copies_the_stored_vectors_instead_of_encoding(client, settings, catalogue):
    run_ingest(settings, FIXTURES / "homedepot" / "products.tsv", catalogue, mapping="homedepot")
    origin = f"{catalogue}-v1"
    before = read_with_vectors(client, origin, ["102917"])["102917"]
    state = reindex(settings, catalogue)
    assert state["step"] == "swapped" and state["vectors"] == f"reused from {origin}"
    after = read_with_vectors(client, state["index"], ["102917"])["102917"]
    assert after.get("text_vector") == before.get("text_vector") and after["fused_vector"] == before["fused_vector"]
    assert after["material"] == "Vitreous China" and after["model_version"] == before["model_version"]
    assert client.count(index=state["index"])["count"] == client.count(index=origin)["count"]
