"""Confound report: partial correlation, within-class correlation, weak flags."""

import numpy as np
import pytest

from fercore.analysis.confound import confound_report, correlate, partial_correlation


def test_partial_correlation_matches_hand_computed_value():
    # Two classes of three images. Class means: x 2 and 5, y 1/3 and 2/3.
    x = np.array([[1.0], [2.0], [3.0], [4.0], [5.0], [6.0]])
    y = np.array([0.0, 0.0, 1.0, 0.0, 1.0, 1.0])
    labels = np.array([0, 0, 0, 1, 1, 1])
    # residuals: x (-1, 0, 1, -1, 0, 1); y (-1/3, -1/3, 2/3, -2/3, 1/3, 1/3)
    # sum xy = 1/3 + 0 + 2/3 + 2/3 + 0 + 1/3 = 2; sum xx = 4; sum yy = 4 * 1/9 + 2 * 4/9 = 12/9
    expected = 2.0 / np.sqrt(4.0 * 12.0 / 9.0)
    r, p = partial_correlation(x, y, labels)
    assert r[0] == pytest.approx(expected)
    # df = 6 - 2 - 1 = 3
    from scipy import stats

    t = expected * np.sqrt(3 / (1 - expected**2))
    assert p[0] == pytest.approx(2 * stats.t.sf(t, 3))


def test_partial_correlation_equals_pooled_within_class_and_residualisation():
    rng = np.random.default_rng(0)
    n = 300
    labels = rng.integers(0, 4, n)
    y = (rng.random(n) < 0.2 + 0.15 * labels).astype(float)
    x = rng.normal(size=(n, 3)) + labels[:, None] * 2.0 + y[:, None] * np.array([0.0, 0.5, 1.0])
    r, _ = partial_correlation(x, y, labels)
    onehot = np.eye(4)[labels]
    beta_x = np.linalg.lstsq(onehot, x, rcond=None)[0]
    beta_y = np.linalg.lstsq(onehot, y, rcond=None)[0]
    rx, ry = x - onehot @ beta_x, y - onehot @ beta_y
    for f in range(3):
        assert r[f] == pytest.approx(np.corrcoef(rx[:, f], ry)[0, 1])


def test_correlate_is_pearson_and_nan_when_constant():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 2))
    y = rng.normal(size=50)
    assert correlate(x, y)[0] == pytest.approx(np.corrcoef(x[:, 0], y)[0, 1])
    assert np.isnan(correlate(x, np.ones(50))).all()


def test_emotion_driven_filter_has_high_au_correlation_but_no_partial():
    rng = np.random.default_rng(2)
    n = 600
    labels = rng.integers(0, 3, n)
    # AU present in 90% of class 2 images, 5% of others: strongly tied to the label.
    au = (rng.random(n) < np.where(labels == 2, 0.9, 0.05)).astype(float)
    emotion_filter = (labels == 2) * 3.0 + rng.normal(scale=0.5, size=n)
    au_filter = au * 3.0 + rng.normal(scale=0.5, size=n)
    rep = confound_report(np.stack([emotion_filter, au_filter], 1), au[:, None], labels, au_ids=[12], class_names=("a", "b", "happy"))
    assert rep.r_au[0, 0] > 0.6  # looks like an AU12 detector ...
    assert rep.r_emotion[0, 2] > rep.r_au[0, 0]  # ... but follows the label more closely
    assert abs(rep.r_partial[0, 0]) < 0.15  # and nothing is left once the emotion is held constant
    assert rep.r_partial[1, 0] > 0.8
    assert rep.best_emotion()[0] == 2
    # within-class correlations exist in every class (the AU varies in each)
    assert np.isfinite(rep.r_within[1, 0]).all()
    assert not rep.weak_partial[0]
    row = rep.filter_rows(0)[0]
    assert row["au"] == 12 and row["best_emotion"] == "happy"


def test_au_determined_by_emotion_leaves_nothing_within_class_and_is_weak():
    labels = np.repeat([0, 1, 2], 30)
    au = (labels == 1).astype(float)
    x = np.random.default_rng(3).normal(size=(90, 4))
    rep = confound_report(x, au[:, None], labels)
    assert np.isnan(rep.r_partial).all()
    assert np.isnan(rep.r_within).all()
    assert rep.n_partial[0] == 0 and rep.weak_partial[0]


def test_unknown_aus_and_unlabelled_images_are_left_out_and_counted():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 40)
    labels[:5] = -1
    au = (rng.random(40) < 0.5).astype(float)
    au[5:10] = np.nan
    rep = confound_report(rng.normal(size=(40, 2)), au[:, None], labels)
    assert rep.n_au[0] == 30
    assert rep.n_emotion.sum() == 35
    assert rep.n_within[0].sum() == 30


def test_weak_flag_on_few_minority_images():
    labels = np.zeros(100, dtype=int)
    au = np.zeros(100)
    au[:3] = 1
    rep = confound_report(np.random.default_rng(5).normal(size=(100, 1)), au[:, None], labels)
    assert rep.minority_partial[0] == 3 and rep.weak_partial[0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"activations": np.zeros(5)}, "activations"),
        ({"au_present": np.zeros((4, 1))}, "au_present"),
        ({"labels": np.zeros(4, dtype=int)}, "labels"),
        ({"labels": np.zeros(5)}, "integer"),
        ({"au_ids": [1, 2]}, "au_ids"),
    ],
)
def test_bad_input_names_the_argument(kwargs, match):
    args = {"activations": np.zeros((5, 2)), "au_present": np.zeros((5, 1)), "labels": np.zeros(5, dtype=int)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        confound_report(**args)
