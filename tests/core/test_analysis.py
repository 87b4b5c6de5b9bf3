import math

import numpy as np
import pytest
from scipy import stats as sps

from fercore.analysis.estimators import (
    au_cooccurrence,
    au_filter_stats,
    base_rates,
    bh_adjust,
    kl_divergence,
    point_biserial,
    spatial_share,
    topk_au_share,
    within_class_corr,
)
from fercore.data.facs import region_polygons


def test_kl_matches_hand_computation():
    counts = np.array([[2.0, 0.0, 2.0], [1.0, 1.0, 2.0], [0.0, 0.0, 0.0]])
    base = np.array([0.5, 0.25, 0.25])
    kl = kl_divergence(counts, base)
    assert kl[0] == pytest.approx(0.5 * math.log(0.5 / 0.5) + 0.5 * math.log(0.5 / 0.25))
    assert kl[1] == pytest.approx(0.25 * math.log(0.25 / 0.5) + 0.25 * math.log(1.0) + 0.5 * math.log(2.0))
    assert np.isnan(kl[2])
    # base rates need not sum to 1: they are renormalised to a distribution
    np.testing.assert_allclose(kl_divergence(counts[:2], base * 3), kl[:2])


def test_point_biserial_matches_hand_and_scipy_and_skips_missing_codes():
    x = np.array([[1.0], [2.0], [3.0], [4.0], [100.0]])
    present = np.array([[0.0], [0.0], [1.0], [1.0], [np.nan]])  # the last image is not coded
    r, p, n = point_biserial(x, present)
    assert r[0, 0] == pytest.approx(2 / math.sqrt(5))
    t = r[0, 0] * math.sqrt(2 / (1 - r[0, 0] ** 2))
    assert p[0, 0] == pytest.approx(2 * sps.t.sf(t, 2))
    assert n.tolist() == [4]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3))
    y = (rng.random((80, 2)) < 0.4).astype(float)
    x[:, 0] += 1.5 * y[:, 1]
    r, p, _ = point_biserial(x, y)
    for f in range(3):
        for a in range(2):
            ref = sps.pointbiserialr(y[:, a], x[:, f])
            assert r[f, a] == pytest.approx(ref.statistic)
            assert p[f, a] == pytest.approx(ref.pvalue)


def test_constant_variables_give_nan_not_errors():
    r, p, _ = point_biserial(np.ones((6, 1)), np.array([[0.0], [1.0]] * 3))
    assert np.isnan(r).all() and np.isnan(p).all()
    r, p, _ = point_biserial(np.arange(6.0)[:, None], np.zeros((6, 1)))
    assert np.isnan(r).all()


def test_bh_matches_hand_and_scipy():
    p = np.array([0.01, 0.04, 0.03, 0.2])
    np.testing.assert_allclose(bh_adjust(p), [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.2])
    rng = np.random.default_rng(1)
    p = rng.random((7, 5)) ** 3
    np.testing.assert_allclose(bh_adjust(p), sps.false_discovery_control(p.ravel()).reshape(7, 5))
    p[0, 0] = np.nan
    q = bh_adjust(p)
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
    r, _, _ = point_biserial(x, au12[:, None])
    rw, pw = within_class_corr(x, au12[:, None], labels)
    assert r[0, 0] > 0.4 and r[1, 0] > 0.9
    assert abs(rw[0, 0]) < 0.1 < 0.9 < rw[1, 0]
    assert pw[1, 0] < 1e-10
    # hand check of the pooled formula on a tiny case
    x = np.array([[1.0], [3.0], [2.0], [6.0], [5.0]])
    y = np.array([[0.0], [1.0], [0.0], [1.0], [1.0]])
    lab = np.array([0, 0, 1, 1, 1])
    xc = np.array([-1, 1, 2 - 13 / 3, 6 - 13 / 3, 5 - 13 / 3])
    yc = np.array([-0.5, 0.5, -2 / 3, 1 / 3, 1 / 3])
    want = (xc * yc).sum() / math.sqrt((xc**2).sum() * (yc**2).sum())
    assert within_class_corr(x, y, lab)[0][0, 0] == pytest.approx(want)


def test_topk_share_base_rate_and_cooccurrence():
    present = np.array([[1, 0], [1, 1], [0, np.nan], [0, 1], [1, 1]], dtype=float)
    share, counts = topk_au_share(np.array([[0, 1, 2], [2, 3, -1]]), present)
    np.testing.assert_allclose(share, [[2 / 3, 1 / 2], [0.0, 1.0]])
    np.testing.assert_allclose(counts, [[2, 1], [0, 1]])
    np.testing.assert_allclose(base_rates(present), [3 / 5, 3 / 4])
    cooc = au_cooccurrence(present)
    # P(AU b | AU a) over images with both coded: a present on rows 0, 1, 4 -> b present on 1, 4
    np.testing.assert_allclose(cooc, [[1.0, 2 / 3], [2 / 3, 1.0]])


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
    # filter 0: 2 boxes centred on the mouth, 1 on the brow; filter 1: the unknown-landmark image only
    def box(c):
        return [c[0] - 2, c[1] - 2, c[0] + 2, c[1] + 2]
    idx = np.array([[0, 1, 0], [2, 2, -1]])
    boxes = np.array([[box(mouth), box(mouth), box(brow)], [box(mouth)] * 3], dtype=float)
    centres = np.stack([(boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2], -1)
    sp = spatial_share(idx, centres, landmarks, np.array([12, 4, 99]))
    np.testing.assert_allclose(sp[0, :2], [2 / 3, 1 / 3])
    assert np.isnan(sp[0, 2]) and np.isnan(sp[1]).all()
    assert np.isnan(spatial_share(idx, centres, None, np.array([12]))).all()


def test_au_filter_stats_shapes_and_dtypes():
    rng = np.random.default_rng(3)
    n, nf = 30, 4
    aus = (rng.random((n, 3)) < 0.5) * 3.0
    aus[0, 1] = np.nan
    st = au_filter_stats(rng.normal(size=(n, nf)).astype(np.float16), aus, rng.integers(0, 2, n),
                         np.tile(np.arange(5), (nf, 1)), np.zeros((nf, 5, 4)), None, np.array([1, 12, 25]))
    for key in ("topk_share", "corr", "corr_within", "pval", "qval", "spatial"):
        assert st[key].shape == (nf, 3) and st[key].dtype == np.float32
    assert st["kl"].shape == (nf,) and st["n_coded"].tolist() == [30, 29, 30]
    assert (st["qval"] >= st["pval"] - 1e-6).all()
