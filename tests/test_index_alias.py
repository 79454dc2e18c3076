"""Versioned indices behind an alias: <catalogue>-v<N>, with <catalogue> pointing at the live one."""

import pytest

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
