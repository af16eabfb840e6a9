import math

import numpy as np
import pytest

from cloudseg.metrics import Confusion, per_scene_mean, pooled

PRED = np.array([[1, 1, 0, 0], [1, 0, 0, 1]], dtype=bool)
TRUTH = np.array([[1, 0, 0, 0], [1, 1, 0, 1]], dtype=bool)
# By hand: TP = 3 (0,0) (1,0) (1,3); FP = 1 (0,1); FN = 1 (1,1); TN = 3.


def test_counts_and_scores_by_hand():
    c = Confusion().add(PRED, TRUTH)
    assert (c.tp, c.fp, c.fn, c.tn) == (3, 1, 1, 3)
    s = c.scores()
    assert s["jaccard"] == pytest.approx(3 / 5)
    assert s["precision"] == pytest.approx(3 / 4)
    assert s["recall"] == pytest.approx(3 / 4)
    assert s["specificity"] == pytest.approx(3 / 4)
    assert s["accuracy"] == pytest.approx(6 / 8)
    assert s["dice"] == pytest.approx(6 / 8)


def test_chunks_add_up_to_the_whole():
    rng = np.random.default_rng(1)
    pred, truth = rng.random((50, 40)) > 0.4, rng.random((50, 40)) > 0.6
    whole = Confusion().add(pred, truth)
    chunked = Confusion()
    for rows in np.array_split(np.arange(50), 7):
        chunked.add(pred[rows], truth[rows])
    assert chunked == whole


def test_no_data_pixels_are_excluded():
    valid = np.ones_like(PRED)
    valid[0, 1] = False  # drops the one false positive
    c = Confusion().add(PRED, TRUTH, valid)
    assert (c.tp, c.fp, c.fn, c.tn) == (3, 0, 1, 3)
    assert c.scores()["precision"] == 1.0


def test_undefined_scores_are_nan_not_zero():
    clear = np.zeros((3, 3), bool)
    s = Confusion().add(clear, clear).scores()
    assert math.isnan(s["jaccard"]) and math.isnan(s["precision"]) and math.isnan(s["recall"])
    assert s["specificity"] == 1.0 and s["accuracy"] == 1.0


def test_per_scene_mean_differs_from_pooled():
    small = Confusion(tp=1, fp=1, fn=0, tn=0)  # jaccard 0.5
    large = Confusion(tp=90, fp=0, fn=10, tn=0)  # jaccard 0.9
    assert per_scene_mean({"a": small, "b": large})["jaccard"] == pytest.approx(0.7)
    assert pooled([small, large])["jaccard"] == pytest.approx(91 / 102)


def test_per_scene_mean_skips_scenes_where_a_score_is_undefined():
    clear = Confusion(tn=10)
    cloudy = Confusion(tp=4, fn=1)
    assert per_scene_mean([clear, cloudy])["jaccard"] == pytest.approx(0.8)
    assert per_scene_mean([clear, cloudy])["accuracy"] == pytest.approx((1.0 + 0.8) / 2)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes differ"):
        Confusion().add(PRED, TRUTH[:, :3])
