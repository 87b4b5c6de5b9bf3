"""The within-emotion test: exact, calibrated where its null holds, and able to find an AU detector.

The fixtures are built here: units (sequences) with AU codes whose rates depend on the emotion,
each unit shown by one or three images (near-copies of one coded observation, as CK+'s apex
frames), and filters whose activation is known to depend on the emotion only, on the AU, or on
nothing.
"""

import itertools

import numpy as np
import pytest
from scipy.stats import hypergeom

from fercore.analysis.criteria import Criteria, funnel, judged_au, stage_reached, verdict
from fercore.analysis.estimators import benjamini_hochberg, unit_table, within_emotion_test
from fercore.recording.streaming import RunningDistinctTopK

#: P(AU | emotion) for 4 classes x 5 AUs, as on expression data: some AUs almost fixed by an
#: emotion, some varying within every class.
RATES = np.array([
    [0.0, 0.1, 0.3, 0.0, 0.2],
    [0.9, 0.1, 0.3, 0.0, 0.5],
    [0.1, 0.8, 0.3, 0.05, 0.2],
    [0.0, 0.1, 0.6, 0.0, 0.5],
])


def _data(n_units=240, copies=1, seed=0):
    """Units with class labels and AU codes; every unit shown by ``copies`` images of one group."""
    rng = np.random.default_rng(seed)
    label_u = np.arange(n_units) % len(RATES)
    pres_u = (rng.random((n_units, RATES.shape[1])) < RATES[label_u]).astype(float)
    labels = np.repeat(label_u, copies)
    present = np.repeat(pres_u, copies, axis=0)
    groups = np.repeat([f"S{u:03d}/1" for u in range(n_units)], copies)
    return labels, present, groups, rng


def _distinct_lists(acts, groups, k=16):
    _, codes = np.unique(groups, return_inverse=True)
    t = RunningDistinctTopK(k)
    for s in range(0, len(acts), 64):
        t.add(acts[s:s + 64], codes[s:s + 64])
    return t.result()[1]


def _activations(labels, present, rng, copies, n_filters, kind):
    n = len(labels)
    unit_noise = np.repeat(rng.normal(size=(n // copies, n_filters)), copies, axis=0)
    frame_noise = 0.01 * rng.normal(size=(n, n_filters))  # copies are near-identical
    if kind == "noise":
        return unit_noise + frame_noise
    if kind == "emotion":  # each filter detects one emotion
        return 3.0 * (labels[:, None] == (np.arange(n_filters) % len(RATES))[None, :]) + unit_noise + frame_noise
    raise ValueError(kind)


@pytest.mark.parametrize("copies", [1, 3])
@pytest.mark.parametrize("kind", ["noise", "emotion"])
def test_p_values_are_calibrated_where_the_null_holds(copies, kind):
    """Filters that follow nothing, or only the emotion: P(p < 0.05) is at most 0.05 within
    sampling noise, also when every unit is shown three times (frames of one sequence)."""
    labels, present, groups, rng = _data(copies=copies, seed=1 + copies)
    acts = _activations(labels, present, rng, copies, 400, kind)
    idx = _distinct_lists(acts, groups)
    units = unit_table(groups, labels, present, len(RATES))
    assert units.n_units == 240  # copies of a unit count once
    res = within_emotion_test(idx, labels, present, units)
    p = res["p"][:, res["testable"]]
    assert np.isfinite(p).all()
    frac = float((p < 0.05).mean())
    se = np.sqrt(0.05 * 0.95 / p.size)
    assert frac <= 0.05 + 3 * se, frac
    assert int((benjamini_hochberg(p) < 0.05).sum()) <= 1


def test_p_value_is_the_exact_tail_of_the_convolved_hypergeometrics():
    labels = np.array([0] * 10 + [1] * 10)
    present = np.zeros((20, 1))
    present[[0, 1, 2, 10, 11, 12, 13, 14], 0] = 1  # class 0: 3 of 10; class 1: 5 of 10
    units = unit_table(np.array([f"g{i}" for i in range(20)]), labels, present, 2)
    idx = np.array([[0, 1, 5, 10, 11, 12, 15, -1]])  # 3 of class 0 (2 with the AU), 4 of class 1 (3 with)
    res = within_emotion_test(idx, labels, present, units, min_minority=1)
    want = sum(hypergeom.pmf(a, 10, 3, 3) * hypergeom.pmf(b, 10, 5, 4)
               for a, b in itertools.product(range(4), range(5)) if a + b >= 5)
    assert res["p"][0, 0] == pytest.approx(want)
    assert res["observed"][0, 0] == 5 and res["n_listed"][0, 0] == 7
    assert res["expected"][0, 0] == pytest.approx(3 * 0.3 + 4 * 0.5)


def test_an_emotion_detector_is_never_beyond_emotion_and_an_au_detector_within_one_class_is():
    labels, present, groups, rng = _data(n_units=400, copies=3, seed=7)
    n = len(labels)
    unit_noise = np.repeat(rng.normal(size=(n // 3, 1)), 3, axis=0)
    happy = 3.0 * (labels == 1)[:, None] + unit_noise  # class 1 carries AU0 at 0.9
    # AU2 varies inside class 3 (rate 0.6): a detector of AU2 within that class only
    au_in_class = 3.0 * ((labels == 3) & (present[:, 2] == 1))[:, None] + unit_noise
    acts = np.concatenate([happy, au_in_class], axis=1)
    idx = _distinct_lists(acts, groups)
    units = unit_table(groups, labels, present, len(RATES))
    res = within_emotion_test(idx, labels, present, units)
    q = benjamini_hochberg(res["p"])
    ev = {"share_raw": res["share"], "share_distinct": res["share"], "excess": res["share"] - res["expected_share"],
          "q_emotion": q, "spatial": np.full(q.shape, np.nan), "base_rate": np.nanmean(present, 0),
          "testable": res["testable"]}
    masks = funnel(ev, Criteria(max_base_rate=0.5))
    # the happy filter's list is all class 1, where AU0 is expected at 0.9: no excess
    assert res["share"][0, 0] >= 0.8 and not masks["beyond_emotion"][0].any()
    assert masks["beyond_emotion"][1, 2] and masks["beyond_emotion"].sum() == 1
    assert judged_au(masks, ev)[1] == 2


def test_untestable_aus_get_no_p_value():
    labels, present, groups, rng = _data(seed=3)
    units = unit_table(groups, labels, present, len(RATES))
    acts = rng.normal(size=(len(labels), 5))
    res = within_emotion_test(_distinct_lists(acts, groups), labels, present, units, min_minority=8)
    # AU3 (rate 0.05 in one class only) varies in too few units
    assert not res["testable"][3] and np.isnan(res["p"][:, 3]).all()
    assert res["testable"][2] and np.isfinite(res["p"][:, 2]).all()


def test_units_merge_images_of_one_group_label_and_code_only():
    groups = np.array(["a", "a", "a", "a", "b", "b"])
    labels = np.array([1, 1, 1, 0, 1, -1])
    present = np.array([[1.0], [1.0], [0.0], [0.0], [1.0], [1.0]])
    u = unit_table(groups, labels, present, 2)
    assert u.unit[0] == u.unit[1] != u.unit[2]  # same frame code -> one unit; another code -> another
    assert u.unit[3] != u.unit[0] and u.unit[5] == -1  # another emotion -> another unit; unlabelled: none
    assert u.n_units == 4 and u.n.tolist() == [[1], [3]] and u.m.tolist() == [[0], [2]]
    assert u.minority.tolist() == [1]


def test_the_funnel_is_nested_and_the_verdict_names_the_first_failure_and_by_how_much():
    rng = np.random.default_rng(11)
    f, a = 30, 4
    ev = {"share_raw": rng.random((f, a)), "share_distinct": rng.random((f, a)), "excess": rng.random((f, a)) - 0.3,
          "q_emotion": rng.random((f, a)) ** 4, "spatial": rng.random((f, a)), "base_rate": np.array([0.1, 0.3, 0.5, 0.2]),
          "testable": np.array([True, True, True, False]), "expected": rng.random((f, a)), "minority": np.array([9, 9, 9, 2])}
    ev["share_raw"][:10] = 0.95
    ev["share_distinct"][:6] = 0.9
    masks = funnel(ev, Criteria())
    for outer, inner in zip(("raw", "distinct", "beyond_emotion"), ("distinct", "beyond_emotion", "spatial"), strict=True):
        assert not (masks[inner] & ~masks[outer]).any()
        assert masks[inner].any(axis=1).sum() <= masks[outer].any(axis=1).sum()
    assert not masks["raw"][:, 2].any() and not masks["beyond_emotion"][:, 3].any()
    depth = stage_reached(masks)
    rows = verdict(ev, Criteria(), 20, 0)
    if depth[20, 0] == 0:
        assert rows[0]["passed"] is False and "short of 0.80" in rows[0]["detail"]
    rows = verdict(ev, Criteria(), 0, 2)
    assert rows[0]["passed"] is False and "base rate 0.50 is not below 0.40" in rows[0]["detail"]
    rows = verdict(ev, Criteria(), 0, 3)
    assert rows[2]["passed"] is False and "untestable" in rows[2]["detail"]
    ev["spatial"][:] = np.nan
    assert verdict(ev, Criteria(), 0, 0)[3]["passed"] is None
