"""Versioned indices behind an alias: <catalogue>-v<N>, with <catalogue> pointing at the live one."""

import pytest
from click.testing import CliRunner
from opensearchpy import helpers

from shopsearch.cli import main
from shopsearch.errors import ServiceError
from shopsearch.index.catalogue import merge_segments, segment_count
from shopsearch.index.versions import (IndexVersionError, create_version, delete_version, list_versions,
                                live_index, switch_alias)

BODY = {"mappings": {"properties": {"title": {"type": "text"}}}}


def test_create_switch_and_delete_versions(client, catalogue):
    v1 = create_version(client, catalogue, BODY)
    assert v1 == f"{catalogue}-v1"
    assert live_index(client, catalogue) == v1
    v2 = create_version(client, catalogue, BODY, point_alias=False)
    assert v2 == f"{catalogue}-v2"
    assert live_index(client, catalogue) == v1
    assert switch_alias(client, catalogue, v2) == v1
    assert live_index(client, catalogue) == v2
    assert list(client.indices.get_alias(name=catalogue)) == [v2]
    delete_version(client, catalogue, v1)
    assert [v.index for v in list_versions(client, catalogue)] == [v2]


def test_the_live_version_is_not_deleted_without_force(client, catalogue):
    v1 = create_version(client, catalogue, BODY)
    with pytest.raises(IndexVersionError, match="live"):
        delete_version(client, catalogue, v1)
    delete_version(client, catalogue, v1, force=True)
    assert live_index(client, catalogue) is None


def test_switching_to_a_missing_index_is_refused(client, catalogue):
    create_version(client, catalogue, BODY)
    with pytest.raises(IndexVersionError, match="does not exist"):
        switch_alias(client, catalogue, f"{catalogue}-v9")


@pytest.mark.parametrize("name", ["Shop", "a-b", "", "x y"])
def test_catalogue_names_are_checked(client, name):
    with pytest.raises(IndexVersionError):
        list_versions(client, name)


def _three_flushed_segments(client, catalogue) -> str:
    index = create_version(client, catalogue, BODY)
    for batch in range(3):  # a refresh after each write: three segments, as a bulk load's flushes leave
        helpers.bulk(client, ({"_index": index, "_id": f"{batch}-{i}", "title": f"product {batch} {i}"} for i in range(10)),
                     refresh=True)
    assert segment_count(client, index) == 3
    return index


def test_a_built_version_is_merged_to_one_segment_and_keeps_every_document(client, catalogue):
    index = _three_flushed_segments(client, catalogue)
    merged = merge_segments(client, index, 1)
    assert merged["segments_before"] == 3 and merged["segments"] == 1 and merged["seconds"] > 0
    assert segment_count(client, index) == 1 and client.count(index=index)["count"] == 30
    assert client.search(index=catalogue, body={"query": {"match": {"title": "product 2"}}})["hits"]["hits"]
    assert merge_segments(client, index, 1) == {"segments_before": 1, "segments": 1, "seconds": 0.0}  # nothing left to do


def test_build_max_segments_0_leaves_the_segments_to_opensearch(client, catalogue):
    index = _three_flushed_segments(client, catalogue)
    assert merge_segments(client, index, 0) == {"segments_before": 3, "segments": 3, "seconds": 0.0}
    assert segment_count(client, index) == 3


def test_a_merge_opensearch_cannot_do_is_a_service_error_naming_the_index(client, catalogue):
    with pytest.raises(ServiceError, match=f"{catalogue}-v7.*could not finish"):
        merge_segments(client, f"{catalogue}-v7", 1)


def test_the_merge_command_merges_the_live_version_and_names_a_missing_one(client, catalogue):
    index = _three_flushed_segments(client, catalogue)
    merged = CliRunner().invoke(main, ["index", "merge", catalogue])
    assert merged.exit_code == 0 and merged.output.startswith(f"{index}: 3 -> 1 segments in ")
    listed = CliRunner().invoke(main, ["index", "list", catalogue])
    assert f"* {index}" in listed.output and "segments=1" in listed.output
    missing = CliRunner().invoke(main, ["index", "merge", catalogue, "v9"])
    assert missing.exit_code == 1 and f"{catalogue}-v9 does not exist; versions: {index}" in missing.output
