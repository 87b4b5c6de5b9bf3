"""The power of the beyond-emotion test: the detectable effect it reports is what planted filters,
run through the real test and Benjamini-Hochberg over a whole layer, show; an AU without
within-emotion variation is untestable, not "power 0"; the interval of the within-emotion AUC
covers the true AUC; the figures are stored by ``analyze`` and follow the criteria.

Fixtures are built here: units with emotion classes and AU codes (some AUs varying within the
classes, one fixed by the emotion), and layers of noise filters beside one planted filter whose
true within-emotion AUC is known.
"""

import shutil

import numpy as np
import pytest

from fercore.analysis.criteria import Criteria, verdict
from fercore.analysis.estimators import (
    benjamini_hochberg,
    unit_activations,
    unit_table,
    within_emotion_auc,
)
from fercore.analysis.power import (
    DETECTABLE,
    OUT_OF_REACH,
    UNTESTABLE,
    au_power,
    bh_threshold,
    planted_rate,
    planted_units,
)

#: P(AU | emotion), 4 classes x 3 AUs: AU0 and AU1 vary within the classes, AU2 is the emotion's.
RATES = np.array([[0.3, 0.1, 0.0], [0.2, 0.5, 1.0], [0.4, 0.2, 0.0], [0.25, 0.3, 0.0]])


def _units(n_units=200, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n_units) % len(RATES)
    present = (rng.random((n_units, RATES.shape[1])) < RATES[labels]).astype(float)
    groups = np.array([f"S{u:03d}/1" for u in range(n_units)])
    return unit_table(groups, labels, present, len(RATES))


def test_a_further_p_value_is_rejected_by_bh_exactly_below_the_threshold():
    rng = np.random.default_rng(1)
    for n_sig in (0, 3, 40):
        p = np.concatenate([rng.random(300), rng.random(n_sig) * 1e-4])
        t = bh_threshold(p, 0.05)
        below = benjamini_hochberg(np.append(p, t * 0.999))[-1]
        above = benjamini_hochberg(np.append(p, t * 1.001))[-1]
        assert below < 0.05 <= above, (n_sig, t)
    assert bh_threshold(np.full((4, 2), np.nan), 0.05) == pytest.approx(0.05)  # nothing else tested


def test_planted_filters_are_found_above_the_detectable_effect_and_not_well_below_it():
    """A layer of 40 noise filters and one planted filter, the whole layer tested and corrected as
    analyze does: well above the detectable effect the planted pair is found in >= 75 % of draws,
    well below it in <= 10 %."""
    units = _units()
    rng = np.random.default_rng(2)
    a, margin = 0, 0.6
    noise = rng.normal(size=(units.n_units, 40))
    p_layer = within_emotion_auc(noise, units, margin=margin)["p"]
    pw = au_power(units, p_layer, alpha=0.05, margin=margin, min_minority=5)
    det = float(pw["detectable_auc"][a])
    assert pw["power_status"][a] == DETECTABLE and margin < det < 0.95

    def found_share(theta, draws=120):
        hits = 0
        for d in range(draws):
            x = np.column_stack([noise, planted_units(units, a, theta, 1, np.random.default_rng(100 + d))])
            q = benjamini_hochberg(within_emotion_auc(x, units, margin=margin)["p"])
            hits += q[-1, a] < 0.05
        return hits / draws

    assert found_share(min(det + 0.1, 0.99)) >= 0.75
    assert found_share(det - 0.1) <= 0.10


def test_closed_form_power_agrees_with_planted_units_on_small_data():
    """On data of CK+'s size for one AU (a few dozen units carrying it), the closed form's
    detectable effect is found 80 % of the time by the real test, its critical AUC half of it."""
    units = _units(n_units=120, seed=3)
    pw = au_power(units, np.full((30, 3), 0.5), alpha=0.05, margin=0.6, min_minority=5)
    for a in (0, 1):
        t = float(pw["bh_threshold"])
        det, crit = float(pw["detectable_auc"][a]), float(pw["critical_auc"][a])
        assert planted_rate(units, a, det, t, margin=0.6, draws=600, seed=a) == pytest.approx(0.8, abs=0.07)
        assert planted_rate(units, a, crit, t, margin=0.6, draws=600, seed=a) == pytest.approx(0.5, abs=0.08)


def test_an_au_fixed_by_the_emotion_is_untestable_not_power_zero():
    units = _units()
    pw = au_power(units, np.full((10, 3), 0.5), alpha=0.05, margin=0.6, min_minority=5)
    assert pw["power_status"][2] == UNTESTABLE
    assert np.isnan(pw["detectable_auc"][2]) and np.isnan(pw["critical_auc"][2])
    # too few units for any filter to pass at a heavy burden: out of reach, not a number
    tiny = _units(n_units=24, seed=4)
    pw = au_power(tiny, np.full((500, 3), 0.5), alpha=0.05, margin=0.9, min_minority=1)
    assert OUT_OF_REACH in pw["power_status"][:2]
    assert np.isnan(pw["detectable_auc"][pw["power_status"] == OUT_OF_REACH]).all()


def test_more_units_or_a_lighter_burden_detect_smaller_effects():
    small, large = _units(100, seed=5), _units(800, seed=5)
    p = np.full((20, 3), 0.5)
    kw = dict(alpha=0.05, margin=0.6, min_minority=5)
    assert au_power(large, p, **kw)["detectable_auc"][0] < au_power(small, p, **kw)["detectable_auc"][0]
    heavy = np.full((2000, 3), 0.5)
    assert au_power(small, heavy, **kw)["detectable_auc"][0] > au_power(small, p, **kw)["detectable_auc"][0]
    assert 0 < au_power(small, p, **kw)["detectable_r"][0] < 1


def test_the_interval_of_the_within_emotion_auc_covers_the_true_auc():
    units = _units(240, seed=6)
    theta = 0.75
    x = planted_units(units, 0, theta, 400, np.random.default_rng(7))
    res = within_emotion_auc(x, units, margin=0.6)
    cover = np.mean((res["low"][:, 0] <= theta) & (theta <= res["high"][:, 0]))
    assert 0.90 <= cover <= 0.99
    ok = res["testable"]
    assert (res["low"][:, ok] <= res["auc"][:, ok]).all() and (res["auc"][:, ok] <= res["high"][:, ok]).all()
    assert np.isnan(res["low"][:, ~ok]).all()  # an AU fixed by the emotion has no within-emotion AUC
    # the binormal planted unit has the AUC it was planted with
    assert np.mean(res["auc"][:, 0]) == pytest.approx(theta, abs=0.01)


def test_the_verdict_reads_the_interval_and_what_the_data_could_detect():
    units = _units()
    rng = np.random.default_rng(8)
    x = rng.normal(size=(len(units.label), 6))
    images = unit_activations(x, units)
    res = within_emotion_auc(images, units, margin=0.6)
    pw = au_power(units, res["p"], alpha=0.05, margin=0.6, min_minority=5)
    ev = {"share_raw": np.ones((6, 3)), "share_distinct": np.ones((6, 3)), "auc_emotion": res["auc"],
          "auc_low": res["low"], "auc_high": res["high"], "q_emotion": benjamini_hochberg(res["p"]),
          "expected": np.full((6, 3), 0.5), "spatial": np.full((6, 3), np.nan), "base_rate": np.full(3, 0.2),
          "testable": units.minority >= 5, "minority": units.minority, "n_units": res["n_units"], **pw}
    row = verdict(ev, Criteria(), 0, 0)[2]
    assert f"[{res['low'][0, 0]:.2f}, {res['high'][0, 0]:.2f}]" in row["detail"]
    assert f"detectable from AUC {pw['detectable_auc'][0]:.2f} on this data" in row["detail"]
    assert "untestable" in verdict(ev, Criteria(), 0, 2)[2]["detail"]


def test_analyze_stores_power_per_layer_and_recomputes_it_when_the_criteria_change(tiny_run, tmp_path, monkeypatch):
    from fercore.analysis import analyze as an
    from fercore.analysis.summary import format_summary, summary_dict
    from fercore.store.reader import open_run

    run = tmp_path / tiny_run.name
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("null"))
    an.analyze(run, null=None)
    s = summary_dict(run)
    layer = s["layers"][-1]
    rows = {r["au"]: r for r in layer["power"]["aus"]}
    testable = set(s["testable_aus"])
    assert testable and all(rows[a]["status"] in ("detectable", "out of reach") for a in testable)
    assert all(rows[a]["status"] == "untestable" and rows[a]["detectable_auc"] is None
               for a in s["untestable_aus"])
    ev = open_run(run).evidence(layer["layer"])
    assert ev["detectable_auc"].shape == ev["au_ids"].shape and ev["auc_low"].shape == ev["auc_emotion"].shape
    before = {a: rows[a]["detectable_auc"] for a in testable if rows[a]["detectable_auc"] is not None}
    assert before

    def boom(*a, **k):
        raise AssertionError("power recomputed by a reader")

    monkeypatch.setattr(an, "au_power", boom)  # readers read what analyze stored
    text = format_summary(summary_dict(run))
    assert "What the beyond-emotion test could find" in text and "detectable AUC" in text
    monkeypatch.undo()
    an.analyze(run, null=None, criteria=Criteria(min_auc=0.7))
    after = {r["au"]: r["detectable_auc"] for r in summary_dict(run)["layers"][-1]["power"]["aus"]}
    assert all(after[a] is None or after[a] > before[a] for a in before)
