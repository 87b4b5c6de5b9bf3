"""The Filters view's gallery and the picks that rerun only a fragment, driven by AppTest.

A browser reports a click on a chart (a Vega-Lite selection) as the chart's new widget value, and
an interaction with a widget inside a fragment as a rerun of that fragment alone. AppTest has
neither (it reruns the whole page, and a chart is no widget to it), so :func:`click_chart` sends
what the browser sends: the widget states with the chart's selection and, for a widget inside a
fragment, the fragment's id (:func:`fragment_run`)."""

from __future__ import annotations

import json
from contextlib import contextmanager
from functools import partial

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest
from test_app import _keep_cache_env, app, assert_clean, texts  # noqa: F401 (the autouse fixture)

LAYER = "features.conv3"


# ------------------------------------------------------------------------------ how a browser talks
@contextmanager
def _fragment_scoped(at: AppTest, key: str):
    """While open, ``at``'s runs are what a browser asks for after an interaction inside the
    fragment ``key``: a rerun of that fragment alone (Streamlit's ``RerunData.fragment_id``)."""
    import streamlit.testing.v1.local_script_runner as lsr
    from streamlit.runtime.scriptrunner import RerunData

    ids = list(at._fragment_storage._ids_by_target_key.get(key, {}))  # the fragment registered by the last run
    assert len(ids) == 1, f"fragment {key!r} not drawn by the last run ({ids})"
    original = lsr.RerunData
    lsr.RerunData = partial(RerunData, fragment_id_queue=ids)
    try:
        yield
    finally:
        lsr.RerunData = original


def fragment_run(at: AppTest, key: str) -> AppTest:
    """Run ``at`` (its widgets as set) as the rerun of fragment ``key`` alone."""
    with _fragment_scoped(at, key):
        return at.run()


def chart(at: AppTest, prefix: str):
    """The chart whose key starts with ``prefix``."""
    (c,) = [c for c in at.get("vega_lite_chart") if (c.key or "").startswith(prefix)]
    return c


def click_chart(at: AppTest, element, selection: dict, *, fragment: str | None = None,
                selected: tuple = ()) -> AppTest:
    """Send what a browser sends when a selection of chart ``element`` changes to ``selection``
    (``{param: value}``; None: no chart changes): every widget's state with the chart's new value
    and the selections ``selected`` ((chart element, selection), ...) that charts hold, as a
    rerun of ``fragment`` when the widget is inside one."""
    states = at._tree.get_widget_states()
    for el, sel in [*selected, *([(element, selection)] if element is not None else [])]:
        w = states.widgets.add()
        w.id = el.proto.id
        w.string_value = json.dumps({"selection": sel})
    if fragment is None:
        return at._run(states)
    with _fragment_scoped(at, fragment):
        return at._run(states)


def runs(at: AppTest) -> dict:
    return dict(at.session_state["fercore_runs"])


def filters_page(tiny_cache) -> AppTest:
    at = app(tiny_cache)
    at.run()
    at.switch_page("views/filters.py").run()
    at.selectbox(key="filters_layer").set_value(LAYER).run()
    assert_clean(at)
    return at


def other_filter(at: AppTest, picker: str) -> int:
    """A filter that the picker ``picker`` does not show now (read from its labels)."""
    sb = at.selectbox(key=picker)
    return next(int(lab.split(" ")[0].lstrip("#")) for lab in sb.options if int(lab.split(" ")[0].lstrip("#")) != sb.value)


def heading(at: AppTest, f: int) -> str:
    return f"{LAYER} filter #{f} under the controls"


# ----------------------------------------------------------------------------------- the gallery
def test_a_tile_click_opens_that_filter_rerunning_only_the_fragment(tiny_cache):
    at = filters_page(tiny_cache)
    before = runs(at)
    target = other_filter(at, "filters_filter")
    assert heading(at, target) not in texts(at)
    click_chart(at, chart(at, "filters_gallery"), {"tile": [{"filter": target}]}, fragment="filters_pick")
    assert not at.exception, [e.value for e in at.exception]
    after = runs(at)
    assert after["filters"] == before["filters"]  # the layer's controls did not run again
    assert after["filters_pick"] == before["filters_pick"] + 1
    assert at.selectbox(key="filters_filter").value == target
    assert heading(at, target) in texts(at)
    assert any(s.value.startswith(f"{LAYER} filter #{target}: top") for s in at.subheader)
    ev = _evidence(tiny_cache)
    judged = int(ev["au_ids"][int(ev["judged"][target])])
    assert at.selectbox(key="filters_verdict_au").value == judged  # judged by its own AU first
    at.run()  # a full run afterwards shows the same filter
    assert_clean(at)
    assert at.selectbox(key="filters_filter").value == target
    assert at.query_params.get("filter") in (str(target), [str(target)])


def test_a_filter_pick_reruns_only_the_fragment(tiny_cache):
    at = filters_page(tiny_cache)
    before = runs(at)
    key = chart(at, "filters_gallery").key
    target = other_filter(at, "filters_filter")
    at.selectbox(key="filters_filter").set_value(target)
    fragment_run(at, "filters_pick")
    assert not at.exception, [e.value for e in at.exception]
    after = runs(at)
    assert after["filters"] == before["filters"] and after["filters_pick"] == before["filters_pick"] + 1
    assert heading(at, target) in texts(at)
    assert any(s.value == f"Filter #{target}: AU profile against the base rates" for s in at.subheader)
    assert chart(at, "filters_gallery").key == key  # nothing was clicked in it: the same chart, framing the pick
    assert at.session_state["filters_gallery_framed"] == target


def test_a_tile_clicked_again_after_a_pick_opens_it(tiny_cache):
    """A browser keeps a clicked tile selected and reports a second click on it as no change: a
    pick of another filter meanwhile draws a gallery with nothing selected."""
    at = filters_page(tiny_cache)
    before = runs(at)["filters"]
    gallery = chart(at, "filters_gallery")
    tile = other_filter(at, "filters_filter")
    click_chart(at, gallery, {"tile": [{"filter": tile}]}, fragment="filters_pick")
    assert at.selectbox(key="filters_filter").value == tile
    gallery = chart(at, "filters_gallery")
    picked = other_filter(at, "filters_filter")
    at.selectbox(key="filters_filter").set_value(picked)
    click_chart(at, None, {}, fragment="filters_pick", selected=((gallery, {"tile": [{"filter": tile}]}),))
    assert at.selectbox(key="filters_filter").value == picked
    renewed = chart(at, "filters_gallery")
    assert renewed.key != gallery.key and renewed.proto.selection_mode == ["tile"]
    click_chart(at, renewed, {"tile": [{"filter": tile}]}, fragment="filters_pick")
    assert at.selectbox(key="filters_filter").value == tile
    assert runs(at)["filters"] == before


def test_a_layer_change_runs_the_whole_view(tiny_cache):
    at = filters_page(tiny_cache)
    before = runs(at)["filters"]
    at.selectbox(key="filters_layer").set_value("features.conv1").run()
    assert_clean(at)
    assert runs(at)["filters"] == before + 1


def test_the_details_stand_beside_the_gallery(tiny_cache):
    at = filters_page(tiny_cache)
    f = at.selectbox(key="filters_filter").value
    cols = at.columns
    left = [i for i, c in enumerate(cols) if any((getattr(ch, "key", None) or "").startswith("filters_gallery")
                                                  for ch in _walk(c))]
    right = [i for i, c in enumerate(cols) if any(getattr(ch, "value", None) == heading(at, f) for ch in _walk(c))]
    assert len(left) == 1 and len(right) == 1 and right[0] == left[0] + 1  # gallery left, the open filter right
    assert len(at.get("vega_lite_chart")) == 2  # the gallery and the AU profile


def _walk(block):
    for ch in getattr(block, "children", {}).values():
        yield ch
        yield from _walk(ch)


def test_open_filter_from_the_fau_map_shows_its_details(tiny_cache):
    at = app(tiny_cache)
    at.run()
    at.switch_page("views/fau_map.py").run()
    at.selectbox(key="fau_layer").set_value(LAYER).run()
    target = other_filter(at, "fau_filter")
    at.selectbox(key="fau_filter").set_value(target).run()
    at.button(key="open_filter").click().run()
    assert_clean(at)
    assert any(t.value == "Filters" for t in at.title)
    assert at.selectbox(key="filters_filter").value == target
    assert heading(at, target) in texts(at)
    cols = at.columns  # beside the gallery, at the top of the page (not under it)
    assert any(any(getattr(ch, "value", None) == heading(at, target) for ch in _walk(c)) for c in cols)
    # and the page is brought to it (a page switched to may keep the scroll offset of the one before)
    assert any("filter-details" in h.proto.body for h in at.get("html"))
    at.run()
    assert not any("filter-details" in h.proto.body for h in at.get("html"))  # once, not on every run


def test_one_picker_label_in_both_views(tiny_cache):
    from app import figures

    at = filters_page(tiny_cache)
    in_filters = list(at.selectbox(key="filters_filter").options)
    at.switch_page("views/fau_map.py").run()
    in_map = list(at.selectbox(key="fau_filter").options)
    assert in_filters == in_map  # both in evidence order, with the same words
    ev = _evidence(tiny_cache)
    f = int(ev["order_evidence"][0])
    from fercore.data.facs import au_name

    want = figures.filter_label(f, au_name(int(ev["au_ids"][int(ev["judged"][f])])), int(ev["stage"][f].max()))
    assert in_filters[0] == want and want.startswith(f"#{f} · judged by AU")


def test_a_heat_map_click_reruns_only_the_pick(tiny_cache):
    at = app(tiny_cache)
    at.run()
    at.switch_page("views/fau_map.py").run()
    at.selectbox(key="fau_layer").set_value(LAYER).run()
    at.selectbox(key="fau_stat").set_value("share").run()
    assert_clean(at)
    before = runs(at)
    target = other_filter(at, "fau_filter")
    col = 2
    click_chart(at, chart(at, "fau_heatmap"), {"cell": [{"filter": target, "col": col}]}, fragment="fau_pick")
    assert not at.exception, [e.value for e in at.exception]
    after = runs(at)
    assert after["fau_map"] == before["fau_map"] and after["fau_pick"] == before["fau_pick"] + 1
    assert at.selectbox(key="fau_filter").value == target
    ev = _evidence(tiny_cache)
    assert at.selectbox(key="fau_au").value == int(ev["au_ids"][col])
    assert any(b.label == f"Open filter #{target} in the Filters view" for b in at.button)


# --------------------------------------------------------------------------------- the pieces
def _evidence(tiny_cache):
    from fercore.store.reader import open_run

    (run,) = [d for d in (tiny_cache / "runs").iterdir() if d.is_dir()]
    return open_run(run).evidence(LAYER)


@pytest.mark.parametrize("layer, faces", [("features.conv1", False), ("features.conv3", True)])
def test_gallery_tiles(tiny_cache, layer, faces):
    """conv3 (a 32 px receptive field on 48 px faces) is shown by faces with the field's box, conv1
    by patches; every filter has one cell, in the order asked for, inside the image."""
    import cv2

    from app import figures, loaders
    from fercore.store.reader import open_run

    (run,) = [d for d in (tiny_cache / "runs").iterdir() if d.is_dir()]
    stamp = loaders.records_stamp(str(run))
    g = loaders.filter_gallery(str(run), stamp, layer, "patch", "evidence")
    r = open_run(run)
    assert g["faces"] is faces and g["rf"] == r.geometry(layer).rf
    assert figures.rf_share(g["rf"], 48) >= figures.FACE_TILE_SHARE if faces else \
        figures.rf_share(g["rf"], 48) < figures.FACE_TILE_SHARE
    tiles = g["tiles"]
    assert list(tiles["filter"]) == [int(f) for f in r.evidence(layer)["order_evidence"]]
    w, h = g["size"]
    assert (tiles["x0"] >= -2).all() and (tiles["x1"] <= w + 2).all() and (tiles["y1"] <= h + 2).all()
    assert (tiles["x1"] > tiles["x0"]).all() and (tiles["y1"] > tiles["y0"]).all()
    img = cv2.imdecode(np.frombuffer(g["png"], np.uint8), cv2.IMREAD_UNCHANGED)
    assert img.shape[:2] == (h, w)
    orange = (img.ndim == 3) and bool((np.abs(img[..., ::-1].astype(int) - figures.BOX_RGB).sum(axis=2) < 60).any())
    assert orange is faces  # the receptive field's box is drawn on faces only
    assert g["uri"].startswith("data:image/png;base64,")


def test_gallery_spec_and_its_selection():
    from app import charts

    tiles = pd.DataFrame({"filter": [5, 2], "x0": [0, 70], "y0": [0, 0], "x1": [64, 134], "y1": [92, 92],
                          "AU judged": ["AU12", "AU4"], "stage reached": ["raw", "none"]})
    spec = charts.gallery("data:image/png;base64,AAAA", (134, 92), tiles, current=2)
    assert spec["width"] == 134 and spec["height"] == 92
    assert list(spec["datasets"]["current"]["filter"]) == [2]
    (clickable,) = [lay for lay in spec["layer"] if "params" in lay]
    assert clickable["params"][0]["name"] == "tile" and clickable["params"][0]["select"]["fields"] == ["filter"]
    assert charts.gallery("x", (1, 1), tiles, current=None)["datasets"]["current"].empty
    assert charts.selected_filter({"selection": {"tile": [{"filter": 5}]}}) == 5
    assert charts.selected_filter({"selection": {"tile": []}}) is None
    assert charts.selected_filter(None) is None
    assert charts.selected_filter({"selection": {"tile": [{"x": 1}]}}) is None


def test_filter_label_and_rf_share():
    from app import figures

    assert figures.filter_label(110, "AU26 jaw drop", 3) == "#110 · judged by AU26 jaw drop · beyond emotion"
    assert figures.rf_share(32, 48) == pytest.approx(32 ** 2 / 48 ** 2)
    assert figures.rf_share(100, 48) == 1.0


def test_streamlit_has_what_the_views_use():
    """The fragment keys (``st.fragment(key=...)``, ``st.rerun(key)``) and horizontal containers
    the views rely on (Streamlit 1.56 had neither)."""
    import inspect

    assert "key" in inspect.signature(st.fragment).parameters
    assert "horizontal" in inspect.signature(st.container).parameters
