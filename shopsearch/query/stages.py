"""The query flow's built-in hook implementations (see ``shopsearch/hooks.py``).

Placeholder layout: the pipeline stages of the strategies are built on these.
"""

from __future__ import annotations

from shopsearch import hooks
from shopsearch.query.build import add_popularity
from shopsearch.query.understand import normalise_query


def popularity_boost(ranked, sources, settings):
    """``popularity_weight`` times an item's ``popularity_norm``, added after fusion."""
    return add_popularity(ranked, sources, settings.popularity_weight)


@hooks.hookimpl
def query_rewriters():
    return [("normalise", normalise_query)]


@hooks.hookimpl
def ranking_features():
    return [("bm25", lambda c: c.get("bm25")), ("vector", lambda c: c.get("vector")),
            ("popularity", lambda c: (c.get("source") or {}).get("popularity_norm"))]


@hooks.hookimpl
def boosts():
    return [("popularity", popularity_boost)]
