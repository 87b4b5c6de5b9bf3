"""Selectivity criteria: raw, distinct top-K, beyond emotion, beyond null."""

import numpy as np
import pytest

from fercore.analysis.criteria import (
    Criteria,
    base_rates,
    bh_adjust,
    expected_share,
    null_threshold,
    selectivity,
    topk_au_share,
)


def _topk(act: np.ndarray, k: int) -> np.ndarray:
    """(F, K) indices of the K largest activations per filter."""
    return np.argsort(-act, axis=0)[:k].T.copy()


def _distinct_topk(act: np.ndarray, groups: np.ndarray, k: int) -> np.ndarray:
    out = np.full((act.shape[1], k), -1, dtype=np.int64)
    for f in range(act.shape[1]):
        seen, j = set(), 0
        for i in np.argsort(-act[:, f]):
            if groups[i] in seen:
                continue
            seen.add(groups[i])
            out[f, j] = i
            j += 1
            if j == k:
                break
    return out


def _emotion_world(seed=0, n=1200):
    """Three emotions; AU 12 present in 85% of class 2 ('happy') and 8% of the rest.

    Filter 0 responds to the label only, filter 1 to the AU itself, filter 2 is noise.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    au = (rng.random(n) < np.where(labels == 2, 0.85, 0.08)).astype(float)
    au4 = (rng.random(n) < 0.3).astype(float)  # an unrelated AU
    act = np.stack(
        [
            (labels == 2) * 3.0 + rng.normal(scale=0.3, size=n),
            au * 3.0 + rng.normal(scale=0.3, size=n),
            rng.normal(size=n),
        ],
        axis=1,
    )
    return act, np.stack([au, au4], 1), labels


def test_emotion_filter_is_not_selective_beyond_emotion_but_au_filter_is():
    act, pres, labels = _emotion_world()
    s = selectivity(act, _topk(act, 16), pres, labels, au_ids=[12, 4], class_names=("a", "b", "happy"))
    # both look AU12-selective on the raw criterion
    assert s.raw[0, 0] and s.raw[1, 0]
    assert not s.raw[2].any()
    # only the AU-driven filter keeps it once the emotion is accounted for
    assert not s.beyond_emotion[0, 0]
    assert s.beyond_emotion[1, 0]
    assert s.best_au("beyond_emotion").tolist() == [-1, 12, -1]
    assert s.best_au("raw")[0] == 12


def test_beyond_emotion_uses_observed_minus_expected_share():
    act, pres, labels = _emotion_world(seed=1)
    idx = _topk(act, 16)
    s = selectivity(act, idx, pres, labels)
    # the emotion filter's top images are all class 2: expected share = P(AU | class 2) ~ 0.85
    table_happy = np.nanmean(pres[labels == 2, 0])
    assert s.expected[0, 0] == pytest.approx(table_happy)
    # the AU filter's top images are the happy ones (they carry the AU most often) or others
    assert s.share_distinct[1, 0] == 1.0


def test_distinct_topk_never_holds_two_images_of_one_group_and_lowers_counts():
    rng = np.random.default_rng(3)
    n_seq, per = 60, 3
    groups = np.repeat(np.arange(n_seq), per)
    labels = np.repeat(rng.integers(0, 3, n_seq), per)
    au = np.repeat((rng.random(n_seq) < 0.2).astype(float), per)
    # a filter driven by one near-duplicate triple per AU-positive sequence, noisy otherwise
    act = rng.normal(size=(n_seq * per, 1)) + au[:, None] * 0.8
    act[:, 0] += np.repeat(rng.normal(scale=1.5, size=n_seq), per)
    d = _distinct_topk(act, groups, 16)
    for row in d:
        g = groups[row[row >= 0]]
        assert len(set(g)) == len(g)
    s = selectivity(act, _topk(act, 16), au[:, None], labels, distinct_index=d)
    # the distinct list has three times fewer duplicate frames: its share is computed over 16 groups
    assert s.share_distinct.shape == (1, 1)
    assert topk_au_share(d, au[:, None])[0, 0] == s.share_distinct[0, 0]


def test_beyond_null_uses_null_95th_percentile_per_au():
    act, pres, labels = _emotion_world(seed=4)
    rng = np.random.default_rng(5)
    null_act = rng.normal(size=(len(labels), 40))
    null = selectivity(null_act, _topk(null_act, 16), pres, labels, au_ids=[12, 4])
    s = selectivity(act, _topk(act, 16), pres, labels, au_ids=[12, 4], null=null)
    assert s.has_null
    thr = null_threshold(null.share_distinct)
    assert np.allclose(s.null_p95["share_distinct"], thr, equal_nan=True)
    assert s.beyond_null[1, 0] and s.beyond_null[0, 0]  # the raw AU share beats random filters
    assert s.all[1, 0] and not s.all[0, 0]  # but only the AU filter passes every criterion
    assert s.count("all") == 1 and s.aus("all") == [12]
    assert set(s.null_counts) == {"raw", "distinct", "beyond_emotion"}


def test_base_rate_gate_of_raw_criterion():
    labels = np.zeros(100, dtype=int)
    pres = np.ones((100, 1))
    pres[:50] = 0
    act = pres.copy() + 0.01 * np.arange(100)[:, None]
    s = selectivity(act, _topk(act, 16), pres, labels)
    assert s.share_raw[0, 0] == 1.0
    assert not s.raw[0, 0]  # base rate 0.5 >= 0.4
    s2 = selectivity(act, _topk(act, 16), pres, labels, criteria=Criteria(max_base_rate=0.6))
    assert s2.raw[0, 0]


def test_helpers_ignore_empty_slots_and_unknown_aus():
    pres = np.array([[1.0], [0.0], [np.nan], [1.0]])
    idx = np.array([[0, 1, 2, -1]])
    assert topk_au_share(idx, pres)[0, 0] == pytest.approx(0.5)
    assert base_rates(pres)[0] == pytest.approx(2 / 3)
    labels = np.array([0, 0, 1, 1])
    # P(AU | 0) = 0.5, P(AU | 1) = 1.0 (image 2 unknown); top images 0, 1, 2
    assert expected_share(idx, labels, pres)[0, 0] == pytest.approx((0.5 + 0.5 + 1.0) / 3)


def test_bh_adjust_matches_definition():
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.5])
    q = bh_adjust(p)
    assert np.isnan(q[3])
    # sorted 0.01, 0.03, 0.04, 0.5 with m=4: 0.04, 0.053, 0.053, 0.5
    assert q[0] == pytest.approx(0.04)
    assert q[2] == pytest.approx(0.04 * 4 / 3)
    assert q[1] == pytest.approx(0.04 * 4 / 3)
    assert q[4] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"topk_index": np.zeros((2, 3))}, "topk_index"),
        ({"topk_index": np.full((2, 3), 99)}, "out of range"),
        ({"topk_index": np.zeros((5, 3), dtype=int)}, "one row per filter"),
    ],
)
def test_bad_input_names_the_argument(kwargs, match):
    args = {"activations": np.zeros((10, 2)), "topk_index": np.zeros((2, 3), dtype=int),
            "au_present": np.zeros((10, 1)), "labels": np.zeros(10, dtype=int)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        selectivity(**args)


def test_criteria_validate():
    with pytest.raises(ValueError, match="min_share"):
        Criteria(min_share=1.5)


def test_dashboard_components_draw_the_summary_and_badges():
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    def page():
        import numpy as np

        from app.views import honest
        from fercore.analysis.criteria import CRITERIA_NAMES, Criteria, selectivity
        from fercore.analysis.summary import FigureRow, LayerRow, Summary

        rng = np.random.default_rng(0)
        act = rng.normal(size=(100, 4))
        pres = (rng.random((100, 2)) < 0.3).astype(float)
        lab = rng.integers(0, 3, 100)
        idx = np.argsort(-act, 0)[:8].T.copy()
        s = selectivity(act, idx, pres, lab, au_ids=[12, 4], null=selectivity(act, idx, pres, lab, au_ids=[12, 4]))
        row = LayerRow("features.conv1", 4, {c: s.count(c) for c in CRITERIA_NAMES}, s.null_counts,
                       {c: s.aus(c) for c in CRITERIA_NAMES}, 5.0, 8)
        summ = Summary("r", "untrained", Criteria(), 100, 50, [row],
                       [FigureRow("features.conv1", "x", 0.1, 0.5, 0.4, 1)], {"features.conv1": s})
        honest.summary_table(summ)
        honest.figure_table(summ)
        honest.null_badge(0.8, 0.6, label="share")
        honest.null_badge(float("nan"), 0.6)
        honest.filter_verdict(s, 1)

    at = AppTest.from_function(page).run(timeout=60)
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "beyond the null" in text and ":green-badge[0.80 · null p95 0.60 ✓]" in text
    assert "AU12" in text or "AU4" in text
    assert len(at.dataframe) == 2
    assert "untrained network" in at.caption[0].value


def test_null_badge_text():
    from app.views.honest import null_badge_text

    assert null_badge_text(0.5, 0.7).endswith("✗ not above null")
    assert null_badge_text(0.5, float("nan")) == "0.50 · no null"


def test_excess_share_relative_and_absolute():
    from fercore.analysis.criteria import excess_share

    share = np.array([[1.0, 0.5, 1.0]])
    expected = np.array([[0.8, 0.5, 1.0]])
    rel = excess_share(share, expected)
    assert rel[0, 0] == pytest.approx(1.0) and rel[0, 1] == 0.0 and np.isnan(rel[0, 2])
    assert excess_share(share, expected, excess="absolute")[0, 0] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="excess"):
        Criteria(excess="ratio")
