"""Specification of the search strategies as pipelines of stages: registry, printing, composition,
fusion, and runs on hand-made candidate lists (expected orders worked out by hand).

Pure tests: no service fixtures. The I/O a stage needs (retrieval, which brings the shopper's
profile) comes from a stand-in searcher holding hand-made answers.
"""

from __future__ import annotations

import pytest

from shopsearch import hooks
from shopsearch.errors import SearchError
from shopsearch.query import stages, strategies
from shopsearch.query.build import source_filter
from shopsearch.query.fuse import add_popularity, blend_browse, blend_rerank, cut_keeping, fuse_minmax, fuse_rrf, minmax, rank
from shopsearch.query.live import Live
from shopsearch.query.personalise import parse_weights
from shopsearch.query.respond import Answer, respond
from shopsearch.query.retrieve import Retrieved, Shopper
from shopsearch.query.searcher import STRATEGIES, SearchRequest
from shopsearch.query.stages import (RRF, Boosts, Cut, Dense, MinMax, Personalise, Pipeline, Retrieve,
                                     Search)
from shopsearch.query.strategies import PIPELINES, pipeline
from shopsearch.query.understand import Facets, rewrite_query
from shopsearch.settings import load_settings

SETTINGS = load_settings({})
LIVE = Live("shop-v1", {"catalogue": "shop", "model_version": "m@1"}, Facets())


class StandIn:
    """The searcher's I/O as the stages see it, answering from hand-made lists."""

    def __init__(self, got: Retrieved, settings=SETTINGS, profile=None):
        self.got, self.settings, self._profile = got, settings, profile
        self.weights = parse_weights(settings.personalise_weights)
        self.source = source_filter(settings.response_fields)
        self.asked: dict = {}
        self.sent: list = []

    def retrieve(self, live, q, depth, filters, want_vector=True, personal_ids=(), shopper=None, knn_depth=None):
        self.asked = {"q": q, "depth": depth, "filters": filters, "want_vector": want_vector, "shopper": shopper}
        self.got.profile = self._profile if shopper else None  # the profile comes back with the candidates
        return self.got

    def shopper(self, live, user):
        return Shopper(f"{live.meta['catalogue']}:{user}", own_items=self.weights["w_item"] > 0)

    def hits(self, index, body):
        self.sent.append(body)
        return [{"_id": "a", "_score": 2.0, "_source": {"title": "A"}}, {"_id": "b", "_score": 1.0, "_source": {}}]


def got(bm25=(), knn=(), sources=None, **kw) -> Retrieved:
    ids = {d for d, _ in list(bm25) + list(knn) + list(kw.get("personal", [])) + list(kw.get("popular", []))}
    return Retrieved(bm25=list(bm25), knn=list(knn), sources=sources if sources is not None else {d: {} for d in ids},
                     text="q", **kw)


def run(name: str, retrieved: Retrieved, settings=SETTINGS, weight=0.5, depth=100, user=None, **standin) -> tuple:
    searcher = StandIn(retrieved, settings, **standin)
    req = SearchRequest(q="q", user=user, strategy=name)
    done = pipeline(name, settings).run(Search(req=req, live=LIVE, searcher=searcher, depth=depth, weight=weight))
    return [d for d, _ in done.answer.ranked], done, searcher


BM25 = [("a", 10.0), ("b", 5.0), ("c", 0.0)]
KNN = [("b", 0.9), ("d", 0.5)]


# --- the registry ---------------------------------------------------------------------------------

def test_the_registry_names_every_strategy():
    assert STRATEGIES == tuple(PIPELINES) == ("bm25", "dense", "hybrid", "hybrid-rrf", "hybrid-rerank", "learned")
    assert strategies.STRATEGIES is STRATEGIES


@pytest.mark.parametrize("name,printed", [
    ("bm25", "PlainBM25()"),
    ("dense", "Retrieve(bm25, knn) >> Dense() >> BrowseBlend(browse_text_weight) >> Cut(candidate_depth, keep=own)"
              " >> Boosts(popularity) >> Personalise()"),
    ("hybrid", "Retrieve(bm25, knn if vector_weight > 0) >> MinMax(vector_weight) >> BrowseBlend(browse_text_weight)"
               " >> Cut(candidate_depth, keep=own) >> Boosts(popularity) >> Personalise()"),
    ("hybrid-rrf", "Retrieve(bm25, knn if vector_weight > 0) >> RRF(vector_weight, rrf_k) >> BrowseBlend(browse_text_weight)"
                   " >> Cut(candidate_depth, keep=own) >> Boosts(popularity) >> Personalise()"),
    ("hybrid-rerank", "Retrieve(bm25, knn if vector_weight > 0) >> MinMax(vector_weight) >> BrowseBlend(browse_text_weight)"
                      " >> Cut(candidate_depth, keep=own) >> Boosts(popularity)"
                      " >> Rerank(cross-encoder, rerank_depth, rerank_weight) >> Personalise()"),
])
def test_each_strategy_prints_its_stages(name, printed):
    assert str(PIPELINES[name]) == printed


@pytest.mark.parametrize("name,fusion", [("hybrid", RRF()), ("hybrid-rerank", RRF()), ("hybrid-rrf", RRF()),
                                         ("dense", None), ("bm25", None)])
def test_the_fusion_setting_rrf_swaps_min_max_for_rrf(name, fusion):
    swapped = pipeline(name, SETTINGS.replace(fusion="rrf"))
    assert MinMax() not in swapped.stages
    assert (fusion in swapped.stages) if fusion else swapped == PIPELINES[name]
    assert pipeline(name, SETTINGS) == PIPELINES[name]


def test_an_unknown_strategy_is_refused_naming_the_field():
    with pytest.raises(SearchError) as refused:
        pipeline("magic", SETTINGS)
    assert refused.value.field == "strategy" and "hybrid-rrf" in str(refused.value)


# --- composing ------------------------------------------------------------------------------------

def test_stages_compose_with_rshift_into_a_flat_pipeline():
    a = Retrieve() >> MinMax()
    b = Cut() >> Personalise()
    both = a >> b
    assert isinstance(both, Pipeline) and both.stages == (Retrieve(), MinMax(), Cut(), Personalise())
    assert str(both) == f"{a} >> {b}"
    assert (a >> b) == (Retrieve() >> (MinMax() >> Cut()) >> Personalise())  # associative


def test_pipelines_are_values():
    assert Retrieve() >> Dense() == Retrieve() >> Dense()
    assert Retrieve(knn="always") != Retrieve()
    assert (Retrieve() >> MinMax()).replace(MinMax, RRF()) == Retrieve() >> RRF()


# --- fusion ---------------------------------------------------------------------------------------

def test_minmax_scales_to_the_unit_interval_and_a_single_score_is_one():
    assert minmax({"a": 10.0, "b": 5.0, "c": 0.0}) == {"a": 1.0, "b": 0.5, "c": 0.0}
    assert minmax({"x": 3.0}) == {"x": 1.0} and minmax({}) == {}


def test_min_max_fusion_mixes_by_the_vector_weight_ties_by_id():
    assert fuse_minmax(dict(BM25), dict(KNN), 0.5) == [("b", 0.75), ("a", 0.5), ("c", 0.0), ("d", 0.0)]
    assert [d for d, _ in fuse_minmax(dict(BM25), dict(KNN), 0.0)] == ["a", "b", "c", "d"]


def test_rrf_sums_weighted_reciprocal_ranks():
    fused = dict(fuse_rrf(["a", "b", "c"], ["b", "d"], 0.5, k=60))
    assert fused["b"] == pytest.approx(0.5 / 62 + 0.5 / 61) and fused["d"] == pytest.approx(0.5 / 62)
    assert [d for d, _ in fuse_rrf(["a", "b", "c"], ["b", "d"], 0.5, k=60)] == ["b", "a", "d", "c"]


@pytest.mark.parametrize("method", ["minmax", "rrf", "dense"])
def test_without_knn_candidates_the_bm25_list_is_the_answer(method):
    assert rank(method, BM25, [], 0.5) == BM25


def test_popularity_is_added_after_fusion_and_nothing_changes_without_it():
    assert add_popularity([("a", 0.5), ("b", 0.5)], {}, 0.1) == [("a", 0.5), ("b", 0.5)]
    assert [d for d, _ in add_popularity([("a", 0.5), ("b", 0.45)], {"b": {"popularity_norm": 1.0}}, 0.1)] == ["b", "a"]


def test_browse_blend_puts_popularity_first():
    assert blend_browse({"a": 1.0, "b": 0.2}, [("b", 1.0)], 0.1) == [("a", 0.9), ("b", 0.28)]


def test_the_depth_cut_keeps_the_shoppers_own_candidates():
    assert cut_keeping([("a", 3), ("b", 2), ("c", 1)], 1, {"c"}) == [("a", 3), ("c", 1)]


def test_the_rerank_blend_reorders_the_head_within_its_fused_range():
    ranked = [("a", 0.9), ("b", 0.5), ("c", 0.1)]
    assert blend_rerank(ranked, [0.1, 0.8], 0.0) == [("a", 0.9), ("b", 0.5), ("c", 0.1)]
    assert blend_rerank(ranked, [0.1, 0.8], 1.0) == [("b", 0.9), ("a", 0.5), ("c", 0.1)]


# --- pipelines on hand-made candidates ------------------------------------------------------------

@pytest.mark.parametrize("name,order", [
    ("hybrid", ["b", "a", "c", "d"]),       # min-max: b .75, a .5, c 0, d 0 (ties by id)
    ("hybrid-rrf", ["b", "a", "d", "c"]),   # RRF k=60: b 1/61+1/62, a 1/61, d 1/62, c 1/63 (halved)
    ("dense", ["b", "d"]),                  # k-NN alone
])
def test_each_strategy_ranks_hand_made_candidates_as_worked_out(name, order):
    assert run(name, got(BM25, KNN))[0] == order


def test_the_fusion_setting_changes_what_hybrid_answers():
    assert run("hybrid", got(BM25, KNN), SETTINGS.replace(fusion="rrf"))[0] == ["b", "a", "d", "c"]


@pytest.mark.parametrize("name", ["hybrid", "hybrid-rrf", "dense"])
def test_a_degraded_search_without_knn_answers_with_bm25(name):
    order, done, _ = run(name, got(BM25, [], degraded="k-NN search failed: x"))
    assert order == ["a", "b", "c"] and done.answer.degraded == "k-NN search failed: x"


@pytest.mark.parametrize("name,weight,wanted", [("hybrid", 0.0, False), ("hybrid", 0.3, True), ("dense", 0.0, True)])
def test_the_query_vector_is_asked_for_only_when_it_weighs(name, weight, wanted):
    assert run(name, got(BM25), weight=weight)[2].asked["want_vector"] is wanted


def test_hybrid_with_vector_weight_zero_keeps_the_bm25_order():
    assert run("hybrid", got(BM25, KNN), weight=0.0)[0] == ["a", "b", "c", "d"]


def test_popularity_boosts_the_fused_scores():
    sources = {"a": {}, "b": {}, "c": {}, "d": {"popularity_norm": 1.0}}
    order = run("hybrid", got(BM25, KNN, sources), SETTINGS.replace(popularity_weight=0.5))[0]
    assert order == ["b", "a", "d", "c"]  # d: 0 + 0.5 ties a's 0.5, and a < d


def test_a_browse_query_ranks_by_popularity_and_skips_the_popularity_boost():
    sources = {"a": {"popularity_norm": 0.1}, "b": {"popularity_norm": 0.2}, "p": {"popularity_norm": 1.0}}
    retrieved = got([("a", 3.0), ("b", 1.0)], [], sources, browse="shoes", popular=[("p", 1.0)])
    order, done, _ = run("hybrid", retrieved, SETTINGS.replace(popularity_weight=5.0))
    # .9 * popularity + .1 * text: p .9, b .18 + .1 * 1.0 = .28, a .09 + .1 * 3.0 = .39
    assert order == ["p", "a", "b"]
    assert dict(done.answer.ranked)["p"] == pytest.approx(0.9)


def test_the_shoppers_own_products_join_the_bm25_list_and_survive_the_depth_cut():
    retrieved = got(BM25, [], personal=[("z", 1.0), ("a", 9.0)])
    order, _, searcher = run("hybrid", retrieved, depth=2, user="u", profile={"items": {"a": 1.0, "z": 2.0}})
    assert searcher.asked["shopper"] == Shopper("shop:u", own_items=True)  # asked for in the same _msearch
    assert order == ["a", "b", "z"]  # a, b within depth 2; z (the shopper's, last) kept; c cut


def test_personalise_adds_the_bounded_boost_in_python_and_sends_no_request():
    sources = {"a": {}, "b": {"category": "Tea"}, "c": {"category": "X"}}
    order, done, searcher = run("hybrid", got([("a", 1.0), ("b", 0.5), ("c", 0.0)], sources=sources), user="u",
                                profile={"categories": {"x": 1.0}, "items": {"c": 1.0}})
    # a 1.0, b .5, c 0 + (category .3 + item 2.0, bounded by personalise_max_boost 2.0)
    assert order == ["c", "a", "b"]
    assert done.answer.components["boost"] == {"a": 0.0, "b": 0.0, "c": 2.0}
    assert searcher.sent == []


def test_with_the_item_weight_zero_the_own_products_are_not_asked_for():
    settings = SETTINGS.replace(personalise_weights="item=0")
    _, _, searcher = run("hybrid", got(BM25), settings, user="u", profile={"items": {"a": 1.0}})
    assert searcher.asked["shopper"] == Shopper("shop:u", own_items=False)


def test_a_shopper_without_a_profile_is_not_personalised():
    order, done, searcher = run("hybrid", got(BM25), user="u", profile=None)
    assert order == ["a", "b", "c"] and done.answer.components["boost"] == {} and searcher.sent == []


def test_rerank_reorders_the_head_by_the_cross_encoder(monkeypatch):
    class CrossEncoder:
        def score(self, query, texts):
            return [0.0, 1.0, 0.5][:len(texts)]
    monkeypatch.setattr(stages, "reranker_for", lambda settings, meta: CrossEncoder())
    order, done, _ = run("hybrid-rerank", got(BM25), SETTINGS.replace(rerank_weight=1.0, rerank_depth=2))
    assert order == ["b", "a", "c"] and done.answer.components["rerank"] == {"a": 0.0, "b": 1.0}


def test_the_bm25_baseline_sends_the_plain_query():
    order, done, searcher = run("bm25", got())
    assert order == ["a", "b"] and done.got is None
    assert searcher.sent == done.answer.bodies and "multi_match" in searcher.sent[0]["query"]


# --- hooks ----------------------------------------------------------------------------------------

class ShopPlugin:
    @hooks.hookimpl
    def boosts(self):
        return [("favour_d", lambda ranked, sources, settings:
                 sorted(ranked, key=lambda kv: (kv[0] != "d", -kv[1])))]

    @hooks.hookimpl
    def query_rewriters(self):
        return [("drill_synonym", lambda q: q.replace("driller", "drill"))]

    @hooks.hookimpl
    def ranking_features(self):
        return [("title_length", lambda c: len((c.get("source") or {}).get("title") or ""))]


@pytest.fixture
def shop_plugin():
    name = hooks.register(ShopPlugin(), name="test-shop-plugin")
    yield
    hooks.unregister(name)


def test_a_shops_boost_runs_after_the_built_in_ones_and_prints(shop_plugin):
    assert str(Boosts()) == "Boosts(popularity, favour_d)"
    assert run("hybrid", got(BM25, KNN))[0] == ["d", "b", "a", "c"]


def test_query_rewriters_run_in_order_built_ins_first(shop_plugin):
    assert rewrite_query("  Cordless DRILLER ") == "cordless drill"


def test_explain_shows_the_pipeline_and_every_ranking_feature(shop_plugin):
    answer = Answer(ranked=[("a", 0.5)], sources={"a": {"title": "Drill", "popularity_norm": 0.2}},
                    components={"bm25": {"a": 3.0}, "vector": {}})
    out = respond(LIVE, SearchRequest(q="drill", explain=True), answer, str(PIPELINES["hybrid"]))
    assert out["explain"]["pipeline"] == str(PIPELINES["hybrid"])
    assert out["explain"]["features"] == {"a": {"bm25": 3.0, "vector": None, "popularity": 0.2, "title_length": 5}}
    assert set(out["hits"][0]["explain"]) == {"bm25", "vector", "fused", "boost"}
