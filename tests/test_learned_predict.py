"""The served ranker's ``predict`` (``shopsearch/query/learned.py``): LightGBM's own C predict,
called once per query, gives exactly the scores of ``Booster.predict``; a loaded ranker is
compiled to machine code (``compiled_ranker.py``, lleaves), gives the same scores, and keeps the
code beside the model for the next process.

A real LightGBM LambdaMART model, fitted here on features of real Home Depot text (no
services needed: the features are pure functions of the candidates).
"""

from __future__ import annotations

import lightgbm
import numpy as np
import pytest

from shopsearch.learn.ranker import PARAMS
from shopsearch.query.features import feature_table
from shopsearch.query.compiled_ranker import cache_key, compiled_predict
from shopsearch.query.learned import Ranker, c_predict

from .test_learned_features import _candidates, _home_depot


@pytest.fixture(scope="module")
def tables():
    products, judged = _home_depot()
    out = []
    for q in sorted(judged)[::211]:
        ranked, sources, bm25, knn = _candidates(products, judged, q, n=60)
        table = feature_table(q, ranked, sources, bm25, knn)
        labels = [4 if d in judged[q] else 0 for d in table.ids]
        out.append((table, labels))
    return out


@pytest.fixture(scope="module")
def booster(tables):
    x = np.vstack([t.matrix for t, _ in tables])
    y = np.concatenate([labels for _, labels in tables])
    train = lightgbm.Dataset(x, y, group=[len(t.ids) for t, _ in tables], feature_name=tables[0][0].names)
    tune = lightgbm.Dataset(x[:300], y[:300], group=[len(t.ids) for t, _ in tables[:5]], reference=train)
    params = {**PARAMS, "min_data_in_leaf": 5, "num_threads": 1}
    return lightgbm.train(params, train, num_boost_round=40, valid_sets=[tune],
                          callbacks=[lightgbm.early_stopping(5, verbose=False)])


def test_the_c_predict_gives_the_wrappers_scores_at_the_best_iteration(tables, booster):
    ranker = Ranker(booster, booster.feature_name(), "test")
    assert booster.best_iteration > 0
    for table, _ in tables:
        x = table.select(ranker.features)
        np.testing.assert_array_equal(ranker.predict(x), booster.predict(x, num_threads=1))


def test_a_saved_model_predicts_the_same_through_c_and_the_wrapper(tables, booster, tmp_path):
    path = tmp_path / "model.txt"
    booster.save_model(str(path), num_iteration=booster.best_iteration)
    ranker = Ranker.load(path, "saved")
    for table, _ in tables:
        x = table.select(ranker.features)
        np.testing.assert_array_equal(ranker.predict(x), ranker.booster.predict(x, num_threads=1))


def test_a_matrix_with_missing_columns_and_any_layout_is_scored_like_the_wrapper(tables, booster):
    ranker = Ranker(booster, booster.feature_name() + [], "test")
    table = tables[0][0]
    x = table.select(ranker.features[:-3] + ["not_a_feature"] * 3)  # NaN columns
    for candidate in (x, np.asfortranarray(x), x.astype(np.float32)):
        np.testing.assert_array_equal(ranker.predict(candidate), booster.predict(candidate, num_threads=1))


def test_a_wrong_number_of_columns_is_lightgbms_own_error(booster):
    predict = c_predict(booster)
    with pytest.raises(lightgbm.basic.LightGBMError):
        predict(np.zeros((3, 2)))


@pytest.fixture
def saved(booster, tmp_path):
    path = tmp_path / "ranker" / "model.txt"
    path.parent.mkdir()
    booster.save_model(str(path), num_iteration=booster.best_iteration)
    return path


def test_a_loaded_ranker_is_compiled_and_scores_like_lightgbm_with_missing_values(tables, saved):
    ranker = Ranker.load(saved, "saved")
    assert ranker.backend == "compiled"
    for table, _ in tables:
        x = table.select(ranker.features[:-2] + ["not_a_feature"] * 2)  # two columns all NaN
        np.testing.assert_allclose(ranker.predict(x), ranker.booster.predict(x, num_threads=1), rtol=0, atol=1e-9)
        assert np.argsort(-ranker.predict(x), kind="stable").tolist() == \
            np.argsort(-ranker.booster.predict(x, num_threads=1), kind="stable").tolist()


def test_the_machine_code_is_kept_beside_the_model_and_read_by_the_next_load(saved):
    Ranker.load(saved)
    code = saved.parent / "compiled" / f"{cache_key(saved)}.o"
    assert code.is_file() and code.with_suffix(".sha256").read_text().split() != []
    first = code.stat()
    assert Ranker.load(saved).backend == "compiled"
    assert (code.stat().st_ino, code.stat().st_mtime_ns) == (first.st_ino, first.st_mtime_ns)  # read, not rewritten


def test_machine_code_that_fails_its_checksum_is_compiled_again(saved):
    Ranker.load(saved)
    code = saved.parent / "compiled" / f"{cache_key(saved)}.o"
    good = code.read_bytes()
    code.write_bytes(b"\x7fELF not the model")
    ranker = Ranker.load(saved)
    assert ranker.backend == "compiled" and code.read_bytes() == good


def test_the_cache_key_changes_with_the_model(booster, saved, tmp_path):
    other = tmp_path / "other.txt"
    booster.save_model(str(other), num_iteration=1)
    assert cache_key(saved) != cache_key(other) and cache_key(saved) == cache_key(saved)


def test_compiled_code_that_does_not_give_the_boosters_scores_is_refused_and_removed(tables, booster, saved):
    other = lightgbm.Booster(model_str=booster.model_to_string(num_iteration=1))  # another forest
    assert compiled_predict(saved, other) is None
    assert not list((saved.parent / "compiled").glob("*.o"))
    assert Ranker(booster, booster.feature_name()).backend == "lightgbm-c"  # a booster alone: LightGBM's C predict
