"""The dashboard, driven in-process by Streamlit's AppTest: every view, uploads good and bad,
and a run whose records are missing or corrupt."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
MAIN = str(REPO / "app" / "main.py")


@pytest.fixture(autouse=True)
def _keep_cache_env():
    """``app()`` points FERCORE_CACHE at a test's cache; put the session's value back after."""
    import os

    old = os.environ.get("FERCORE_CACHE")
    yield
    if old is None:
        os.environ.pop("FERCORE_CACHE", None)
    else:
        os.environ["FERCORE_CACHE"] = old


def app(cache) -> AppTest:
    """A fresh AppTest of the dashboard over ``cache`` (Streamlit's caches emptied first, which
    also gives it a fresh job registry)."""
    import os

    os.environ["FERCORE_CACHE"] = str(cache)
    st.cache_data.clear()
    st.cache_resource.clear()
    return AppTest.from_file(MAIN, default_timeout=120)


def finish_jobs(at: AppTest, timeout: float = 300) -> AppTest:
    """Wait for the server-side jobs the page started (they run in threads), then run the page."""
    from app.jobs import registry

    for job in registry().running():
        assert job.wait(timeout), f"{job.label} did not finish in {timeout} s"
    return at.run()


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "error", "warning", "info", "success", "title", "subheader")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not [e for e in at.error], [e.value for e in at.error]


# ------------------------------------------------------------------ runs without usable records
@pytest.fixture()
def broken_cache(tmp_path, monkeypatch):
    run = tmp_path / "runs" / "phantom-zero_bias-hard-deadbeef"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"mean_test_acc": 0.5, "folds": []}))
    (run / "config.json").write_text(json.dumps({"name": run.name, "class_names": ["a", "b"],
                                                 "faceset": {"name": "phantom-1234"}, "train": {},
                                                 "model": {"arch": "zero_bias", "width": 0.25, "in_size": 48}}))
    monkeypatch.setenv("FERCORE_CACHE", str(tmp_path))
    return tmp_path, run


@pytest.mark.parametrize("page", ["views/overview.py", "views/filters.py", "views/fau_map.py", "views/upload.py"])
def test_missing_records_say_which_and_offer_rebuild(broken_cache, page):
    cache, run = broken_cache
    at = app(cache)
    at.run()
    if page != "views/overview.py":
        at.switch_page(page).run()
    assert not at.exception
    msg = " ".join(e.value for e in at.error)
    assert "records.h5" in msg and "missing" in msg and run.name in msg
    assert at.button(key="rebuild_records").label.startswith("Rebuild")
    assert at.sidebar.selectbox(key="run_picker").value == str(run)


def test_corrupt_records_say_so(broken_cache):
    cache, run = broken_cache
    (run / "records.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # an HDF5 signature, then nothing
    at = app(cache)
    at.run()
    assert not at.exception
    msg = " ".join(e.value for e in at.error)
    assert "records.h5" in msg and "corrupt" in msg
    assert at.button(key="rebuild_records")


# ---------------------------------------------------------------------------- the tiny real run
def test_overview_shows_accuracy_protocol_layers_and_data(tiny_cache, tiny_run):
    at = app(tiny_cache)
    at.run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="run_picker").value == str(tiny_run)
    assert "Mean test accuracy" in at.metric[0].label and "%" in at.metric[0].value
    assert "Protocol:" in texts(at) and "subject" in texts(at)
    layers = next(d.value for d in at.table if "receptive field (px)" in d.value.columns)
    assert list(layers["layer"])[0] == "features.conv1" and (layers["filters"] > 0).all()
    assert "Test accuracy per fold:" in texts(at)
    assert [t.label for t in at.tabs] == ["Confusion matrix", "Learning curves", "Data set"]
    # only the open tab is drawn: the confusion matrix, first
    (conf,) = at.get("vega_lite_chart")
    assert json.loads(conf.proto.spec)["title"].startswith("Confusion matrix")
    assert not at.get("image")
    assert {b.label for b in at.get("download_button")} >= {"Accuracy per fold (CSV)", "Confusion matrix (CSV)"}


@pytest.mark.parametrize("tab", ["curves", "data"])
def test_the_overview_opens_the_tab_the_address_names(tiny_cache, tab):
    at = app(tiny_cache)
    at.query_params["tab"] = tab
    at.run()
    assert_clean(at)
    buttons = {b.label for b in at.get("download_button")}
    assert "Confusion matrix (CSV)" not in buttons
    if tab == "curves":
        (curves,) = at.get("vega_lite_chart")
        assert "accuracy" in curves.proto.spec and "Learning curves (CSV)" in buttons
        at.toggle(key="overview_per_fold").set_value(True).run()  # stays on this tab, with every fold
        assert_clean(at)
        assert at.toggle(key="overview_per_fold").value is True
        assert len(at.get("vega_lite_chart")) == 1
    else:
        assert not at.get("vega_lite_chart") and len(at.get("image")) == 1
        assert {"Montage (PNG)", "Counts (CSV)"} <= buttons
    assert at.query_params.get("tab") in (tab, [tab])  # the address keeps the tab
    at.switch_page("views/filters.py").run()
    at.switch_page("views/overview.py").run()  # and so does the session, across views
    assert_clean(at)
    assert bool(at.get("image")) == (tab == "data") and bool(at.get("vega_lite_chart")) == (tab == "curves")


def test_filters_view_switches_filter_layer_and_distinct(tiny_cache):
    at = app(tiny_cache)
    at.run()
    at.switch_page("views/filters.py").run()
    assert_clean(at)
    assert "All" in texts(at) and "top" in texts(at)
    filt = at.selectbox(key="filters_filter")
    other = filt.options[1]
    filt.set_value(int(other.split(" ")[0].lstrip("#")) if isinstance(other, str) else other).run()
    assert_clean(at)
    at.toggle(key="filters_distinct").set_value(True).run()
    assert_clean(at)
    assert "(distinct)" in texts(at)
    layer = at.selectbox(key="filters_layer")
    layer.set_value(layer.options[0]).run()
    assert_clean(at)
    at.radio(key="filters_sort").set_value("cluster").run()
    at.radio(key="filters_kind").set_value("deconv").run()
    assert_clean(at)


def test_fau_map_every_statistic_and_order(tiny_cache):
    at = app(tiny_cache)
    at.run()
    at.switch_page("views/fau_map.py").run()
    assert_clean(at)
    from app.loaders import STATISTICS

    by_label = {v: k for k, v in STATISTICS.items()}
    for label in at.selectbox(key="fau_stat").options:  # options are shown in words
        at.selectbox(key="fau_stat").set_value(by_label[label]).run()
        assert_clean(at)
        for distinct in (True, False):
            at.toggle(key="fau_distinct").set_value(distinct).run()
            assert_clean(at)
    for order in ("evidence", "index", "cluster"):
        at.radio(key="fau_order").set_value(order).run()
        assert_clean(at)
    labels = {b.label for b in at.get("download_button")}
    assert "Heat map data (CSV)" in labels
    (chart,) = at.get("vega_lite_chart")
    assert set(chart.proto.selection_mode) == {"box", "cell", "kl"}  # a click, a box and a KL bar all pick


def test_fau_map_opens_the_chosen_filter(tiny_cache):
    at = app(tiny_cache)
    at.run()
    at.switch_page("views/fau_map.py").run()
    label = at.selectbox(key="fau_filter").options[-1]  # "#110 · judged by AU26 … · stage", as in the Filters view
    f = int(label.split(" ")[0].lstrip("#"))
    at.selectbox(key="fau_filter").set_value(f).run()
    at.button(key="open_filter").click().run()
    assert_clean(at)
    assert any(t.value == "Filters" for t in at.title)
    assert at.selectbox(key="filters_filter").value == int(f)


def _upload(at: AppTest, name: str, data: bytes, mime: str = "image/png") -> AppTest:
    at.file_uploader(key="upload_file").set_value((name, data, mime))
    return at.run()


def _upload_page(cache) -> AppTest:
    at = app(cache)
    at.run()
    return at.switch_page("views/upload.py").run()


def test_opening_the_upload_view_starts_loading_the_face_models(tiny_cache, monkeypatch):
    from fercore.data import landmarks

    monkeypatch.setattr(landmarks, "_PRELOAD", None)
    at = app(tiny_cache)
    at.run()
    assert landmarks._PRELOAD is None  # other views do not load them
    _ = at.switch_page("views/upload.py").run()
    assert_clean(at)
    assert landmarks._PRELOAD is not None  # loading while the user chooses a photo
    landmarks._PRELOAD.join(timeout=120)


def test_upload_a_face_photo(tiny_cache, face_png):
    at = _upload(_upload_page(tiny_cache), "astronaut.png", face_png)
    assert_clean(at)
    assert at.metric[0].label == "Predicted expression"
    t = texts(at)
    assert "Grad-CAM per class" in t and "Activation maps on the face" in t and "features.conv1" in t
    assert {"Probabilities (CSV)", "Grad-CAM (PNG)", "Aligned crop (PNG)"} <= {b.label for b in at.get("download_button")}


def _img_bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("case", ["not_an_image", "truncated", "huge"])
def test_bad_upload_is_a_message_not_a_traceback(tiny_cache, face_png, case):
    if case == "not_an_image":
        data, expect = b"name,label\nface.png,happy\n", "not an image"
    elif case == "truncated":
        data, expect = face_png[: len(face_png) // 3], "truncated or corrupt"
    else:
        data, expect = _img_bytes(Image.new("L", (8000, 8000)), "PNG"), "megapixels"
    at = _upload(_upload_page(tiny_cache), f"{case}.png", data)
    assert not at.exception
    msg = " ".join(e.value for e in at.error)
    assert f"{case}.png" in msg and expect in msg
    assert not at.metric


@pytest.mark.parametrize("mode", ["I;16", "RGBA", "CMYK", "P", "exif"])
def test_unusual_image_modes_are_decoded(tiny_cache, face_png, mode):
    rgb = Image.open(io.BytesIO(face_png)).convert("RGB")
    if mode == "I;16":
        data = _img_bytes(Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257), "PNG")
    elif mode == "CMYK":
        data = _img_bytes(rgb.convert("CMYK"), "JPEG")
    elif mode == "exif":  # stored on its side, EXIF says rotate back
        exif = Image.Exif()
        exif[0x0112] = 8
        data = _img_bytes(rgb.transpose(Image.Transpose.ROTATE_270), "JPEG", exif=exif)
    else:
        data = _img_bytes(rgb.convert(mode), "PNG")
    at = _upload(_upload_page(tiny_cache), "photo", data)
    assert_clean(at)
    assert at.metric[0].label == "Predicted expression"


def test_no_face_offers_a_centre_crop(tiny_cache):
    flat = _img_bytes(Image.new("L", (200, 160), 128), "PNG")
    at = _upload(_upload_page(tiny_cache), "wall.png", flat)
    assert not at.exception
    assert "No face found in wall.png" in " ".join(w.value for w in at.warning)
    assert not at.metric
    at.button(key="centre_crop_btn").click().run()
    assert_clean(at)
    assert "centre crop" in " ".join(w.value for w in at.warning)
    assert at.metric[0].label == "Predicted expression"


def test_several_faces_use_the_largest(tiny_cache, face_png):
    face = np.asarray(Image.open(io.BytesIO(face_png)).convert("L"))
    small = np.asarray(Image.fromarray(face).resize((256, 256)))
    canvas = np.full((512, 800), 200, np.uint8)
    canvas[:, :512] = face
    canvas[128:384, 540:796] = small
    at = _upload(_upload_page(tiny_cache), "two.png", _img_bytes(Image.fromarray(canvas), "PNG"))
    assert_clean(at)
    assert "faces found in two.png; the largest one is analysed" in " ".join(i.value for i in at.info)


# ------------------------------------------------------------------------ building and rebuilding
def test_empty_cache_builds_a_first_look_then_the_full_default_in_the_background(tiny_cache, tiny_run, tmp_path,
                                                                                  monkeypatch):
    """An empty cache: the page follows the first look (one round) with a progress bar, then opens
    the views on it, labelled partial, while the full default trains in the background; when that
    is done the session moves to the full run."""
    import shutil
    import threading

    import fercore.pipeline
    from app.loaders import background_default

    calls, go_first, go_full = [], threading.Event(), threading.Event()

    def fake_build(*, progress=None, first_look=False):  # the tiny run stands in for both builds
        progress(0, 4000, "stage")
        assert (go_first if first_look else go_full).wait(60)  # each waits until the test has looked
        for done in range(1000, 4001, 1000):
            progress(done, 4000, "stage")
        calls.append("first" if first_look else "full")
        dest = tmp_path / "runs" / (tiny_run.name + ("-first" if first_look else ""))
        shutil.copytree(tiny_run, dest)
        return dest

    monkeypatch.setattr(fercore.pipeline, "build_default", fake_build)
    at = app(tmp_path)
    at.run()
    assert not at.exception
    assert "builds the embedded default" in texts(at) and "One round is built first" in texts(at)
    go_first.set()
    from app.jobs import registry

    assert registry().latest("default", "").wait(60)
    at.run()
    assert calls == ["first"]
    assert_clean(at)
    first = str(tmp_path / "runs" / (tiny_run.name + "-first"))
    assert any(t.value == "Overview" for t in at.title)
    assert at.sidebar.selectbox(key="run_picker").value == first
    assert "First look (partial)" in texts(at)  # a view opened during the background part
    assert background_default().running and background_default().about == first
    go_full.set()
    finish_jobs(at)
    assert calls == ["first", "full"]
    assert_clean(at)
    assert at.sidebar.selectbox(key="run_picker").value == str(tmp_path / "runs" / tiny_run.name)
    assert "First look (partial)" not in texts(at)


def test_a_default_build_that_fails_after_training_says_why(tiny_run, tmp_path, monkeypatch):
    import shutil

    import fercore.pipeline

    def failing_build(*, progress=None, first_look=False):  # trained, then the recording stage fails
        dest = tmp_path / "runs" / tiny_run.name
        shutil.copytree(tiny_run, dest)
        (dest / "records.h5").unlink()
        raise OSError("No space left on device: records.h5.tmp")

    monkeypatch.setattr(fercore.pipeline, "build_default", failing_build)
    at = app(tmp_path)
    at.run()
    finish_jobs(at)
    assert not at.exception
    msg = " ".join(e.value for e in at.error)
    assert "Building a first look at the default run (one round of the training) failed" in msg and "No space left on device" in msg  # the cause
    assert "records.h5 missing" in msg and at.button(key="rebuild_records")  # and what to do


def test_rebuild_button_records_and_analyses_again(tiny_run, tmp_path):
    import shutil

    dest = tmp_path / "runs" / tiny_run.name
    shutil.copytree(tiny_run, dest)
    (dest / "records.h5").unlink()
    at = app(tmp_path)
    at.run()
    assert "records.h5 missing" in " ".join(e.value for e in at.error)
    at.button(key="rebuild_records").click().run()
    finish_jobs(at)
    assert_clean(at)
    assert (dest / "records.h5").exists()
    assert "Mean test accuracy" in at.metric[0].label


def test_build_run_is_cached_and_reports_progress_to_the_end(tiny_cache, tiny_run):

    from conftest import TINY_K, TINY_PHANTOM, TINY_TRAIN

    from fercore.pipeline import build_run, phantom_path

    seen = []
    files = {p: p.stat().st_mtime_ns for p in tiny_run.rglob("*") if p.is_file()}
    again = build_run(phantom=TINY_PHANTOM, train_options=TINY_TRAIN, k=TINY_K,
                      progress=lambda d, t, s: seen.append((d, t, s)))
    # every stage a cache hit: no file of the run written again, none added
    assert {p: p.stat().st_mtime_ns for p in tiny_run.rglob("*") if p.is_file()} == files
    assert again == tiny_run
    assert seen[-1][0] == seen[-1][1] and len({t for _, t, _ in seen}) == 1
    assert phantom_path(TINY_PHANTOM).exists() and phantom_path(TINY_PHANTOM).parent == tiny_cache / "datasets"
    assert phantom_path(TINY_PHANTOM) != phantom_path({**TINY_PHANTOM, "seed": 1})


def test_run_picker_lists_every_run_and_follows_the_run_query_parameter(tiny_run, tmp_path):
    import shutil

    for name in ("phantom-aaaa1111-zero_bias-hard-00000001", "phantom-bbbb2222-zero_bias-hard-00000002"):
        shutil.copytree(tiny_run, tmp_path / "runs" / name)
    at = app(tmp_path)
    at.query_params["run"] = "phantom-aaaa1111-zero_bias-hard-00000001"
    at.run()
    picker = at.sidebar.selectbox(key="run_picker")
    assert len(picker.options) == 2
    assert picker.value == str(tmp_path / "runs" / "phantom-aaaa1111-zero_bias-hard-00000001")
    picker.set_value(str(tmp_path / "runs" / "phantom-bbbb2222-zero_bias-hard-00000002")).run()
    at.switch_page("views/filters.py").run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="run_picker").value.endswith("00000002")
    assert at.query_params["run"] in ("phantom-bbbb2222-zero_bias-hard-00000002", ["phantom-bbbb2222-zero_bias-hard-00000002"])


def test_vanished_data_set_is_named_with_a_rebuild_offer(tiny_cache, tiny_run):
    (data,) = (tiny_cache / "datasets").glob("phantom-*.h5")
    aside = data.with_suffix(".aside")
    data.rename(aside)
    try:
        at = app(tiny_cache)
        at.run()
        assert not at.exception
        msg = " ".join(e.value for e in at.error)
        assert "data set its records were made on cannot be used" in msg and data.name in msg
        assert at.button(key="rebuild_records")
    finally:
        aside.rename(data)


def test_build_default_uses_the_default_phantom_options(monkeypatch):
    import fercore.pipeline as pipeline
    from fercore.training.presets import DEFAULT_PHANTOM

    seen = {}

    class Stop(Exception):
        pass

    def fake_ensure(options, progress):
        seen["options"] = options
        raise Stop

    monkeypatch.setattr(pipeline, "_ensure_phantom", fake_ensure)
    with pytest.raises(Stop):
        pipeline.build_default()
    assert seen["options"] == DEFAULT_PHANTOM
    assert pipeline.phantom_path() == pipeline.phantom_path(DEFAULT_PHANTOM)
