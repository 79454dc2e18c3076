"""Creating a catalogue's index version: the mapping rendered for the encoder that will fill it.

The ``_meta`` of each version records the model that encoded it, so the query side always loads
the matching encoder and a query never mixes vectors of two models.
"""

from __future__ import annotations

import time

from opensearchpy import OpenSearch

from shopsearch.encoders.text import text_encoder
from shopsearch.index.mapping import products_body
from shopsearch.index.versions import create_version, live_index
from shopsearch.settings import Settings


def create_catalogue_version(client: OpenSearch, settings: Settings, catalogue: str,
                             model: str | None = None, switch: bool = True, extra_meta: dict | None = None) -> str:
    """Create ``<catalogue>-v<N>`` for ``model`` (default: the text_model setting)."""
    encoder = text_encoder(settings.replace(text_model=model) if model else settings)
    meta = {"catalogue": catalogue, "model": encoder.name, "model_version": encoder.version,
            "text_dim": encoder.dimension, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **(extra_meta or {})}
    body = products_body(encoder.dimension, meta, settings.number_of_shards, settings.number_of_replicas)
    return create_version(client, catalogue, body, point_alias=switch)


def live_meta(client: OpenSearch, catalogue: str) -> tuple[str, dict]:
    """The live index of a catalogue and its mapping ``_meta`` (model, version, dimensions)."""
    index = live_index(client, catalogue)
    if index is None:
        raise LookupError(f"catalogue {catalogue!r} has no live index: run `shopsearch index create {catalogue}`")
    mapping = client.indices.get_mapping(index=index)[index]["mappings"]
    return index, mapping
