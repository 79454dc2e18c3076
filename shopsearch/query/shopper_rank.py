"""The learned shopper ranking: a LightGBM LambdaMART model over user × item features, as a stage.

``ShopperRank`` takes the place of ``Personalise`` in every strategy when the
``personalise_ranker`` setting is on (``strategies.pipeline``). For a known shopper whose
profile carries purchase statistics (``profile["purchases"]``), it scores every candidate with
the catalogue's shopper ranker (features in ``shopper_features.py``) and orders them by that
score; without a shopper nothing changes, and without a model or purchase statistics it runs
its fallback (``Personalise``, the Python boost), so turning the setting on never breaks a
search.

The model lives beside the catalogue's other models: ``<models_dir>/shopper-ranker/<catalogue>/``
(``model.txt``, LightGBM's text format, and ``card.json``: features, parameters, training data,
figures, feature importances), written by ``shopsearch/learn/shopper_ranker.py``. This module
only reads and predicts (the query layer may not import the learn layer that trains it).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import lightgbm
import numpy as np

from shopsearch.errors import MappingError
from shopsearch.query.compiled_ranker import compiled_predict
from shopsearch.query.fuse import rank
from shopsearch.query.shopper_features import FEATURES, feature_rows
from shopsearch.query.stages import Personalise, Search, Stage
from shopsearch.settings import Settings

MODEL_FILE, CARD_FILE = "model.txt", "card.json"
log = logging.getLogger(__name__)


def model_dir(settings: Settings, catalogue: str) -> Path:
    """Where the catalogue's shopper ranker is stored: ``<models_dir>/shopper-ranker/<catalogue>``."""
    return settings.models_path / "shopper-ranker" / catalogue


class ShopperModel:
    """A trained shopper ranker: the LightGBM booster and its card (the feature names it was trained
    on); ``backend`` ``compiled`` when a loaded model scores through its machine code."""

    def __init__(self, booster: lightgbm.Booster, card: dict, predict=None):
        if tuple(card.get("features", ())) != FEATURES:
            raise MappingError(f"shopper ranker trained on features {card.get('features')}, this code computes "
                               f"{list(FEATURES)}: retrain it (shopsearch eval personalisation --learned)")
        self.booster, self.card = booster, card
        self._predict = predict or booster.predict
        self.backend = "compiled" if predict else "lightgbm"

    @classmethod
    def load(cls, directory: str | Path) -> "ShopperModel":
        """The model saved in ``directory`` (``model.txt`` and ``card.json``), compiled to machine
        code where it can be (``compiled_ranker.py``, as the learned ranker)."""
        directory = Path(directory)
        card = json.loads((directory / CARD_FILE).read_text(encoding="utf-8"))
        booster = lightgbm.Booster(model_file=str(directory / MODEL_FILE))
        return cls(booster, card, compiled_predict(directory / MODEL_FILE, booster))

    def predict(self, rows) -> list[float]:
        """One score per feature row (a list of rows or an array; higher ranks first)."""
        if len(rows) == 0:
            return []
        return self._predict(np.asarray(rows, dtype=np.float64)).tolist()


_LOADED: dict[str, tuple[float, ShopperModel | None]] = {}
_LOCK = threading.Lock()


def shopper_model(settings: Settings, catalogue: str) -> ShopperModel | None:
    """The catalogue's stored shopper ranker (loaded once per process, again when its file changes), or None.

    A model trained on other features than this code computes (stored before an upgrade) is None
    too, logged once per file: the search falls back to the script rather than failing.
    """
    directory = model_dir(settings, catalogue)
    path = directory / MODEL_FILE
    if not path.exists() or not (directory / CARD_FILE).exists():
        return None
    stamp = path.stat().st_mtime
    with _LOCK:
        found = _LOADED.get(str(directory))
        if found is None or found[0] != stamp:
            try:
                model = ShopperModel.load(directory)
            except MappingError as e:
                log.warning("shopper ranker %s not used: %s", directory, e)
                model = None
            found = _LOADED[str(directory)] = (stamp, model)
    return found[1]


def text_scores(lexical: list[tuple[str, float]], knn: list[tuple[str, float]], weight: float) -> dict[str, float]:
    """Each candidate's fused text score (min-max of BM25 and k-NN): the ranker's ``text_score``.

    >>> text_scores([("a", 4.0), ("b", 2.0)], [("b", 0.9)], 0.5)
    {'a': 0.5, 'b': 0.5}
    """
    return dict(rank("minmax", lexical, knn, weight))


def candidate_rows(purchases: dict, ranked: list[tuple[str, float]], sources: dict[str, dict],
                   text: dict[str, float], now: datetime) -> list[list[float]]:
    """The feature rows of the ranked candidates (category and popularity from their sources)."""
    candidates = [{"id": d, "category": (sources.get(d) or {}).get("category"), "title": (sources.get(d) or {}).get("title"),
                   "popularity": (sources.get(d) or {}).get("popularity_norm"), "text_score": text.get(d, 0.0)}
                  for d, _ in ranked]
    return feature_rows(purchases, candidates, now)


def order_by_scores(ranked: list[tuple[str, float]], scores: list[float]) -> list[tuple[str, float]]:
    """The candidates ordered by the ranker's scores, best first (ties keep the incoming order).

    >>> order_by_scores([("a", 0.9), ("b", 0.5)], [0.1, 0.7])
    [('b', 0.7), ('a', 0.1)]
    """
    order = sorted(range(len(ranked)), key=lambda i: -scores[i])
    return [(ranked[i][0], round(float(scores[i]), 6)) for i in order]


@dataclass(frozen=True)
class ShopperRank(Stage):
    """A known shopper's candidates ordered by the learned shopper ranker; ``fallback`` without one."""
    fallback: Stage = field(default_factory=Personalise)

    def args(self) -> tuple[str, ...]:
        return ("shopper-ranker", f"fallback={self.fallback}")

    def run(self, s: Search) -> Search:
        if not s.req.user or not s.answer.ranked:
            return s
        catalogue = s.live.meta.get("catalogue", "")
        purchases = (s.profile or {}).get("purchases")  # the profile came with the candidates: no second request
        model = shopper_model(s.searcher.settings, catalogue) if purchases and purchases.get("orders") else None
        if model is None:
            return self.fallback.run(s)
        text = text_scores(s.lexical, s.got.knn if s.got else [], s.weight)
        rows = candidate_rows(purchases, s.answer.ranked, s.answer.sources, text, datetime.now(timezone.utc))
        scores = model.predict(rows)
        s.answer.components["shopper_rank"] = {d: round(float(v), 6) for (d, _), v in zip(s.answer.ranked, scores)}
        s.answer.ranked = order_by_scores(s.answer.ranked, scores)
        return s
