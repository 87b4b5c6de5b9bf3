"""The honest-FAU controls in the dashboard (Streamlit's AppTest, in-process, on the tiny run):
the summary table on the Overview and the FAU map, the button that builds a missing null network,
the raw / distinct top-K toggle, the null's value beside each figure and the filter's verdict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_app import _keep_cache_env, app, assert_clean, texts  # noqa: F401 (the autouse fixture)

COUNTS = ("raw", "distinct", "beyond emotion", "beyond null")


def summary_frame(at: AppTest):
    (df,) = [d.value for d in at.dataframe if "beyond null" in d.value.columns]
    return df


def assert_summary(at: AppTest, run: Path) -> None:
    df = summary_frame(at)
    assert set(COUNTS) | {"all", "AUs (all)", "raw (null)", "layer"} <= set(df.columns)
    assert list(df["layer"])[0] == "features.conv1"
    assert (df[list(COUNTS)] >= 0).all().all() and (df["distinct"] <= df["filters"]).all()
    t = texts(at)
    assert "**AU-selective filters** — raw **" in t and "beyond the null **" in t and "(null network: untrained)" in t
    assert "No null network yet" not in t


def test_overview_shows_the_summary(tiny_cache, tiny_run, tiny_null):
    at = app(tiny_cache)
    at.run()
    assert_clean(at)
    assert_summary(at, tiny_run)
    assert not [b for b in at.button if b.key.startswith("build_null")]


def test_fau_map_shows_summary_null_values_and_survivors(tiny_cache, tiny_run, tiny_null):
    at = app(tiny_cache)
    at.run()
    at.switch_page("views/fau_map.py").run()
    assert_clean(at)
    assert_summary(at, tiny_run)
    t = texts(at)
    assert "Null network, 95th percentile over its filters" in t and "null p95" in t
    assert "raw top-K:" in t and "beyond null:" in t
    (matches,) = [d.value for d in at.dataframe if "survives controls" in d.value.columns and "au" in d.value.columns]
    assert set(matches["survives controls"]) <= {"✓", "✗"} and "null_p95_distinct_share" in matches.columns
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    rows = spec["data"][0]["y"]
    assert all(r.endswith(("✓", "✗")) for r in rows)


def _heatmap_z(at: AppTest) -> list:
    return json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["z"]


def test_fau_map_raw_distinct_toggle(tiny_cache, tiny_null):
    at = app(tiny_cache)
    at.run()
    at.switch_page("views/fau_map.py").run()
    at.radio(key="fau_order").set_value("index").run()  # the same row order for both lists
    assert at.selectbox(key="fau_stat").value == "top-K co-occurrence"
    raw = _heatmap_z(at)
    assert at.metric[0].label == "top-K share − base rate"
    at.toggle(key="fau_distinct").set_value(True).run()
    assert_clean(at)
    assert at.metric[0].label == "distinct top-K share − base rate"
    assert _heatmap_z(at) != raw  # the tiny data has 12 subjects: top-8 lists repeat subjects
    at.selectbox(key="fau_stat").set_value("correlation").run()
    assert_clean(at)
    assert at.toggle(key="fau_distinct").disabled  # only the top-K statistic has a distinct list


def test_filter_page_shows_the_verdict_and_null_badges(tiny_cache, tiny_null):
    at = app(tiny_cache)
    at.run()
    at.switch_page("views/filters.py").run()
    assert_clean(at)
    t = texts(at)
    for control in ("raw top-K:", "distinct top-K:", "beyond emotion:", "beyond null:"):
        assert control in t
    assert "partial given emotion" in t and "null p95" in t
    assert "no null" not in t
    (controls,) = [d.value for d in at.dataframe if "survives controls" in d.value.columns]
    assert len(controls) == len(at.selectbox(key="filters_filter").options)
    (judge,) = [s for s in at.selectbox if s.label == "AU to judge"]
    other = (judge.value + 1) % len(judge.options)
    au = judge.format_func(other).split()[0]  # "AU12 lip corner puller" -> "AU12"
    judge.set_value(other).run()
    assert_clean(at)
    assert f"**{au}** — raw top-K:" in texts(at)  # the verdict follows the AU chosen
    at.toggle(key="filters_distinct").set_value(True).run()
    assert_clean(at)
    assert "(distinct)" in texts(at)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert "distinct top-K images" in json.dumps(spec["layout"]["title"])


@pytest.fixture()
def run_without_null(tiny_run, tmp_path) -> Path:
    dest = tmp_path / "runs" / tiny_run.name
    shutil.copytree(tiny_run, dest, ignore=shutil.ignore_patterns("null"))
    return dest


def test_missing_null_is_named_and_the_button_builds_it(run_without_null, tmp_path):
    at = app(tmp_path)
    at.run()
    assert_clean(at)
    assert "No null network yet" in texts(at)
    assert "(null network: none)" in texts(at)
    at.switch_page("views/fau_map.py").run()
    assert_clean(at)
    assert "No null network yet" in texts(at)
    assert "no null" in texts(at)  # the figures say they have no null value
    at.switch_page("views/filters.py").run()
    assert_clean(at)
    assert "beyond null: no null" in texts(at) and "the null network is not built" in texts(at)
    at.switch_page("views/overview.py").run()
    at.button(key="build_null_overview").click().run()
    assert_clean(at)
    assert (run_without_null / "null" / "untrained" / "records.h5").exists()
    assert_summary(at, run_without_null)


def test_build_default_builds_the_null_last(monkeypatch):
    import fercore.pipeline as pipeline

    seen = {}
    monkeypatch.setattr(pipeline, "build_run", lambda **kw: seen.update(kw) or Path("x"))
    pipeline.build_default()
    assert seen["null"] is True
    assert pipeline.STAGES[-1] == "null"


def test_build_run_null_stage_is_cached_and_reported(tiny_cache, tiny_run, tiny_null):
    from conftest import TINY_K, TINY_PHANTOM, TINY_TRAIN

    from fercore.pipeline import STAGES, build_run

    seen = []
    again = build_run(phantom=TINY_PHANTOM, train_options=TINY_TRAIN, k=TINY_K, null=True,
                      progress=lambda d, t, s: seen.append((d, t, s)))
    assert again == tiny_run
    assert any(s.startswith(f"null ({len(STAGES)}/{len(STAGES)})") for _, _, s in seen)
    assert seen[-1][0] == seen[-1][1] == len(STAGES) * 1000


def test_null_recorded_on_other_data_is_named_and_recorded_again(tiny_run, tiny_null, tmp_path):
    import h5py

    dest = tmp_path / "runs" / tiny_run.name
    shutil.copytree(tiny_run, dest)
    with h5py.File(dest / "null" / "untrained" / "records.h5", "r+") as f:
        f.attrs["faceset_hash"] = "0" * 16  # as if the data set changed after the null was recorded
    at = app(tmp_path)
    at.run()
    assert not at.exception
    msg = " ".join(e.value for e in at.error)
    assert "controls of this run cannot be computed" in msg and "null/untrained/records.h5" in msg
    at.button(key="rebuild_null_overview").click().run()
    assert_clean(at)
    assert_summary(at, dest)
