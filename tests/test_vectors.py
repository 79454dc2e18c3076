"""A product's vectors: indexed in the k-NN fields, kept out of the stored source, read back exactly."""

import numpy as np

from shopsearch.index.mapping import products_body
from shopsearch.index.vectors import NO_VECTORS, TITLE_COLUMN, pack_vector, unpack_vector, vector_copy, with_vectors
from shopsearch.ingest.write import document


def test_the_copy_gives_back_the_float32_vector_exactly():
    vector = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    assert unpack_vector(pack_vector(vector)) == vector.tolist()


def test_a_document_keeps_a_copy_of_each_vector_it_has():
    doc = document({"id": "1", "title": "Mug"}, [0.5, 0.25], [0.0, 1.0], [0.75, 0.5], True, "m@1")
    assert set(doc["vector_copy"]) == {"fused", "text", "image"}
    stored = {k: v for k, v in doc.items() if not k.endswith("_vector") and k != TITLE_COLUMN}
    assert with_vectors(stored) == {k: v for k, v in doc.items() if k not in ("vector_copy", TITLE_COLUMN)}
    without_image = document({"id": "2", "title": "Cup"}, [0.5, 0.25], [], [0.5, 0.25], False, "m@1")
    assert set(without_image["vector_copy"]) == {"fused"}


def test_a_version_written_before_the_copy_is_read_from_its_json_arrays():
    old = {"title": "Mug", "fused_vector": [0.5], "text_vector": [0.25]}
    assert with_vectors(old) == old and vector_copy(old) == {"fused": pack_vector([0.5]), "text": pack_vector([0.25])}


def test_the_mapping_keeps_vectors_and_the_title_column_out_of_the_stored_source_and_readers_leave_out_the_copy():
    mapping = products_body(384, {})["mappings"]
    assert mapping["_source"] == {"excludes": ["*_vector", TITLE_COLUMN]}
    assert mapping["properties"][TITLE_COLUMN] == {"type": "binary", "doc_values": True}
    assert {f["type"] for f in mapping["properties"]["vector_copy"]["properties"].values()} == {"binary"}
    assert NO_VECTORS == ["*_vector", "vector_copy"]


def test_a_version_made_before_the_title_column_gets_documents_without_it(client, settings, catalogue):
    from shopsearch.index.versions import create_version
    from shopsearch.ingest.write import write_documents
    body = products_body(384, {})
    del body["mappings"]["properties"][TITLE_COLUMN]
    body["mappings"]["_source"] = {"excludes": ["*_vector"]}
    old = create_version(client, catalogue, body)
    doc = document({"id": "1", "title": "Mug"}, [], [], [0.6, 0.8] + [0.0] * 382, False, "m@1")
    assert TITLE_COLUMN in doc
    assert write_documents(client, old, [doc]) == (1, [])  # its strict mapping would refuse the column
    assert client.get(index=old, id="1")["_source"]["title"] == "Mug"
