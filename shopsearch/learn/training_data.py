"""Training data from click logs: (query, clicked item, items skipped above it), position-bias corrected.

Input: the UBI-shaped click logs (``ubi_queries``: every shopper search with the impressions it
served; ``ubi_events``: clicks, add-to-carts, purchases, each with the ``query_id`` of its search).
Output: :class:`TrainingData`, train and validation :class:`Example` lists and a summary.

**Position bias** is estimated by :mod:`shopsearch.learn.position_bias` (a position-based model
fitted by EM on the logs themselves, Wang et al. WSDM 2018): ``theta_k``, the chance a shopper
examines rank k, normalised so ``theta_1 = 1``; the summary reports its ``identifiable_share``.

**Examples.** For each search and each item with an interaction: the query text (normalised
with ``understand.normalise_query``), the item, and the items shown *above* it that got no
interaction (skipped: under the cascade reading the shopper looked at them and passed them by;
Joachims 2002, "click > skip above"). Weight = the strongest action on the item in that search
(``events.ACTION_WEIGHTS``: click 1, add-to-cart 3, purchase 5; a purchase also produced a click
and a cart, so summing would count one decision three times) times the inverse propensity
``1 / theta_k``, clipped at ``max_inverse_propensity`` (default 10, i.e. theta floored at 0.1).
Clipping (Joachims et al., WSDM 2017; Strehl et al., NeurIPS 2010) trades a little bias at deep
ranks for bounded variance: one lucky click at rank 40 weighs at most as much as ten at rank 1.

**Minimum counts, de-duplication, split.** A query is kept only if at least ``min_sessions``
searches for it had an interaction. Identical (query, item) pairs are merged: weights add up,
skipped items are pooled (most often skipped first), and an item that is a positive of the query
elsewhere is never its negative. The split is by a hash of the normalised query text
(``valid_fraction`` of the hash space goes to validation): no query is on both sides, and a query
stays on its side as the logs grow.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from opensearchpy import helpers

from shopsearch.clock import parse_time
from shopsearch.encoders.text import item_text
from shopsearch.errors import Missing
from shopsearch.files import write_json_atomic, write_text_atomic
from shopsearch.index.versions import live_index
from shopsearch.learn.events import ACTION_WEIGHTS, MAX_FUTURE
from shopsearch.learn.position_bias import MAX_INVERSE_PROPENSITY, fit_position_bias, inverse_propensity
from shopsearch.query.understand import normalise_query


# --- searches, examples (pure) --------------------------------------------------------------

@dataclass(frozen=True)
class Search:
    """One logged search: its impressions and the strongest action on each item, with its rank."""
    query_id: str
    query: str  # normalised
    user: str | None
    impressions: tuple[tuple[str, int], ...]  # (object_id, position)
    actions: dict[str, tuple[float, int]] = field(default_factory=dict)  # object_id -> (weight, position)


@dataclass
class Example:
    """One training pair: the query, the clicked item (id and text), skipped items, the IPS weight.

    ``label``: the cross-encoder's target for the pair (``None``: 1, a click); graded examples from
    human judgments carry ``(relevance - 1) / 2`` (``learn/judged_examples.py``).
    """
    query: str
    positive_id: str
    positive: str = ""
    negative_ids: list[str] = field(default_factory=list)
    negatives: list[str] = field(default_factory=list)
    weight: float = 1.0
    sessions: int = 1
    label: float | None = None


def join_searches(queries: Iterable[dict], events: Iterable[dict]) -> tuple[list[Search], dict]:
    """``ubi_queries`` and ``ubi_events`` documents -> searches; plus counts of what joined."""
    by_id: dict[str, dict] = {q["query_id"]: q for q in queries if q.get("query_id") and q.get("user_query")}
    actions: dict[str, dict[str, tuple[float, int]]] = defaultdict(dict)
    counts = Counter()
    for e in events:
        weight = ACTION_WEIGHTS.get(e.get("action_name"))
        if weight is None:
            continue
        query = by_id.get(e.get("query_id"))
        if query is None:
            counts["unjoined_events"] += 1
            continue
        shown = {i["object_id"]: i["position"] for i in query.get("impressions") or []}
        position = shown.get(e.get("object_id"), e.get("position"))
        if not position:
            counts["unplaced_events"] += 1
            continue
        counts[e["action_name"]] += 1
        previous = actions[query["query_id"]].get(e["object_id"], (0.0, position))
        actions[query["query_id"]][e["object_id"]] = (max(previous[0], weight), int(position))
    searches = [Search(qid, normalise_query(q["user_query"]), q.get("user_id"),
                       tuple((i["object_id"], int(i["position"])) for i in q.get("impressions") or []),
                       dict(actions.get(qid, {})))
                for qid, q in sorted(by_id.items(), key=lambda kv: (kv[1].get("timestamp") or "", kv[0]))]
    return searches, dict(counts)


def observations(searches: Iterable[Search]) -> list[tuple[str, str, int, bool]]:
    """Every impression as ``(query, object_id, position, clicked)``: the input of the PBM fit."""
    return [(s.query, d, k, d in s.actions) for s in searches for d, k in s.impressions]


def click_examples(searches: Iterable[Search], theta: dict[int, float],
                   max_inverse_propensity: float = MAX_INVERSE_PROPENSITY) -> list[Example]:
    """One example per (search, item with an interaction), with the items skipped above it.

    >>> s = Search("1", "drill", None, (("a", 1), ("b", 2), ("c", 3)), {"c": (3.0, 3)})
    >>> e = click_examples([s], {1: 1.0, 2: 0.5, 3: 0.25})[0]
    >>> e.positive_id, e.negative_ids, e.weight
    ('c', ['a', 'b'], 12.0)
    """
    out = []
    for s in searches:
        for object_id, (weight, position) in sorted(s.actions.items(), key=lambda kv: kv[1][1]):
            skipped = [d for d, k in sorted(s.impressions, key=lambda dk: dk[1]) if k < position and d not in s.actions]
            out.append(Example(s.query, object_id, negative_ids=skipped,
                               weight=weight * inverse_propensity(theta, position, max_inverse_propensity)))
    return out


def keep_frequent_queries(searches: list[Search], min_sessions: int) -> tuple[list[Search], int]:
    """Searches of queries with at least ``min_sessions`` searches with an interaction; and how many queries fell short."""
    sessions = Counter(s.query for s in searches if s.actions)
    kept = {q for q, n in sessions.items() if n >= min_sessions}
    return [s for s in searches if s.query in kept], len(sessions) - len(kept)


def dedupe(examples: Iterable[Example]) -> list[Example]:
    """Merge identical (query, item) pairs: weights and sessions add up; skipped items pooled, positives removed.

    >>> merged = dedupe([Example("q", "a", negative_ids=["b"], weight=1.0), Example("q", "a", negative_ids=["b", "c"], weight=2.0),
    ...                  Example("q", "c", weight=1.0)])
    >>> [(e.positive_id, e.weight, e.sessions, e.negative_ids) for e in merged]
    [('a', 3.0, 2, ['b']), ('c', 1.0, 1, [])]
    """
    merged: dict[tuple[str, str], Example] = {}
    skipped: dict[tuple[str, str], Counter] = defaultdict(Counter)
    positives: dict[str, set[str]] = defaultdict(set)
    for e in examples:
        key = (e.query, e.positive_id)
        if key in merged:
            merged[key].weight += e.weight
            merged[key].sessions += e.sessions
        else:
            merged[key] = Example(e.query, e.positive_id, e.positive, weight=e.weight, sessions=e.sessions)
        skipped[key].update(e.negative_ids)
        positives[e.query].add(e.positive_id)
    for key, e in merged.items():
        e.negative_ids = [d for d, _ in sorted(skipped[key].items(), key=lambda kv: (-kv[1], kv[0]))
                          if d not in positives[e.query]]
    return sorted(merged.values(), key=lambda e: (e.query, e.positive_id))


def query_bucket(query: str) -> float:
    """A stable number in [0, 1) from the normalised query text (sha256), for the split."""
    return int.from_bytes(hashlib.sha256(normalise_query(query).encode()).digest()[:8], "big") / 2 ** 64


def split_by_query(examples: Iterable[Example], valid_fraction: float = 0.1) -> tuple[list[Example], list[Example]]:
    """Train and validation by a hash of the query text: no query is on both sides."""
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    train, valid = [], []
    for e in examples:
        (valid if query_bucket(e.query) < valid_fraction else train).append(e)
    return train, valid


def attach_texts(examples: Iterable[Example], texts: dict[str, str], max_negatives: int = 5) -> tuple[list[Example], int]:
    """Examples with item texts; pairs whose positive has no text are dropped (counted)."""
    out, dropped = [], 0
    for e in examples:
        if not texts.get(e.positive_id):
            dropped += 1
            continue
        ids = [d for d in e.negative_ids if texts.get(d)][:max_negatives]
        out.append(Example(e.query, e.positive_id, texts[e.positive_id], ids, [texts[d] for d in ids], e.weight, e.sessions,
                           e.label))
    return out, dropped


# --- the result ------------------------------------------------------------------------------

@dataclass
class TrainingData:
    """Train and validation examples, the fitted propensities, and counts of what was used."""
    train: list[Example]
    valid: list[Example]
    propensities: dict[int, float]
    counts: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """What the data is made of (JSON-ready; stored with the model in the registry).

        ``searches``: logged searches read; ``sessions``: searches with an interaction whose query
        made it into the data; ``clicks``: (search, item) interactions (an item clicked, carted and
        bought in one search counts once; ``events`` has the raw event counts); ``positions``: those
        interactions per rank; ``queries``/``pairs``: distinct queries and (query, item) pairs, also
        per side; ``propensities``: theta per rank; ``identifiable_share``: see the module docstring.
        """
        used = self.train + self.valid
        return {**self.counts,
                "queries": len({e.query for e in used}),
                "queries_train": len({e.query for e in self.train}),
                "queries_valid": len({e.query for e in self.valid}),
                "pairs": len(used), "pairs_train": len(self.train), "pairs_valid": len(self.valid),
                "propensities": {str(k): round(v, 6) for k, v in sorted(self.propensities.items())}}

    def save(self, directory: str | Path) -> Path:
        """``train.jsonl``, ``valid.jsonl`` and ``summary.json`` under ``directory`` (each written atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, rows in (("train.jsonl", self.train), ("valid.jsonl", self.valid)):
            write_text_atomic(directory / name, "".join(json.dumps(asdict(e), ensure_ascii=False) + "\n" for e in rows))
        write_json_atomic(directory / "summary.json", self.summary())
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "TrainingData":
        directory = Path(directory)
        rows = {n: [Example(**json.loads(line)) for line in (directory / f"{n}.jsonl").read_text(encoding="utf-8").splitlines()]
                for n in ("train", "valid")}
        summary = json.loads((directory / "summary.json").read_text(encoding="utf-8"))
        propensities = {int(k): v for k, v in summary.pop("propensities").items()}
        counts = {k: v for k, v in summary.items() if k not in _DERIVED}
        return cls(rows["train"], rows["valid"], propensities, counts)


_DERIVED = frozenset({"queries", "queries_train", "queries_valid", "pairs", "pairs_train", "pairs_valid", "propensities"})


def build_training_data(searches: list[Search], *, min_sessions: int = 1, valid_fraction: float = 0.1,
                        max_inverse_propensity: float = MAX_INVERSE_PROPENSITY, prior_strength: float = 1.0,
                        texts: dict[str, str] | None = None, max_negatives: int = 5) -> TrainingData:
    """Searches -> propensities (fitted on every search) -> examples -> min counts -> dedupe -> split (pure).

    Without ``texts`` the examples carry ids only (``positive`` empty).
    """
    bias = fit_position_bias(observations(searches), prior_strength=prior_strength)
    kept, short = keep_frequent_queries(searches, min_sessions)
    pairs = dedupe(click_examples(kept, bias.theta, max_inverse_propensity))
    missing = 0
    if texts is not None:
        pairs, missing = attach_texts(pairs, texts, max_negatives)
    train, valid = split_by_query(pairs, valid_fraction)
    clicked = [s for s in kept if s.actions]
    used_queries = {e.query for e in train + valid}
    counts = {"searches": len(searches), "searches_with_clicks": sum(bool(s.actions) for s in searches),
              "sessions": sum(s.query in used_queries for s in clicked),
              "users": len({s.user for s in clicked if s.user}),
              "clicks": sum(len(s.actions) for s in clicked),
              "positions": {str(k): n for k, n in sorted(Counter(p for s in clicked for _, p in s.actions.values()).items())},
              "queries_below_min_sessions": short, "min_sessions": min_sessions, "pairs_without_text": missing,
              "max_inverse_propensity": max_inverse_propensity, "valid_fraction": valid_fraction,
              "identifiable_share": round(bias.identifiable_share, 4), "em_iterations": bias.iterations,
              "em_converged": bias.converged}
    return TrainingData(train, valid, bias.theta, counts)


# --- I/O: OpenSearch ---------------------------------------------------------------------------

def _window(field_name: str, since: str | None, until: str | None) -> list[dict]:
    bounds = {k: v for k, v in (("gte", since), ("lt", until)) if v}
    return [{"range": {field_name: bounds}}] if bounds else []


def item_texts(client, index: str, ids: Iterable[str], chunk: int = 1000) -> dict[str, str]:
    """Item texts from a catalogue index, built exactly as the encoder sees them (``workers.encode.item_text``)."""
    ids, out = sorted(set(ids)), {}
    for start in range(0, len(ids), chunk):
        docs = client.mget(index=index, body={"ids": ids[start:start + chunk]},
                           _source_includes=["title", "brand", "category_path"])["docs"]
        out.update({d["_id"]: item_text(d["_source"]) for d in docs if d.get("found")})
    return out


def collect(client, settings, catalogue: str, since: str | None = None, until: str | None = None, *,
            min_sessions: int = 1, valid_fraction: float = 0.1, max_inverse_propensity: float = MAX_INVERSE_PROPENSITY,
            prior_strength: float = 1.0, max_negatives: int = 5) -> TrainingData:
    """Training data for ``catalogue`` from the click logs of searches in ``[since, until)`` (ISO 8601).

    Scans ``settings.ubi_queries_index`` (searches of the catalogue in the window) and
    ``settings.ubi_events_index`` (its click, add-to-cart and purchase events from ``since`` minus
    a day, for shoppers' clock drift; events join their search by ``query_id``, so an event after
    ``until`` for a search inside the window counts), then reads item texts from the live index.
    """

    index = live_index(client, catalogue)
    if index is None:
        raise Missing(f"catalogue {catalogue!r} has no live index")
    for name in (settings.ubi_queries_index, settings.ubi_events_index):
        if client.indices.exists(index=name):
            client.indices.refresh(index=name)
    q_filter = [{"term": {"catalogue": catalogue}}, *_window("timestamp", since, until)]
    queries = list(_scan(helpers, client, settings.ubi_queries_index, {"query": {"bool": {"filter": q_filter}}},
                         ["query_id", "user_id", "user_query", "timestamp", "impressions"]))
    early = (parse_time(since) - MAX_FUTURE).isoformat() if since else None
    e_filter = [{"term": {"catalogue": catalogue}}, {"terms": {"action_name": sorted(ACTION_WEIGHTS)}},
                *_window("timestamp", early, None)]
    events = _scan(helpers, client, settings.ubi_events_index, {"query": {"bool": {"filter": e_filter}}},
                   ["query_id", "action_name", "object_id", "position"])
    searches, joined = join_searches(queries, events)
    if not any(s.actions for s in searches):
        raise Missing(f"no clicks on searches of {catalogue!r} in the window {since or '-'} .. {until or '-'}")
    needed = {d for s in searches for d in s.actions}  # and what was shown above the deepest interaction
    needed |= {d for s in searches if s.actions for d, k in s.impressions if k < max(p for _, p in s.actions.values())}
    data = build_training_data(searches, min_sessions=min_sessions, valid_fraction=valid_fraction,
                               max_inverse_propensity=max_inverse_propensity, prior_strength=prior_strength,
                               texts=item_texts(client, index, needed), max_negatives=max_negatives)
    data.counts.update({"catalogue": catalogue, "index": index, "events": joined,
                        "window": {"since": since, "until": until}})
    return data


def _scan(helpers, client, index: str, query: dict, fields: list[str]):
    if not client.indices.exists(index=index):
        return
    for hit in helpers.scan(client, index=index, query=query, _source_includes=fields, size=1000):
        yield hit["_source"]

