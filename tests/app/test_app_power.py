"""The power of the beyond-emotion test where the funnel is shown: the Overview, the FAU map's
funnel line, the Evidence view's table per AU, and every filter's within-emotion AUC with its
interval beside the detectable effect in the Filters view (AppTest over the tiny run)."""

from __future__ import annotations

from test_app import app, assert_clean, texts


def _power_rows(tiny_run, layer):
    from fercore.analysis.summary import summary_dict

    (row,) = [r for r in summary_dict(tiny_run)["layers"] if r["layer"] == layer]
    return row["power"]["aus"]


def test_evidence_view_shows_what_the_test_could_find_per_au(tiny_cache, tiny_run):
    at = app(tiny_cache)
    at.run()
    at.switch_page("views/evidence.py").run()
    assert_clean(at)
    layer = at.selectbox(key="evidence_layer").value
    (power,) = [d for d in at.dataframe if "detectable AUC" in d.value.columns]
    rows = _power_rows(tiny_run, layer)
    assert list(power.value["AU"]) == [f"AU{r['au']}" for r in rows]
    for shown, r in zip(power.value["detectable AUC"], rows, strict=True):
        assert shown == (r["status"] if r["detectable_auc"] is None else
                         f"{r['detectable_auc']:.2f} (r {r['detectable_r']:.2f})")
    assert "80 % probability" in texts(at)
    ranked = [d for d in at.dataframe if "within-emotion AUC" in d.value.columns]
    assert ranked and {"its 95 % interval, low", "detectable AUC on this data"} <= set(ranked[0].value.columns)


def test_filters_view_reads_each_auc_with_its_interval_beside_the_detectable_effect(tiny_cache, tiny_run):
    at = app(tiny_cache)
    at.run()
    at.switch_page("views/filters.py").run()
    assert_clean(at)
    text = texts(at)
    assert "within-emotion AUC" in text
    assert "detectable from AUC" in text or "untestable" in text or "out of reach" in text
    (table,) = [d for d in at.dataframe if "within-emotion AUC [95 % CI]" in d.value.columns]
    assert table.value["within-emotion AUC [95 % CI]"].str.contains(r"\[").any()


def test_the_funnel_shows_the_detectable_effect_in_the_overview_and_the_fau_map(tiny_cache):
    at = app(tiny_cache)
    at.run()
    assert_clean(at)
    assert any("What the beyond-emotion test could find" in e.label for e in at.expander)
    at.switch_page("views/fau_map.py").run()
    assert_clean(at)
    assert "the test finds a within-emotion AUC from" in texts(at)
