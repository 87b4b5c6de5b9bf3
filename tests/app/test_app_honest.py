"""The honest-FAU controls in the dashboard (Streamlit's AppTest, in-process, on the tiny run):
the funnel on the Overview and the FAU map, the button that builds a missing null network, the
verdict of a filter stage by stage, the null's value beside each figure, warnings that replace the
counts of a weak run, and views that only read what ``analyze`` stored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_app import _keep_cache_env, app, assert_clean, finish_jobs, texts  # noqa: F401 (the autouse fixture)

STAGE_COLUMNS = ("raw", "distinct top-K", "beyond emotion", "in the AU's region")
VIEWS = ("views/overview.py", "views/filters.py", "views/fau_map.py", "views/evidence.py", "views/upload.py")


def funnel_frame(at: AppTest):
    (df,) = [d.value for d in at.table if "beyond emotion" in d.value.columns]
    return df


def assert_funnel(at: AppTest, *, null: bool = True) -> None:
    """The funnel as shown: one row per layer, the AUs first, each stage as ``"12 · null 3"``."""
    df = funnel_frame(at)
    assert set(STAGE_COLUMNS) | {"layer", "filters", "AUs beyond emotion"} <= set(df.columns)
    assert list(df.columns)[:2] == ["layer", "AUs beyond emotion"]  # the AUs are never cut off on the right
    assert list(df["layer"])[0] == "features.conv1"
    cells = df[list(STAGE_COLUMNS)].astype(str)
    counts = cells.map(lambda c: int(c.split()[0])).to_numpy()
    assert (counts[:, :-1] >= counts[:, 1:]).all()  # each stage a subset of the one before
    assert bool(cells.map(lambda c: "· null " in c).to_numpy().all()) is null
    assert "within-emotion permutation test" in texts(at)


def test_overview_shows_the_funnel_beside_the_null(tiny_cache, tiny_run, tiny_null):
    at = app(tiny_cache)
    at.run()
    assert_clean(at)
    assert_funnel(at)
    assert "No null network yet" not in texts(at)
    assert not [b for b in at.button if b.key.startswith("build_null")]


def test_fau_map_shows_the_layers_funnel_null_values_and_verdict(tiny_cache, tiny_run, tiny_null):
    from fercore.store.reader import open_run

    at = app(tiny_cache)
    at.run()
    at.switch_page("views/fau_map.py").run()
    assert_clean(at)
    t = texts(at)
    summary = open_run(tiny_run).summary()
    conv3 = next(r for r in summary["layers"] if r["layer"] == "features.conv3")
    raw, raw_null = conv3["stages"]["raw"]["filters"], conv3["null_stages"]["raw"]["filters"]
    assert f"**features.conv3**, {conv3['n_filters']} filters: raw **{raw}** (null {raw_null}) → distinct top-K" in t
    assert "Null network, 95th percentile over its filters" in t
    for stage in ("raw", "distinct top-K", "beyond emotion", "in the AU's region"):
        assert f" {stage}: " in t  # one verdict line per stage
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    rows = spec["hconcat"][0]["layer"][0]["encoding"]["y"]["axis"]["labelExpr"]
    labels = json.loads(rows.split("[datum.value]")[0])
    assert len(labels) == conv3["n_filters"] and all(r.split()[0].startswith("#") for r in labels)


def test_evidence_view_ranks_the_pairs_and_shows_the_co_occurrence(tiny_cache, tiny_run, tiny_null):
    at = app(tiny_cache)
    at.run()
    at.switch_page("views/evidence.py").run()
    assert_clean(at)
    (table,) = [d.value for d in at.dataframe if "verdict" in d.value.columns]
    assert {"stage reached", "q (Benjamini-Hochberg)", "units the test rests on"} <= set(table.columns)
    starts = ("Beyond emotion: ", "Not beyond emotion: ", "No evidence for AU", "Untestable beyond emotion: ")
    assert all(v.startswith(starts) for v in table["verdict"])  # one sentence from the funnel
    beyond = table["stage reached"].isin(["beyond emotion", "in the AU's region"])
    assert all(v.startswith("Beyond emotion: ") for v in table["verdict"][beyond])
    assert set(table["layer"]) == {"features.conv3"}  # the layer picked (the last by default)
    (cooc,) = at.get("vega_lite_chart")
    assert "co-occurrence" in cooc.proto.spec
    at.selectbox(key="evidence_layer").set_value("features.conv2").run()
    assert_clean(at)
    (table,) = [d.value for d in at.dataframe if "verdict" in d.value.columns]
    assert set(table["layer"]) <= {"features.conv2"}
    assert {b.label for b in at.get("download_button")} >= {"Evidence table, features.conv2 (CSV)",
                                                           "Evidence table, every layer (CSV)",
                                                           "AU co-occurrence (CSV)"}


def test_filter_page_shows_the_verdict_and_null_badges(tiny_cache, tiny_null):
    at = app(tiny_cache)
    at.run()
    at.switch_page("views/filters.py").run()
    assert_clean(at)
    t = texts(at)
    assert "· null " in t  # a figure beside the null's 95th percentile
    (controls,) = [d.value for d in at.dataframe if "stage reached" in d.value.columns and "AU judged" in d.value.columns]
    assert len(controls) == len(at.selectbox(key="filters_filter").options)
    (judge,) = [s for s in at.selectbox if s.label == "AU to judge"]
    other = (judge.value + 1) % len(judge.options)
    au = judge.format_func(other)
    judge.set_value(other).run()
    assert_clean(at)
    assert f"**{au}** — raw" in texts(at)  # the verdict follows the AU chosen
    at.toggle(key="filters_distinct").set_value(True).run()
    assert_clean(at)
    assert "(distinct)" in texts(at)


@pytest.fixture()
def run_without_null(tiny_run, tmp_path) -> Path:
    from fercore.analysis.analyze import analyze

    dest = tmp_path / "runs" / tiny_run.name
    shutil.copytree(tiny_run, dest, ignore=shutil.ignore_patterns("null"))
    config = json.loads((dest / "config.json").read_text())
    assert config  # a copy of a real run
    analyze(dest, null=None)
    return dest


def test_missing_null_is_named_and_the_button_builds_it(run_without_null, tmp_path):
    at = app(tmp_path)
    at.run()
    assert_clean(at)
    assert "No null network yet" in texts(at)
    assert_funnel(at, null=False)
    at.button(key="build_null_overview").click().run()
    finish_jobs(at)
    assert_clean(at)
    assert (run_without_null / "null" / "untrained" / "records.h5").exists()
    assert_funnel(at, null=True)


def test_a_weak_run_shows_warnings_instead_of_counts(tiny_run, tmp_path):
    from fercore.analysis.analyze import analyze

    dest = tmp_path / "runs" / tiny_run.name
    shutil.copytree(tiny_run, dest, ignore=shutil.ignore_patterns("null"))
    metrics = json.loads((dest / "metrics.json").read_text())
    metrics["mean_test_acc"] = 0.13  # eight balanced classes: chance is about 0.125
    (dest / "metrics.json").write_text(json.dumps(metrics))
    analyze(dest, null=None)
    at = app(tmp_path)
    at.run()
    assert not at.exception
    assert "weak run" in " ".join(w.value for w in at.warning)
    assert not [d for d in at.table if "beyond emotion" in d.value.columns]


def test_every_view_only_reads_what_analyze_stored(tiny_cache, tiny_null, face_png, monkeypatch):
    """With every estimator and the analysis stage patched to raise, every view still opens."""
    import fercore.analysis.analyze as stage
    import fercore.analysis.estimators as est

    def boom(*a, **k):
        raise AssertionError("a view computed a statistic")

    for name in est.__all__:
        if callable(getattr(est, name)):
            monkeypatch.setattr(est, name, boom)
    monkeypatch.setattr(stage, "analyze", boom)
    monkeypatch.setattr(stage, "layer_evidence", boom)
    at = app(tiny_cache)
    at.run()
    assert_clean(at)
    for view in VIEWS[1:]:
        at.switch_page(view).run()
        assert_clean(at)
    at.file_uploader(key="upload_file").set_value(("astronaut.png", face_png, "image/png"))
    at.run()
    assert_clean(at)
    assert at.metric[0].label == "Predicted expression"


def test_build_default_analyses_against_the_untrained_null(monkeypatch):
    import fercore.pipeline as pipeline

    seen = {}
    monkeypatch.setattr(pipeline, "build_run", lambda **kw: seen.update(kw) or Path("x"))
    pipeline.build_default()
    assert seen["null"] == "untrained"
    assert pipeline.STAGES == ("phantom", "train", "record", "null", "analyze")


def test_build_run_null_stage_is_cached_and_reported(tiny_cache, tiny_run, tiny_null):
    from conftest import TINY_K, TINY_PHANTOM, TINY_TRAIN

    from fercore.pipeline import STAGES, build_run

    seen = []
    again = build_run(phantom=TINY_PHANTOM, train_options=TINY_TRAIN, k=TINY_K, null="untrained",
                      progress=lambda d, t, s: seen.append((d, t, s)))
    assert again == tiny_run
    assert any(s.startswith(f"null (4/{len(STAGES)})") for _, _, s in seen)
    assert seen[-1][0] == seen[-1][1] == len(STAGES) * 1000
