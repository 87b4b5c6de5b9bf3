"""The statistics of the analysis, each checked by hand or against scipy."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from fercore.analysis.estimators import (
    au_cooccurrence,
    au_correlation,
    au_given_emotion,
    base_rates,
    benjamini_hochberg,
    correlation,
    emotion_correlation,
    expected_share,
    kl_selectivity,
    null_quantile,
    per_class_correlation,
    spatial_share,
    topk_au_share,
    within_class_correlation,
)
from fercore.data.facs import presence, region_polygons


def test_presence_is_intensity_above_zero_and_nan_where_not_coded():
    np.testing.assert_array_equal(presence(np.array([[0, 3, np.nan]])), [[0, 1, np.nan]])


def test_kl_matches_hand_computation():
    counts = np.array([[2.0, 0.0, 2.0], [1.0, 1.0, 2.0], [0.0, 0.0, 0.0]])
    base = np.array([0.5, 0.25, 0.25])
    kl = kl_selectivity(counts, base)
    assert kl[0] == pytest.approx(0.5 * math.log(0.5 / 0.5) + 0.5 * math.log(0.5 / 0.25))
    assert kl[1] == pytest.approx(0.25 * math.log(0.25 / 0.5) + 0.25 * math.log(1.0) + 0.5 * math.log(2.0))
    assert np.isnan(kl[2])
    # base rates need not sum to 1: they are renormalised to a distribution
    np.testing.assert_allclose(kl_selectivity(counts[:2], base * 3), kl[:2])


def test_au_correlation_matches_hand_and_scipy_and_skips_missing_codes():
    x = np.array([[1.0], [2.0], [3.0], [4.0], [100.0]])
    present = np.array([[0.0], [0.0], [1.0], [1.0], [np.nan]])  # the last image is not coded
    r, p, n = au_correlation(x, present)
    assert r[0, 0] == pytest.approx(2 / math.sqrt(5))
    t = r[0, 0] * math.sqrt(2 / (1 - r[0, 0] ** 2))
    assert p[0, 0] == pytest.approx(2 * sps.t.sf(t, 2))
    assert n.tolist() == [4]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3))
    y = (rng.random((80, 2)) < 0.4).astype(float)
    x[:, 0] += 1.5 * y[:, 1]
    r, p, _ = au_correlation(x, y)
    for f in range(3):
        for a in range(2):
            ref = sps.pointbiserialr(y[:, a], x[:, f])
            assert r[f, a] == pytest.approx(ref.statistic)
            assert p[f, a] == pytest.approx(ref.pvalue)


def test_constant_variables_give_nan_not_errors():
    r, p, _ = au_correlation(np.ones((6, 1)), np.array([[0.0], [1.0]] * 3))
    assert np.isnan(r).all() and np.isnan(p).all()
    assert np.isnan(correlation(np.arange(6.0)[:, None], np.zeros(6))).all()


def test_bh_matches_hand_and_scipy_and_leaves_nan_out():
    p = np.array([0.01, 0.04, 0.03, 0.2])
    np.testing.assert_allclose(benjamini_hochberg(p), [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.2])
    rng = np.random.default_rng(1)
    p = rng.random((7, 5)) ** 3
    p[0, 0] = np.nan
    q = benjamini_hochberg(p)
    assert np.isnan(q[0, 0])
    np.testing.assert_allclose(q.ravel()[1:], sps.false_discovery_control(p.ravel()[1:]))


def test_within_class_correlation_tells_an_au_detector_from_an_emotion_detector():
    rng = np.random.default_rng(2)
    n = 400
    labels = rng.integers(0, 3, n)  # 1 = happy
    au12 = ((labels == 1) & (rng.random(n) < 0.6)).astype(float)
    au12[labels == 2] = (rng.random((labels == 2).sum()) < 0.2)  # AU12 also outside happy
    emotion_filter = (labels == 1) + 0.05 * rng.normal(size=n)
    au_filter = au12 + 0.05 * rng.normal(size=n)
    x = np.stack([emotion_filter, au_filter], 1)
    r, _, _ = au_correlation(x, au12[:, None])
    rw, pw, nw = within_class_correlation(x, au12[:, None], labels)
    assert r[0, 0] > 0.4 and r[1, 0] > 0.9
    assert abs(rw[0, 0]) < 0.1 < 0.9 < rw[1, 0]
    assert pw[1, 0] < 1e-10 and nw.tolist() == [n]
    # hand check of the pooled formula on a tiny case
    x = np.array([[1.0], [3.0], [2.0], [6.0], [5.0]])
    y = np.array([[0.0], [1.0], [0.0], [1.0], [1.0]])
    lab = np.array([0, 0, 1, 1, 1])
    xc = np.array([-1, 1, 2 - 13 / 3, 6 - 13 / 3, 5 - 13 / 3])
    yc = np.array([-0.5, 0.5, -2 / 3, 1 / 3, 1 / 3])
    want = (xc * yc).sum() / math.sqrt((xc**2).sum() * (yc**2).sum())
    assert within_class_correlation(x, y, lab)[0][0, 0] == pytest.approx(want)


def test_within_class_equals_the_residuals_of_a_regression_on_the_class_one_hot():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, 200)
    y = (rng.random(200) < 0.3 + 0.1 * labels).astype(float)
    x = rng.normal(size=(200, 2)) + y[:, None] + labels[:, None]
    onehot = np.eye(4)[labels]
    resid = lambda v: v - onehot @ np.linalg.lstsq(onehot, v, rcond=None)[0]  # noqa: E731
    want = [np.corrcoef(resid(x[:, f]), resid(y))[0, 1] for f in range(2)]
    r, p, _ = within_class_correlation(x, y[:, None], labels)
    np.testing.assert_allclose(r[:, 0], want)
    assert (p[:, 0] < 1e-3).all()


def test_unlabelled_images_count_for_plain_figures_but_not_for_those_given_the_emotion():
    x = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]])
    y = np.array([[0.0], [1.0], [0.0], [1.0], [1.0], [0.0]])
    labels = np.array([0, 0, 1, 1, -1, -1])
    assert au_correlation(x, y)[2].tolist() == [6]
    assert within_class_correlation(x, y, labels)[2].tolist() == [4]
    np.testing.assert_allclose(au_given_emotion(y, labels, 2), [[0.5], [0.5]])
    r_e = emotion_correlation(x, labels, 2)
    assert r_e.shape == (1, 2) and r_e[0, 0] == pytest.approx(correlation(x[:4], (labels[:4] == 0) * 1.0)[0])
    within = per_class_correlation(x, y, labels, 2)
    assert within.shape == (1, 1, 2) and np.isnan(within).all()  # 2 images per class: too few


def test_topk_share_base_rate_expected_share_and_cooccurrence():
    present = np.array([[1, 0], [1, 1], [0, np.nan], [0, 1], [1, 1]], dtype=float)
    share, counts, coded = topk_au_share(np.array([[0, 1, 2], [2, 3, -1]]), present)
    np.testing.assert_allclose(share, [[2 / 3, 1 / 2], [0.0, 1.0]])
    np.testing.assert_allclose(counts, [[2, 1], [0, 1]])
    np.testing.assert_array_equal(coded, [[3, 2], [2, 1]])
    np.testing.assert_allclose(base_rates(present), [3 / 5, 3 / 4])
    labels = np.array([0, 0, 1, 1, -1])
    rates = au_given_emotion(present, labels, 2)
    np.testing.assert_allclose(rates, [[1.0, 0.5], [0.0, 1.0]])
    # list 0 = images 0, 1 (class 0) and 2 (class 1): mean of the rows of its classes
    np.testing.assert_allclose(expected_share(np.array([[0, 1, 2]]), labels, rates), [[2 / 3, 2 / 3]])
    cooc = au_cooccurrence(present)
    # P(AU b | AU a) over images with both coded: a present on rows 0, 1, 4 -> b present on 1, 4
    np.testing.assert_allclose(cooc, [[1.0, 2 / 3], [2 / 3, 1.0]])


def test_null_quantile_per_column_ignores_nan():
    v = np.array([[1.0, np.nan], [2.0, np.nan], [3.0, np.nan], [np.inf, np.nan]])
    q = null_quantile(v, 0.5)
    assert q[0] == pytest.approx(2.0) and np.isnan(q[1])


def _face_landmarks(size=64):
    """A plausible frontal 68-point layout on a size x size face."""
    lm = np.zeros((68, 2), np.float32)
    s = size / 64
    lm[0:17] = np.stack([np.linspace(8, 56, 17), 30 + 22 * np.sin(np.linspace(0, np.pi, 17))], 1) * s
    lm[17:22] = np.stack([np.linspace(14, 28, 5), np.full(5, 18)], 1) * s
    lm[22:27] = np.stack([np.linspace(36, 50, 5), np.full(5, 18)], 1) * s
    lm[27:31] = np.stack([np.full(4, 32), np.linspace(24, 36, 4)], 1) * s
    lm[31:36] = np.stack([np.linspace(27, 37, 5), np.full(5, 39)], 1) * s
    lm[36:42] = np.stack([np.linspace(16, 26, 6), np.full(6, 25)], 1) * s
    lm[42:48] = np.stack([np.linspace(38, 48, 6), np.full(6, 25)], 1) * s
    lm[48:60] = np.stack([22 + 10 * np.cos(np.linspace(0, 2 * np.pi, 12)), 47 + 4 * np.sin(np.linspace(0, 2 * np.pi, 12))], 1) * s
    lm[60:68] = np.stack([24 + 8 * np.cos(np.linspace(0, 2 * np.pi, 8)) + 8, 47 + 2 * np.sin(np.linspace(0, 2 * np.pi, 8))], 1) * s
    lm[48:60, 0] += 10 * s
    return lm


def test_spatial_share_counts_box_centres_in_the_au_region():
    lm = _face_landmarks()
    landmarks = np.stack([lm, lm, np.full_like(lm, np.nan)])
    mouth = region_polygons(lm, 12)[0].mean(0)
    brow = region_polygons(lm, 4)[0].mean(0)

    def box(c):  # a 5 x 5 box centred on c
        return [c[0] - 2, c[1] - 2, c[0] + 2, c[1] + 2]

    # filter 0: 2 boxes centred on the mouth, 1 on the brow; filter 1: the unknown-landmark image only
    idx = np.array([[0, 1, 0], [2, 2, -1]])
    boxes = np.array([[box(mouth), box(mouth), box(brow)], [box(mouth)] * 3], dtype=float)
    sp = spatial_share(idx, boxes, landmarks, np.array([12, 4, 99]))
    np.testing.assert_allclose(sp[0, :2], [2 / 3, 1 / 3])
    assert np.isnan(sp[0, 2]) and np.isnan(sp[1]).all()
    assert np.isnan(spatial_share(idx, boxes, None, np.array([12]))).all()


@pytest.mark.parametrize("idx, match", [(np.zeros(3, int), r"\(F, K\)"), (np.array([[0, 9]]), "out of range"),
                                        (np.zeros((1, 2)), "integer")])
def test_bad_lists_name_the_argument(idx, match):
    with pytest.raises(ValueError, match=match):
        topk_au_share(idx, np.zeros((3, 1)))
