"""The learned ranker on the query path: the trained model loaded, the live one found, the ``LearnedRank`` stage.

A ranker is a LightGBM LambdaMART model trained by ``shopsearch train`` (``learn/ranker.py``)
over the features of ``features.py``. It is served for an index version once it passed the gate:
the version's mapping ``_meta.ranker`` then names it (``{"version", "path", "features",
"model_version", "promoted_at", "gate"}``). The ranker belongs to the index it was trained on:
a new index version starts without one (strategy ``learned`` answers in hybrid order until a
ranker is trained and gated for it), and a model file that cannot be read is a note in the
answer, never an error.

This module only loads and predicts (one ``predict`` call over all candidates of a query, one
thread, through the model compiled to machine code where it can be: ``compiled_ranker.py``);
training, the model card and the registry are in ``learn/ranker.py``, which the query layer may
not import.

>>> print(LearnedRank())
LearnedRank(ranker, features)
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import lightgbm
import lightgbm.basic
import numpy as np
from opensearchpy import OpenSearchException, helpers

from shopsearch.query.compiled_ranker import compiled_predict
from shopsearch.query.features import FeatureTable, feature_table, prepare_product
from shopsearch.query.stages import Search, Stage
from shopsearch.query.title_bm25 import TitleStats

# how often a process re-reads an index's ``_meta.ranker`` (a promotion is served within this time)
RANKER_REFRESH_SECONDS = 5.0
WARM_FIELDS = ["title", "brand", "colour", "material"]  # what features.prepare_product reads
log = logging.getLogger(__name__)


class Ranker:
    """A trained ranker: a LightGBM booster, the feature names it reads (in order) and the
    catalogue's title statistics it was trained with (``title_bm25``; None for older rankers).

    ``backend`` says what scores a query: ``compiled`` (the model file compiled to machine code,
    ``compiled_ranker.py``; what a loaded ranker serves where lleaves runs), ``lightgbm-c`` (one
    call of LightGBM's C predict) or ``lightgbm`` (the Python wrapper).
    """

    def __init__(self, booster: lightgbm.Booster, features: list[str], version: str = "",
                 title_stats: TitleStats | None = None, predict=None):
        self.booster, self.features, self.version = booster, list(features), version
        self.title_stats = title_stats
        self._predict = predict or c_predict(booster)
        self.backend = "compiled" if predict else "lightgbm-c" if self._predict else "lightgbm"

    @classmethod
    def load(cls, path: str | Path, version: str = "") -> "Ranker":
        """The ranker saved at ``path`` (LightGBM's text model; its feature names are in the file),
        with the title statistics saved beside it, compiled where it can be."""
        booster = lightgbm.Booster(model_file=str(path))
        return cls(booster, booster.feature_name(), version, TitleStats.load(Path(path).parent),
                   compiled_predict(path, booster))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Scores of the rows of ``x`` (columns in :attr:`features` order), higher is better; one thread."""
        if self._predict is not None:
            return self._predict(x)
        return self.booster.predict(x, num_threads=1)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Per-row SHAP contributions (TreeSHAP, ``pred_contrib``): one column per feature and the
        expected value last; each row sums to the prediction."""
        return self.booster.predict(x, pred_contrib=True, num_threads=1)

    def score_table(self, table: FeatureTable) -> np.ndarray:
        """Scores of a query's candidates."""
        return self.predict(table.select(self.features))


def c_predict(booster: lightgbm.Booster):
    """``booster.predict(x, num_threads=1)`` as one call of LightGBM's C ``LGBM_BoosterPredictForMat``.

    The Python ``Booster.predict`` sets up a predictor, checks and converts its input on every
    call: about 0.3 ms, as much as scoring a query's hundred candidates. This calls the same C
    function that ``predict`` ends in, on the same float64 row-major matrix, with the same
    iterations (the best one when the booster has one, else all), so the scores are the same
    numbers (``tests/test_learned_rank.py``). None when this LightGBM build has no such entry
    point (``predict`` then goes the Python way).
    """
    try:
        function, handle = lightgbm.basic._LIB.LGBM_BoosterPredictForMat, booster._handle
    except AttributeError:
        return None
    iterations = booster.best_iteration if booster.best_iteration and booster.best_iteration > 0 else -1
    parameters = ctypes.c_char_p(b"num_threads=1")
    float64, row_major, normal = 1, 1, 0  # LightGBM's C_API_DTYPE_FLOAT64, C_API_IS_ROW_MAJOR, C_API_PREDICT_NORMAL

    def predict(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float64)
        rows, columns = x.shape
        out = np.empty(rows, dtype=np.float64)
        written = ctypes.c_int64(0)
        failed = function(handle, x.ctypes.data_as(ctypes.c_void_p), ctypes.c_int(float64), ctypes.c_int32(rows),
                          ctypes.c_int32(columns), ctypes.c_int(row_major), ctypes.c_int(normal), ctypes.c_int(0),
                          ctypes.c_int(iterations), parameters, ctypes.byref(written),
                          out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)))
        if failed or written.value != rows:  # the wrapper raises LightGBM's own message
            return booster.predict(x, num_threads=1)
        return out
    return predict


class LiveRankers:
    """The ranker each index version serves (``_meta.ranker``), re-read every few seconds; pins for the gate.

    When an index's ranker first loads, a background thread prepares the text of the index's
    ``warm_products`` most popular products (:func:`warm_product_text`), so the first queries
    do not tokenise every candidate's title (0: no warm-up).
    """

    def __init__(self, client, warm_products: int = 0):
        self.client, self.warm_products = client, warm_products
        self._by_index: dict[str, tuple[float, Ranker | None, str | None]] = {}
        self._pinned: dict[str, Ranker | None] = {}
        self._warmed: set[str] = set()
        self._lock = threading.Lock()

    def pin(self, index: str, ranker: Ranker | None) -> None:
        """Serve ``ranker`` for ``index`` whatever its ``_meta`` says (the gate scores a candidate this way)."""
        self._pinned[index] = ranker

    def unpin(self, index: str) -> None:
        """Back to the ranker the index's ``_meta`` names."""
        self._pinned.pop(index, None)

    def for_index(self, live) -> tuple[Ranker | None, str | None]:
        """``(ranker, note)``: the index's ranker, or None and why (no ranker passed, or it cannot load)."""
        if live.index in self._pinned:
            return self._pinned[live.index], None
        cached = self._by_index.get(live.index)
        if cached and time.monotonic() - cached[0] < RANKER_REFRESH_SECONDS:
            return cached[1], cached[2]
        entry = self.client.indices.get_mapping(index=live.index)[live.index]["mappings"].get("_meta", {}).get("ranker")
        ranker, note = self._load(entry, cached[1] if cached else None)
        with self._lock:
            self._by_index[live.index] = (time.monotonic(), ranker, note)
            warm = ranker is not None and self.warm_products > 0 and live.index not in self._warmed
            self._warmed.add(live.index)
        if warm:
            threading.Thread(target=warm_product_text, args=(self.client, live.index, self.warm_products),
                             name=f"warm-{live.index}", daemon=True).start()
        return ranker, note

    @staticmethod
    def _load(entry: dict | None, previous: Ranker | None) -> tuple[Ranker | None, str | None]:
        if not entry:
            return None, "no ranker has passed the gate for this index"
        if previous is not None and previous.version == entry.get("version"):
            return previous, None
        try:
            return Ranker.load(entry["path"], entry.get("version", "")), None
        except (KeyError, OSError, lightgbm.basic.LightGBMError) as e:
            return None, f"ranker {entry.get('version')} could not be loaded: {e}"


def warm_product_text(client, index: str, limit: int) -> int:
    """Prepare the text features of ``index``'s ``limit`` most popular products in this process
    (``features.prepare_product``); returns how many. A failure only ends the warm-up: the
    features are then computed when a candidate first needs them, as without it."""
    most_popular = {"popularity": {"order": "desc", "missing": "_last", "unmapped_type": "float"}}
    hits = helpers.scan(client, index=index, preserve_order=True, size=1000, scroll="1m",
                        query={"_source": WARM_FIELDS, "sort": [most_popular]})
    done = 0
    try:
        for hit in hits:
            if done >= limit:
                break
            prepare_product(hit.get("_source") or {})
            done += 1
    except OpenSearchException as e:
        log.warning("warming the product text of %s stopped after %d products: %s", index, done, e)
    finally:
        hits.close()
    return done


def spread(scores: np.ndarray, low: float, high: float) -> np.ndarray:
    """Scores moved onto ``[low, high]`` in the same order (the fused range, so boosts added after
    ranking keep their meaning).

    >>> spread(np.array([3.0, 1.0, 2.0]), 0.0, 1.0).tolist()
    [1.0, 0.0, 0.5]
    """
    span = float(scores.max() - scores.min())
    if span <= 0:
        return np.full(len(scores), high)
    return low + (scores - scores.min()) / span * (high - low)


@dataclass(frozen=True)
class LearnedRank(Stage):
    """The candidates re-scored by the index's learned ranker (no ranker: left in hybrid order).

    With ``explain``, ``components["learned"]`` holds each candidate's ranker score, features and
    their contributions.
    """

    def args(self) -> tuple[str, ...]:
        return ("ranker", "features")

    def run(self, s: Search) -> Search:
        ranked = s.answer.ranked
        ranker, note = s.searcher.rankers.for_index(s.live)
        if ranker is None or s.browse or len(ranked) < 2:
            s.answer.applied.append(f"learned: {note or 'nothing to re-rank'}; hybrid order")
            return s
        table = table_of(s, ranker.title_stats)
        x = table.select(ranker.features)
        raw = ranker.predict(x)
        fused = [v for _, v in ranked]
        placed = spread(raw, min(fused), max(fused))
        order = np.argsort(-raw, kind="stable")
        placed_list = placed.tolist()  # Python floats: no numpy scalar per candidate
        s.answer.ranked = [(table.ids[i], placed_list[i]) for i in order.tolist()]
        if s.req.explain:
            s.answer.components["learned"] = explain_rows(ranker, table, x, raw)
        return s


def table_of(s: Search, title_stats: TitleStats | None = None) -> FeatureTable:
    """The feature table of a search's candidates as the ranker sees them (serving and training alike)."""
    got = s.got
    profile = s.searcher.profile(s.live.meta.get("catalogue", ""), s.req.user) if s.req.user else None
    return feature_table(got.text, s.answer.ranked, s.answer.sources, dict(got.bm25), dict(got.knn), profile,
                         title_stats)


def explain_rows(ranker: Ranker, table: FeatureTable, x: np.ndarray, raw: np.ndarray) -> dict[str, dict]:
    """Per candidate: the ranker's score, each feature it read and that feature's contribution."""
    contrib = ranker.contributions(x)
    out = {}
    for i, d in enumerate(table.ids):
        values = table.row(i)
        out[d] = {"ranker": ranker.version, "score": round(float(raw[i]), 6),
                  "expected": round(float(contrib[i, -1]), 6),
                  "features": {n: {"value": values.get(n), "contribution": round(float(c), 6)}
                               for n, c in zip(ranker.features, contrib[i, :-1])}}
    return out
