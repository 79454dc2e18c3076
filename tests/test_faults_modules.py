"""The project's own OpenSearch carries OpenSearch's standard modules, so a shop's existing
client that uses ``_reindex``, ``_update_by_query``, ``rank_features`` or ``join`` works on it."""

import uuid
import zipfile

import pytest

from shopsearch.ops.services import opensearch


@pytest.fixture
def index(client):
    name = f"test_mod_{uuid.uuid4().hex[:10]}"
    yield name
    client.indices.delete(index=f"{name}*", ignore_unavailable=True, allow_no_indices=True)


def _fill(client, index, n=5):
    for i in range(n):
        client.index(index=index, id=str(i), body={"n": i, "colour": "red" if i % 2 else "blue"})
    client.indices.refresh(index=index)


def test_every_module_of_the_table_is_loaded(services, settings):
    loaded = set(opensearch.status(settings)["modules"])
    assert set(opensearch.MODULES) <= loaded, set(opensearch.MODULES) - loaded
    assert {"reindex", "mapper-extras", "parent-join", "percolator", "rank-eval"} <= loaded


def test_reindex_copies_every_document(client, index):
    _fill(client, index)
    answer = client.reindex(body={"source": {"index": index}, "dest": {"index": f"{index}-copy"}},
                            refresh=True)
    assert answer["created"] == 5 and not answer["failures"]
    assert client.count(index=f"{index}-copy")["count"] == 5


def test_delete_by_query_removes_the_matching_documents(client, index):
    _fill(client, index)
    answer = client.delete_by_query(index=index, body={"query": {"term": {"colour.keyword": "red"}}},
                                    refresh=True)
    assert answer["deleted"] == 2
    assert client.count(index=index)["count"] == 3


def test_update_by_query_runs_a_painless_script(client, index):
    _fill(client, index)
    answer = client.update_by_query(index=index, refresh=True, body={
        "query": {"term": {"colour.keyword": "blue"}},
        "script": {"source": "ctx._source.n += 100", "lang": "painless"}})
    assert answer["updated"] == 3
    assert client.get(index=index, id="2")["_source"]["n"] == 102


def test_a_rank_features_field_boosts_by_feature(client, index):
    client.indices.create(index=index, body={"mappings": {"properties": {"topics": {"type": "rank_features"}}}})
    client.index(index=index, id="a", body={"topics": {"shoes": 1.0}}, refresh=True)
    client.index(index=index, id="b", body={"topics": {"shoes": 9.0}}, refresh=True)
    hits = client.search(index=index, body={"query": {"rank_feature": {"field": "topics.shoes"}}})["hits"]["hits"]
    assert [h["_id"] for h in hits] == ["b", "a"]


def test_a_join_field_finds_children_by_parent(client, index):
    client.indices.create(index=index, body={"mappings": {"properties": {
        "relation": {"type": "join", "relations": {"product": "offer"}}}}})
    client.index(index=index, id="p1", body={"relation": "product"})
    client.index(index=index, id="o1", routing="p1", body={"relation": {"name": "offer", "parent": "p1"}})
    client.indices.refresh(index=index)
    hits = client.search(index=index, body={"query": {"has_child": {"type": "offer", "query": {"match_all": {}}}}})
    assert [h["_id"] for h in hits["hits"]["hits"]] == ["p1"]


def test_an_ingest_pipeline_stamps_the_ingest_time(client, index):
    client.ingest.put_pipeline(id=index, body={"processors": [
        {"set": {"field": "ingested_at", "value": "{{_ingest.timestamp}}"}}]})
    try:
        client.index(index=index, id="1", body={"n": 1}, pipeline=index, refresh=True)
        assert client.get(index=index, id="1")["_source"]["ingested_at"]
    finally:
        client.ingest.delete_pipeline(id=index)


def test_a_percolate_query_finds_the_stored_query(client, index):
    client.indices.create(index=index, body={"mappings": {"properties": {
        "query": {"type": "percolator"}, "title": {"type": "text"}}}})
    client.index(index=index, id="q", body={"query": {"match": {"title": "shoes"}}}, refresh=True)
    hits = client.search(index=index, body={"query": {"percolate": {"field": "query",
                                                                     "document": {"title": "red shoes"}}}})
    assert [h["_id"] for h in hits["hits"]["hits"]] == ["q"]


def test_the_install_directory_changes_with_the_module_table(settings):
    lay = opensearch.layout(settings)
    assert opensearch.modules_digest() in lay.dist(settings.opensearch_version, settings.knn_plugin_version).name


def _jar(path, *classes):
    with zipfile.ZipFile(path, "w") as z:
        for c in classes:
            z.writestr(c.replace(".", "/") + ".class", b"")


def test_a_module_names_the_plugin_class_its_jars_carry_under_either_name(tmp_path):
    module = opensearch.MODULES["lang-painless"]
    _jar(tmp_path / "old.jar", "org.opensearch.painless.PainlessPlugin")
    assert opensearch.plugin_class(module, tmp_path) == "org.opensearch.painless.PainlessPlugin"
    (tmp_path / "old.jar").unlink()
    _jar(tmp_path / "new.jar", "org.opensearch.painless.PainlessModulePlugin")  # OpenSearch 3's name
    assert opensearch.plugin_class(module, tmp_path) == "org.opensearch.painless.PainlessModulePlugin"


def test_a_module_whose_jars_lack_its_class_is_a_clear_error(tmp_path):
    _jar(tmp_path / "other.jar", "org.example.Other")
    with pytest.raises(opensearch.ServiceError, match="PainlessModulePlugin"):
        opensearch.plugin_class(opensearch.MODULES["lang-painless"], tmp_path)


def _java(root, name, version):
    home = root / name
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("")
    (home / "release").write_text(f'IMPLEMENTOR="x"\nJAVA_VERSION="{version}"\n')
    return home


def test_opensearch_3_runs_on_the_newest_java_21_or_later_and_2_19_on_the_default(tmp_path, settings, monkeypatch):
    _java(tmp_path, "java-17", "17.0.15")
    newest = _java(tmp_path, "temurin-25", "25.0.3")
    _java(tmp_path, "temurin-21", "21.0.4")
    monkeypatch.setattr(opensearch, "JVM_DIR", tmp_path)
    monkeypatch.setattr(opensearch.shutil, "which", lambda name: str(tmp_path / "java-17" / "bin" / "java"))
    assert opensearch._java_home(settings.replace(opensearch_version="3.4.0", java_home="")) == str(newest)
    assert opensearch._java_home(settings.replace(opensearch_version="2.19.1", java_home="")) == str(tmp_path / "java-17")
    assert opensearch._java_home(settings.replace(java_home="/opt/my-java")) == "/opt/my-java"


def test_no_java_new_enough_says_what_to_set(tmp_path, settings, monkeypatch):
    _java(tmp_path, "java-17", "17.0.15")
    monkeypatch.setattr(opensearch, "JVM_DIR", tmp_path)
    monkeypatch.setattr(opensearch.shutil, "which", lambda name: None)
    with pytest.raises(opensearch.ServiceError, match="needs Java 21 or later.*java_home.*2.19.1"):
        opensearch._java_home(settings.replace(opensearch_version="3.4.0", java_home=""))
