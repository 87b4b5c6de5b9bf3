"""The within-emotion test: its AUC and variance are the permutation's, it is calibrated where its
null holds (also when frames repeat), an emotion detector never passes and an AU detector does.

The fixtures are built here: units (sequences) with AU codes whose rates depend on the emotion,
each unit shown by one or three images (near-copies of one coded observation, as CK+'s apex
frames), and filters whose activation is known to depend on the emotion only, on the AU, or on
nothing.
"""

import numpy as np
import pytest
from scipy import stats as sps

from fercore.analysis.criteria import Criteria, funnel, judged_au, stage_reached, verdict
from fercore.analysis.estimators import (
    benjamini_hochberg,
    expected_topk,
    unit_activations,
    unit_table,
    within_emotion_auc,
)

#: P(AU | emotion) for 4 classes x 5 AUs, as on expression data: AU0 almost fixed by emotion 1,
#: AU2 varying within every class, AU3 barely varying, AU4 varying within class 3 only.
RATES = np.array([
    [0.0, 0.1, 0.3, 0.0, 0.0],
    [0.9, 0.1, 0.3, 0.0, 0.0],
    [0.1, 0.8, 0.3, 0.05, 0.0],
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


def _activations(labels, rng, copies, n_filters, kind):
    n = len(labels)
    unit_noise = np.repeat(rng.normal(size=(n // copies, n_filters)), copies, axis=0)
    frame_noise = 0.01 * rng.normal(size=(n, n_filters))  # copies are near-identical
    if kind == "noise":
        return unit_noise + frame_noise
    # each filter detects one emotion
    return 3.0 * (labels[:, None] == (np.arange(n_filters) % len(RATES))[None, :]) + unit_noise + frame_noise


@pytest.mark.parametrize("copies", [1, 3])
@pytest.mark.parametrize("kind", ["noise", "emotion"])
def test_p_values_are_calibrated_where_the_null_holds(copies, kind):
    """Filters that follow nothing, or only the emotion: P(p < 0.05) is at most 0.05 within
    sampling noise for the plain permutation null (margin 0.5), also when every unit is shown three
    times (frames of one sequence); the default margin (0.6) is more conservative still."""
    labels, present, groups, rng = _data(copies=copies, seed=1 + copies)
    acts = _activations(labels, rng, copies, 400, kind)
    units = unit_table(groups, labels, present, len(RATES))
    assert units.n_units == 240  # copies of a unit count once
    x = unit_activations(acts, units)
    for margin, bound in ((0.5, 0.05), (0.6, 0.01)):
        res = within_emotion_auc(x, units, margin=margin)
        p = res["p"][:, res["testable"]]
        assert np.isfinite(p).all()
        frac = float((p < 0.05).mean())
        assert frac <= bound + 3 * np.sqrt(bound * (1 - bound) / p.size), (margin, frac)
        assert int((benjamini_hochberg(p) < 0.05).sum()) <= 1


def test_auc_and_variance_are_those_of_the_permutation():
    labels, present, groups, rng = _data(n_units=160, seed=5)
    units = unit_table(groups, labels, present, len(RATES))
    x = unit_activations(rng.normal(size=(len(labels), 3)) + 0.8 * present[:, [2]], units)
    res = within_emotion_auc(x, units, margin=0.5)
    a = 2  # varies within every class
    u_sum, pairs = 0.0, 0.0
    for c in range(len(RATES)):
        sel = units.label == c
        y = units.present[sel, a]
        u = sps.mannwhitneyu(x[sel][y == 1, 0], x[sel][y == 0, 0]).statistic
        u_sum, pairs = u_sum + u, pairs + y.sum() * (len(y) - y.sum())
    assert res["auc"][0, a] == pytest.approx(u_sum / pairs)
    # the variance of the pooled U under within-class permutations of the codes, by simulation
    sims = []
    for _ in range(1500):
        perm = units.present[:, a].copy()
        for c in range(len(RATES)):
            sel = np.flatnonzero(units.label == c)
            perm[sel] = rng.permutation(perm[sel])
        total = 0.0
        for c in range(len(RATES)):
            sel = units.label == c
            r = sps.rankdata(x[sel, 0])
            m = perm[sel].sum()
            total += r[perm[sel] == 1].sum() - m * (m + 1) / 2
        sims.append(total / pairs)
    se = (res["auc"][0, a] - 0.5) / res["z"][0, a]
    assert np.std(sims) == pytest.approx(se, rel=0.06)
    assert np.mean(sims) == pytest.approx(0.5, abs=0.01)
    p_perm = (1 + np.sum(np.asarray(sims) >= res["auc"][1, a])) / (1 + len(sims))
    assert res["p"][1, a] == pytest.approx(p_perm, abs=0.03)


def test_an_emotion_detector_is_never_beyond_emotion_and_an_au_detector_within_one_class_is():
    labels, present, groups, rng = _data(n_units=400, copies=3, seed=7)
    n = len(labels)
    unit_noise = np.repeat(rng.normal(size=(n // 3, 1)), 3, axis=0)
    happy = 3.0 * (labels == 1)[:, None] + unit_noise  # class 1 carries AU0 at 0.9
    # AU4 varies inside class 3 only (rate 0.5): a detector of AU4 there
    au_in_class = 3.0 * ((labels == 3) & (present[:, 4] == 1))[:, None] + unit_noise
    acts = np.concatenate([happy, au_in_class], axis=1)
    units = unit_table(groups, labels, present, len(RATES))
    res = within_emotion_auc(unit_activations(acts, units), units, margin=0.6)
    q = benjamini_hochberg(res["p"])
    assert not (q[0] < 0.05).any() and abs(res["auc"][0, 0] - 0.5) < 0.1
    assert q[1, 4] < 1e-6 and res["auc"][1, 4] > 0.95
    # through the funnel: the display-list shares pass raw and distinct for both, only one goes on
    ev = {"share_raw": np.full(q.shape, 0.9), "share_distinct": np.full(q.shape, 0.9), "q_emotion": q,
          "auc_emotion": res["auc"], "spatial": np.full(q.shape, np.nan), "base_rate": np.full(5, 0.2),
          "testable": res["testable"]}
    masks = funnel(ev, Criteria())
    assert not masks["beyond_emotion"][0].any() and masks["beyond_emotion"][1, 4]
    assert judged_au(masks, ev)[1] == 4


def test_untestable_aus_get_no_p_value():
    labels, present, groups, rng = _data(seed=3)
    units = unit_table(groups, labels, present, len(RATES))
    res = within_emotion_auc(unit_activations(rng.normal(size=(len(labels), 5)), units), units, min_minority=8)
    # AU3 (rate 0.05 in one class only) varies in too few units
    assert not res["testable"][3] and np.isnan(res["p"][:, 3]).all() and np.isfinite(res["auc"][:, 3]).all()
    assert res["testable"][2] and np.isfinite(res["p"][:, 2]).all()
    assert res["n_units"][2] == 240 and res["n_units"][4] == 60  # AU4 varies in class 3 only
    with pytest.raises(ValueError, match="margin"):
        within_emotion_auc(unit_activations(rng.normal(size=(len(labels), 5)), units), units, margin=0.4)


def test_units_merge_images_of_one_group_label_and_code_only():
    groups = np.array(["a", "a", "a", "a", "b", "b"])
    labels = np.array([1, 1, 1, 0, 1, -1])
    present = np.array([[1.0], [1.0], [0.0], [0.0], [1.0], [1.0]])
    u = unit_table(groups, labels, present, 2)
    assert u.unit[0] == u.unit[1] != u.unit[2]  # same frame code -> one unit; another code -> another
    assert u.unit[3] != u.unit[0] and u.unit[5] == -1  # another emotion -> another unit; unlabelled: none
    assert u.n_units == 4 and u.n.tolist() == [[1], [3]] and u.m.tolist() == [[0], [2]]
    assert u.minority.tolist() == [1]
    x = unit_activations(np.array([[1.0], [3.0], [5.0], [7.0], [9.0], [11.0]]), u)
    assert x[u.unit[0], 0] == 2.0  # the unit of images 0 and 1: their mean


def test_expected_share_of_a_list_is_the_mean_of_its_emotions_rates():
    labels = np.array([0] * 10 + [1] * 10)
    present = np.zeros((20, 1))
    present[[0, 1, 2, 10, 11, 12, 13, 14], 0] = 1  # class 0: 3 of 10; class 1: 5 of 10
    units = unit_table(np.array([f"g{i}" for i in range(20)]), labels, present, 2)
    top = expected_topk(np.array([[0, 1, 5, 10, 11, 12, 15, -1]]), labels, present, units)
    assert top["n_listed"][0, 0] == 7
    assert top["share"][0, 0] == pytest.approx(5 / 7)
    assert top["expected_share"][0, 0] == pytest.approx((3 * 0.3 + 4 * 0.5) / 7)


def test_the_funnel_is_nested_and_the_verdict_names_the_first_failure_and_by_how_much():
    rng = np.random.default_rng(11)
    f, a = 30, 4
    ev = {"share_raw": rng.random((f, a)), "share_distinct": rng.random((f, a)), "auc_emotion": 0.5 + rng.random((f, a)) / 2,
          "q_emotion": rng.random((f, a)) ** 4, "spatial": rng.random((f, a)), "base_rate": np.array([0.1, 0.3, 0.5, 0.2]),
          "testable": np.array([True, True, True, False]), "expected": rng.random((f, a)), "minority": np.array([9, 9, 9, 2]),
          "n_units": np.array([100, 100, 100, 3])}
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
    rows = verdict(ev, Criteria(), 0, 0)
    assert "within-emotion AUC" in rows[2]["detail"] and rows[2]["in_funnel"] == bool(masks["beyond_emotion"][0, 0])
    ev["spatial"][:] = np.nan
    assert verdict(ev, Criteria(), 0, 0)[3]["passed"] is None


def _phantom_p(reader, *, permute: bool, margin: float, seed: int = 0):
    """p-values of every layer of a recorded phantom run; with ``permute`` the AU codes of the
    units are exchanged within each emotion class first (the test's null, made true)."""
    from fercore.analysis.estimators import unit_activations, unit_table, within_emotion_auc
    from fercore.data.facs import presence

    fs = reader.faceset()
    present = presence(fs.aus).astype(float)
    units = unit_table(fs.groups, fs.labels, present, len(fs.class_names))
    if permute:
        rng = np.random.default_rng(seed)
        for c in range(len(fs.class_names)):
            sel = np.flatnonzero(units.label == c)
            units.present[sel] = units.present[rng.permutation(sel)]
    out = {}
    for layer in reader.layers:
        res = within_emotion_auc(unit_activations(reader.max_activations(layer), units), units, margin=margin)
        out[layer] = res["p"][:, res["testable"]]
    return out


@pytest.mark.parametrize("permute, margin", [(True, 0.5), (True, 0.6), (False, 0.6)])
def test_calibrated_on_phantom_runs(tiny_run, tiny_null, permute, margin):
    """On the tiny phantom run with its AU codes permuted within emotion (the null made true), and
    on its untrained null network with the codes as drawn: at most 5 % of the filter x AU pairs
    have p < 0.05 (within sampling noise), and at most one discovery at q < 0.05 per layer."""
    from fercore.store.reader import open_run

    reader = open_run(tiny_run if permute else tiny_null)
    for layer, p in _phantom_p(reader, permute=permute, margin=margin).items():
        assert np.isfinite(p).all()
        frac = float((p < 0.05).mean())
        assert frac <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / p.size), (layer, frac)
        assert int((benjamini_hochberg(p) < 0.05).sum()) <= 1, layer
    if not permute:  # the stored funnel of the untrained network: 0 or 1 beyond emotion per layer
        for row in reader.summary()["layers"]:
            assert row["stages"]["beyond_emotion"]["filters"] <= 1
