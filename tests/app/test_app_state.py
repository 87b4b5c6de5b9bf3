"""What a researcher relies on between clicks (Streamlit's AppTest, in-process, on the tiny run):
view state that survives a change of view and lives in the address, messages for what the address
asks and the cache does not have, the upload's honest captions, numbers in tables and CSVs, the
Runs view, the server-side job registry, and the chart helpers behind the FAU map's selection."""

from __future__ import annotations

import io
import json
import re
import shutil
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_app import _keep_cache_env, _upload, _upload_page, app, assert_clean, texts  # noqa: F401 (the autouse fixture)

from app import figures, jobs


def _max_sig_digits(csv: str) -> int:
    """The most significant digits of any number written in a CSV text."""
    most = 0
    for tok in re.findall(r"-?\d+\.?\d*(?:e[-+]?\d+)?", csv):
        mant = tok.lstrip("-").split("e")[0].replace(".", "").lstrip("0")
        if "." in tok.split("e")[0]:
            most = max(most, len(mant))
    return most


def _qp(at, name):
    v = at.query_params.get(name)
    return v[0] if isinstance(v, list) else v


# ------------------------------------------------------------------------------ the address
def test_an_unknown_run_in_the_address_is_named(tiny_cache, tiny_run):
    at = app(tiny_cache)
    at.query_params["run"] = "ckplus-khorrami-nosuchrun"
    at.run()
    assert not at.exception
    warned = " ".join(w.value for w in at.warning)
    assert "ckplus-khorrami-nosuchrun" in warned and "not in the cache" in warned and tiny_run.name in warned
    assert at.sidebar.selectbox(key="run_picker").value == str(tiny_run)
    assert _qp(at, "run") == tiny_run.name  # the address now names what is shown


def test_the_address_reopens_layer_filter_au_and_statistic(tiny_cache, tiny_run, tiny_null):
    from fercore.store.reader import open_run

    ev = open_run(tiny_run).evidence("features.conv2")
    f = int(ev["order_evidence"][-1])
    au = int(ev["au_ids"][3])
    at = app(tiny_cache)
    for k, v in {"run": tiny_run.name, "layer": "features.conv2", "filter": str(f), "au": f"AU{au}",
                 "stat": "r_au", "distinct": "1"}.items():
        at.query_params[k] = v
    at.run()
    at.switch_page("views/fau_map.py").run()
    assert_clean(at)
    assert at.selectbox(key="fau_layer").value == "features.conv2"
    assert at.selectbox(key="fau_filter").value == f
    assert at.selectbox(key="fau_au").value == au
    assert at.selectbox(key="fau_stat").value == "r_au"
    assert at.toggle(key="fau_distinct").value is True
    assert (_qp(at, "layer"), _qp(at, "filter"), _qp(at, "au"), _qp(at, "stat"), _qp(at, "distinct")) == \
        ("features.conv2", str(f), f"AU{au}", "r_au", "1")


def test_unknown_layer_filter_au_and_tab_in_the_address_are_named(tiny_cache, tiny_run):
    at = app(tiny_cache)
    for k, v in {"layer": "features.conv9", "filter": "100000", "au": "AU99", "tab": "roc"}.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception
    warned = " ".join(w.value for w in at.warning)
    assert "features.conv9" in warned and "100000" in warned and "AU99" in warned
    assert "tab `roc`" in warned and "curves" in warned
    assert [t.label for t in at.tabs][0] == "Confusion matrix" and at.get("vega_lite_chart")
    at.button(key="dismiss_url_notes").click().run()
    assert not [w for w in at.warning if "address" in w.value]


def test_choices_stay_across_views(tiny_cache, tiny_null):
    at = app(tiny_cache)
    at.run()
    at.switch_page("views/filters.py").run()
    layer = at.selectbox(key="filters_layer")
    layer.set_value(layer.options[1]).run()
    filters = at.selectbox(key="filters_filter")
    chosen = next(int(o.split()[0].lstrip("#")) for o in filters.options
                  if int(o.split()[0].lstrip("#")) != filters.value)
    filters.set_value(chosen).run()
    at.toggle(key="filters_distinct").set_value(True).run()
    assert_clean(at)
    at.switch_page("views/fau_map.py").run()
    assert_clean(at)
    assert at.toggle(key="fau_distinct").value is True  # the Distinct toggle survives a change of view
    assert at.selectbox(key="fau_layer").value == "features.conv2"
    assert at.selectbox(key="fau_filter").value == chosen
    at.switch_page("views/overview.py").run()
    at.switch_page("views/filters.py").run()
    assert at.toggle(key="filters_distinct").value is True
    assert at.selectbox(key="filters_filter").value == chosen
    assert "(distinct)" in texts(at)


def test_runs_are_labelled_readably_with_the_directory_on_hover(tiny_cache, tiny_run):
    at = app(tiny_cache)
    at.run()
    picker = at.sidebar.selectbox(key="run_picker")
    label = picker.format_func(picker.value)
    assert tiny_run.name not in label and " · " in label and "%" in label
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", label)  # when training ended
    assert tiny_run.name in picker.help


# ----------------------------------------------------------------------------------- upload
def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_centre_crop_is_said_in_the_captions(tiny_cache):
    at = _upload(_upload_page(tiny_cache), "wall.png", _png(Image.new("L", (200, 160), 128)))
    at.button(key="centre_crop_btn").click().run()
    assert_clean(at)
    captions = " ".join(c.value for c in at.caption) + " ".join(
        str(getattr(i.proto, "caption", "")) for i in at.get("imgs"))
    shown = texts(at) + captions
    assert "centre crop" in shown and "detected face box" not in shown


def test_a_phantom_trained_run_says_so_and_offers_a_run_on_photos(tiny_run, tmp_path, face_png):
    shutil.copytree(tiny_run, tmp_path / "runs" / tiny_run.name)
    photo = tmp_path / "runs" / "photos-zero_bias-hard-0000beef"
    shutil.copytree(tiny_run, photo)
    cfg = json.loads((photo / "config.json").read_text())
    cfg["faceset"]["source"] = "folder"  # as if trained on a folder of photographs
    (photo / "config.json").write_text(json.dumps(cfg))
    at = app(tmp_path)
    at.query_params["run"] = tiny_run.name
    at.run()
    _upload(at.switch_page("views/upload.py").run(), "astronaut.png", face_png)
    assert_clean(at)
    warned = " ".join(w.value for w in at.warning)
    assert "seen only drawn faces" in warned and "means little" in warned
    at.button(key=f"switch_run_{photo.name}").click().run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="run_picker").value == str(photo)
    assert "seen only drawn faces" not in " ".join(w.value for w in at.warning)


def test_landmarks_and_an_au_region_are_drawn_when_the_crop_has_them(tiny_cache, tiny_run, face_png, monkeypatch):
    from app import loaders
    from fercore.store.reader import open_run

    lm = open_run(tiny_run).data_landmarks()
    assert lm is not None  # the phantom records its landmarks
    real = loaders._decode_and_crop

    def with_landmarks(*a, **k):
        out = real(*a, **k)
        return {**out, "landmarks": lm[0] * out["image"].shape[0] / 48.0, "fit": "given"}

    monkeypatch.setattr(loaders, "_decode_and_crop", with_landmarks)
    at = _upload(_upload_page(tiny_cache), "astronaut.png", face_png)
    assert_clean(at)
    assert "The 68 landmarks" in texts(at)
    au = at.selectbox(key="upload_region_au")
    au.set_value(au.options[-1] if isinstance(au.options[-1], int) else int(au.value)).run()
    assert_clean(at)


def test_no_landmarks_is_said_and_nothing_is_drawn(tiny_cache, face_png):
    from app import loaders

    face = np.full((48, 48), 90, np.uint8)
    assert np.array_equal(loaders.landmark_figure(face, None, 12, scale=2), figures.to_rgb(figures.resize(face, 96)))
    at = _upload(_upload_page(tiny_cache), "astronaut.png", face_png)
    assert_clean(at)
    t = texts(at)
    assert "The 68 landmarks" in t or "No landmarks were fitted" in t


def test_landmark_figure_marks_points_and_the_region(tiny_run):
    from app import loaders
    from fercore.store.reader import open_run

    lm = open_run(tiny_run).data_landmarks()[0]
    face = np.full((48, 48), 90, np.uint8)
    img = loaders.landmark_figure(face, lm, 12, scale=4)
    assert img.shape == (192, 192, 3)
    green = (img[..., 1] > 140) & (img[..., 0] < 60)
    orange = (img[..., 0] > 200) & (img[..., 2] < 60)
    assert green.sum() > 20 and orange.sum() > 68  # an outline, and 68 dots


def test_gradcam_of_an_unlikely_class_leaves_the_face_grey():
    face = np.full((48, 48), 100, np.uint8)
    cam = np.ones((48, 48), np.float32)
    strong = figures.overlay(face, cam * 1.0, vmin=0, vmax=1, fade=True)
    weak = figures.overlay(face, cam * 0.0, vmin=0, vmax=1, fade=True)
    assert np.array_equal(weak, figures.to_rgb(face))  # p = 0: no colour at all
    assert np.abs(strong.astype(int) - figures.to_rgb(face)).mean() > 30


def test_colour_bar_has_its_end_values():
    bar = figures.colour_bar(-1.5, 3.25, label="activation")
    assert bar.ndim == 3 and bar.shape[1] == 258 and bar.shape[0] > 14


# ------------------------------------------------------------------------------------ numbers
def test_tables_and_csvs_have_three_significant_digits():
    df = pd.DataFrame({"r": np.array([-0.30541667342185974, 1.23456e-13, np.nan], dtype=np.float64),
                       "share": np.array([0.1, 0.2, 0.3], dtype=np.float32)})
    shown = figures.sig3(df)
    assert shown["r"].iloc[0] == -0.305 and shown["r"].iloc[1] == pytest.approx(1.23e-13)
    assert np.isnan(shown["r"].iloc[2])
    csv = figures.csv_text(df)
    assert "-0.305" in csv and "1.23e-13" in csv
    assert _max_sig_digits(csv) <= 3  # no float32 noise, no 0.000000000000...


def test_every_csv_of_the_fau_map_and_the_filters_is_formatted(tiny_cache, tiny_null):
    from app import loaders
    from fercore.store.layout import runs_dir

    run = str(next(d for d in runs_dir().iterdir() if d.is_dir()))
    stamp = loaders.records_stamp(run)
    for stat in loaders.statistics(loaders.evidence(run, stamp, "features.conv3")):
        _, df, _ = loaders.fau_heatmap(run, stamp, "features.conv3", stat, True, "evidence")
        csv = figures.csv_text(df, index=True, index_label="filter")
        assert _max_sig_digits(csv) <= 3, stat
        header = csv.splitlines()[0]
        assert "_" not in header  # headers in words
    csv = loaders.evidence_csv(run, stamp, ("features.conv3",))
    assert _max_sig_digits(csv) <= 3
    table = loaders.evidence_table(run, stamp, ("features.conv3",))
    floats = table.select_dtypes("float").to_numpy().ravel()
    floats = floats[np.isfinite(floats) & (floats != 0)]
    assert all(len(f"{abs(v):.12g}".replace(".", "").lstrip("0").rstrip("0").split("e")[0]) <= 3 for v in floats)


def test_learning_curve_series_are_in_words(tiny_cache, tiny_run):
    from app import loaders

    m = loaders.metrics_view(str(tiny_run), loaders.records_stamp(str(tiny_run)))
    assert {"training accuracy", "validation accuracy", "training loss"} <= set(m["curves"]["series"])
    spec = loaders.curves_figure(str(tiny_run), loaders.records_stamp(str(tiny_run)), False)
    assert {s.split(" (mean")[0] for s in spec["datasets"]["stats"]["series"]} == set(m["curves"]["series"])


# ------------------------------------------------------------------------------------ Runs view
def test_runs_view_lists_and_compares_three_runs(tiny_run, tiny_null, tmp_path):
    for name in ("phantom-aaaa1111-zero_bias-hard-00000001", "phantom-bbbb2222-zero_bias-hard-00000002",
                 "phantom-cccc3333-zero_bias-hard-00000003"):
        shutil.copytree(tiny_run, tmp_path / "runs" / name)
    at = app(tmp_path)
    at.run()
    at.switch_page("views/runs.py").run()
    assert_clean(at)
    listing = at.dataframe[0].value
    assert len(listing) == 3
    assert {"data set", "protocol", "mean test accuracy (%)", "recorded", "null network", "trained or imported"} <= \
        set(listing.columns)
    at.multiselect(key="runs_compare").set_value([str(d) for d in sorted((tmp_path / "runs").iterdir())])
    t0 = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - t0
    assert_clean(at)
    charts = at.get("vega_lite_chart")
    assert len(charts) == 4  # per-class accuracy, and the same map for each of the three runs
    (funnel,) = [d.value for d in at.dataframe if "run" in d.value.columns and "beyond emotion" in d.value.columns]
    assert set(funnel["run"]) == {"A: " + listing["data set"][0], "B: " + listing["data set"][0],
                                  "C: " + listing["data set"][0]}
    assert elapsed < 20  # the 1 s target is measured by bench/bench_app.py on the default run


# --------------------------------------------------------------------------------- server jobs
def test_a_job_reports_stage_fold_weighted_progress_and_estimate():
    reg = jobs.Jobs()
    gate = []

    def work(progress):
        progress(1000, 5000, "phantom (1/5)")  # phantom done
        progress(1000 + 350, 5000, "train (2/5)")  # 35 % of training
        while not gate:
            time.sleep(0.01)
        progress(5000, 5000, "done")
        return "/runs/x"

    job, started = reg.start("default", "", work, label="Building", stages=jobs.PIPELINE, rounds=10)
    again, second = reg.start("default", "", work, label="Building", stages=jobs.PIPELINE, rounds=10)
    assert started and not second and again is job  # a second request joins the running job
    deadline = time.monotonic() + 5
    while job.snapshot()["stage"] != "train" and time.monotonic() < deadline:
        time.sleep(0.01)
    snap = job.snapshot()
    assert snap["stage"] == "train" and snap["stage_number"] == 2 and snap["fold"] == "4/10"
    w = jobs.STAGE_SECONDS
    assert snap["fraction"] == pytest.approx((w["phantom"] + 0.35 * w["train"]) / sum(w.values()), abs=1e-3)
    assert snap["running"] and snap["remaining"] > 0
    gate.append(1)
    assert job.wait(5)
    snap = job.snapshot()
    assert not snap["running"] and snap["fraction"] == 1.0 and snap["result"] == "/runs/x"
    assert reg.find("default") is None and reg.latest("default") is job


def test_a_failed_job_keeps_its_error():
    reg = jobs.Jobs()

    def work(progress):
        raise OSError("disk full")

    job, _ = reg.start("run", "/r", work, label="Rebuilding", stages=("record", "null", "analyze"))
    assert job.wait(5)
    assert job.snapshot()["error"] == "OSError: disk full" and "Traceback" in job.details


def test_the_stage_weights_are_one_constant_in_pipeline_order():
    from fercore.pipeline import STAGES

    assert tuple(jobs.STAGE_SECONDS) == tuple(STAGES)
    assert max(jobs.STAGE_SECONDS, key=jobs.STAGE_SECONDS.get) == "train"


# --------------------------------------------------------------------------------- privacy
def test_the_server_binds_to_loopback_by_default():
    import tomllib
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    config = tomllib.loads((repo / "streamlit_config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert (repo / ".streamlit" / "config.toml").resolve() == (repo / "streamlit_config.toml").resolve()


def test_uploads_are_not_cached_across_sessions():
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    for path in list((repo / "app").glob("*.py")) + list((repo / "app" / "views").glob("*.py")):
        assert 'persist="disk"' not in path.read_text() and "persist='disk'" not in path.read_text()
    from app import loaders

    for fn in (loaders.decode_and_crop, loaders.analyze_face):
        assert not hasattr(fn, "clear"), f"{fn.__name__} must not be a shared st.cache_data function"


def test_the_first_estimate_is_scaled_by_the_machine_pace_and_the_rounds(monkeypatch):
    """Before a stage has a pace of its own, what remains is its measured cost (training weighed by
    the job's rounds) times how this machine runs the reference workload now."""
    estimates = {}
    for pace, rounds in ((1.0, 10), (2.0, 10), (1.0, 1)):
        monkeypatch.setattr(jobs, "machine_pace", lambda p=pace: p)
        reg, gate = jobs.Jobs(), []

        def work(progress, gate=gate):
            progress(1000, 5000, "train (2/5)")  # training starts
            while not gate:
                time.sleep(0.01)

        job, _ = reg.start("default", "", work, label="Building", stages=jobs.PIPELINE, rounds=rounds)
        deadline = time.monotonic() + 5
        while job.snapshot()["stage"] != "train" and time.monotonic() < deadline:
            time.sleep(0.01)
        estimates[(pace, rounds)] = job.snapshot()["remaining"]
        gate.append(1)
        assert job.wait(5)
    w = jobs.STAGE_SECONDS
    rest = w["record"] + w["null"] + w["analyze"]
    assert estimates[(1.0, 10)] == pytest.approx(w["train"] + rest, rel=1e-3)
    assert estimates[(2.0, 10)] == pytest.approx(2 * (w["train"] + rest), rel=1e-3)
    assert estimates[(1.0, 1)] == pytest.approx(w["train"] / 10 + rest, rel=1e-3)
