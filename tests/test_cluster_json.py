"""The OpenSearch client's JSON (``cluster.FastJSON``, orjson): the same documents as opensearch-py's own."""

import datetime
import json
import uuid

import numpy as np
import pytest
from opensearchpy.exceptions import SerializationError
from opensearchpy.serializer import JSONSerializer

from shopsearch.cluster import FastJSON, connect
from shopsearch.settings import load_settings

BODIES = [
    {"size": 100, "query": {"knn": {"fused_vector": {"vector": (np.arange(4, dtype=np.float32) / 3).tolist(), "k": 100}}}},
    {"title": "绿色 Grün «tea»", "price": np.float64(12.5), "count": np.int64(3), "ok": np.bool_(True),
     "at": datetime.datetime(2026, 12, 2, 1, 2, 3), "day": datetime.date(2026, 12, 2),
     "id": uuid.UUID(int=7), "vector": [0.1, 1e-7, -2.5e10]},
    {"big": 2 ** 70, "nested": [{"a": None}, [1, 2.0, "x"]]},  # past 64 bits: the standard way
]


@pytest.mark.parametrize("body", BODIES)
def test_bodies_are_written_as_the_standard_serializer_reads_them(body):
    ours, theirs = FastJSON().dumps(body), JSONSerializer().dumps(body)
    assert json.loads(ours) == json.loads(theirs)


def test_a_float32_array_is_written_as_the_same_float32_numbers():
    vector = np.arange(1, 385, dtype=np.float32) / 7  # orjson writes float32's shortest digits, 0.14285715
    ours = np.asarray(json.loads(FastJSON().dumps({"v": vector}))["v"], dtype=np.float32)
    assert np.array_equal(ours, vector)


def test_answers_are_read_alike_and_bad_json_is_opensearch_pys_error():
    answer = '{"responses": [{"hits": {"hits": [{"_id": "1", "_score": 1.5, "fields": {"title.raw": ["Grün"]}}]}}]}'
    assert FastJSON().loads(answer) == JSONSerializer().loads(answer)
    with pytest.raises(SerializationError):
        FastJSON().loads("{not json")


def test_a_string_body_goes_as_it_is_and_the_projects_client_uses_it():
    assert FastJSON().dumps('{"size": 1}') == '{"size": 1}'
    assert isinstance(connect(load_settings()).transport.serializer, FastJSON)
