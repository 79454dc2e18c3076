"""Typo tolerance: real misspelt Home Depot queries corrected from the catalogue's own words;
model numbers, sizes and known words left alone; "did you mean" in the response."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from shopsearch.query.searcher import SearchRequest, Searcher
from shopsearch.query.spelling import Speller, count_words
from shopsearch.workers.dispatch import run_ingest

HOMEDEPOT = Path(__file__).parent / "fixtures" / "homedepot"


def fixture_texts() -> list[str]:
    """Each excerpt product's title, colour and material, as the index holds them."""
    tables = {}
    for name in ("colors.tsv", "materials.tsv"):
        with open(HOMEDEPOT / name, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t"))[1:]
        tables[name] = dict(rows)
    with open(HOMEDEPOT / "products.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))[1:]
    return [" ".join([title, tables["colors.tsv"].get(uid, ""), tables["materials.tsv"].get(uid, "")]) for uid, title in rows]


@pytest.fixture(scope="module")
def speller() -> Speller:
    return Speller.from_counts(count_words(fixture_texts()))


# real queries of ../shared/data/homedepot/judgments.tsv
@pytest.mark.parametrize("query, corrected", [
    ("americian standard champion 4 toliets", "american standard champion 4 toilet"),  # the excerpt says "Toilet"
    ("20v dewalt kombo", "20v dewalt combo"),
    ("2x6 metal brakets", "2x6 metal bracket"),
])
def test_a_misspelt_query_is_corrected_to_the_catalogues_words(speller, query, corrected):
    assert speller.correct(query).text == corrected


@pytest.mark.parametrize("query", ["dw0240 drill", "2x6 joist hanger", "20v max", "sc-141 tugboat", "z-max 18-gauge"])
def test_model_numbers_and_sizes_are_never_corrected(speller, query):
    assert speller.correct(query).changes == []


@pytest.mark.parametrize("query", ["simpson strong-tie hanger", "dewalt combo kit", "glacier bay toilet", "behr deckover"])
def test_brands_and_words_the_catalogue_has_are_left_alone(speller, query):
    assert speller.correct(query).changes == []


def test_a_misspelling_typed_often_in_the_query_log_never_becomes_correct():
    speller = Speller.from_counts({"toilet": 5}, {"toliet": 900, "toilet": 10})
    assert "toliet" not in speller.counts
    assert speller.correct("toliet").text == "toilet"


@pytest.fixture(scope="module")
def shop(services, settings, client):
    """The 21-product Home Depot excerpt, colours and materials joined at ingest."""
    name = "test_spelling_hd"
    client.indices.delete(index=f"{name}-v*", ignore_unavailable=True, allow_no_indices=True)
    run_ingest(settings, HOMEDEPOT / "products.tsv", name, mapping="homedepot")
    yield name
    client.indices.delete(index=f"{name}-v*", ignore_unavailable=True, allow_no_indices=True)


def test_the_response_says_did_you_mean_and_searches_the_correction(client, settings, shop):
    searcher = Searcher(client, settings.replace(typo_tolerance="spelling", result_cache_seconds=0))
    out = searcher.search(shop, SearchRequest(q="americian standard champion 4 toliets", explain=True))
    assert out["did_you_mean"] == "american standard champion 4 toilet"
    assert "spelling: americian -> american" in out["filters_applied"]
    assert "spelling: toliets -> toilet" in out["filters_applied"]
    assert out["q"] == "americian standard champion 4 toliets"
    searched = out["explain"]["requests"][0]["query"]["bool"]["must"][0]["multi_match"]["query"]
    assert searched == "american standard champion 4 toilet"
    assert out["hits"][0]["id"] in {"102800", "102917", "109334", "137343"}  # the Champion 4 products


def test_a_query_the_catalogue_spells_so_has_no_did_you_mean(client, settings, shop):
    searcher = Searcher(client, settings.replace(typo_tolerance="spelling", result_cache_seconds=0))
    out = searcher.search(shop, SearchRequest(q="dewalt combo kit"))
    assert "did_you_mean" not in out and out["hits"]


def test_with_typo_tolerance_off_the_query_is_searched_as_typed(client, settings, shop):
    searcher = Searcher(client, settings.replace(typo_tolerance="off", result_cache_seconds=0))
    out = searcher.search(shop, SearchRequest(q="20v dewalt kombo"))
    assert "did_you_mean" not in out


def test_fuzzy_matching_finds_a_misspelt_word_and_keeps_sizes_exact(client, settings, shop):
    searcher = Searcher(client, settings.replace(typo_tolerance="fuzzy", result_cache_seconds=0, vector_weight=0.0))
    out = searcher.search(shop, SearchRequest(q="2x6 metal brakets", explain=True))
    assert {h["id"] for h in out["hits"][:4]} == {"100030", "100700", "100323", "106268"}  # the four shelf brackets
    exact, fuzzy = out["explain"]["requests"][0]["query"]["bool"]["must"][0]["bool"]["should"]
    assert fuzzy["multi_match"]["fuzziness"] == "AUTO" and fuzzy["multi_match"]["query"] == "metal brakets"
    assert exact["multi_match"]["query"] == "2x6 metal brakets"  # the size only matches exactly


def test_an_unknown_typo_tolerance_is_a_clear_error(client, settings):
    from shopsearch.errors import SettingsError
    with pytest.raises(SettingsError, match="typo_tolerance must be one of"):
        Searcher(client, settings.replace(typo_tolerance="maybe"))
