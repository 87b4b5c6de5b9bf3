"""The dashboard's Vega-Lite specs: what each chart shows and what its selections return."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from app import charts


def _layers(spec: dict) -> list[dict]:
    """Every unit view of a spec (layers of layers and concatenations flattened)."""
    out = []
    for key in ("layer", "hconcat", "vconcat"):
        for child in spec.get(key, []):
            out += _layers(child)
    if "mark" in spec:
        out.append(spec)
    return out


def _fau(marks=None):
    z = np.arange(12, dtype=float).reshape(4, 3)
    z[2, 1] = np.nan
    return z, charts.fau_map(z, aus=["AU1", "AU2", "AU4"], rows=["#3 ·", "#0 ·", "#2 ·", "#1 ·"],
                             filters=np.array([3, 0, 2, 1]), title="t", zlabel="share", kl=np.arange(4.0),
                             zrange=(0.0, 12.0), capped=True, marks=marks)


def test_fau_map_cells_carry_filter_column_value_and_the_kl_bars_their_filter():
    z, spec = _fau()
    cells = spec["datasets"]["cells"]
    assert list(zip(cells["filter"][:4], cells["col"][:4], strict=True)) == [(3, 0), (3, 1), (3, 2), (0, 0)]
    assert cells["value"][1] == z[0, 1] and pd.isna(cells["value"][7])  # sent as null (Arrow), drawn grey
    assert list(cells["au"][:3]) == ["AU1", "AU2", "AU4"]
    bars = spec["datasets"]["kl"]
    assert list(bars["filter"]) == [3, 0, 2, 1] and list(bars["kl"]) == [0.0, 1.0, 2.0, 3.0]
    params = {p["name"]: p["select"]["type"] for v in _layers(spec) for p in v.get("params", [])}
    assert params == {"cell": "point", "box": "interval", "kl": "point"}
    json.dumps({k: v for k, v in spec.items() if k != "datasets"})  # the rest is plain JSON


def test_fau_map_labels_every_row_and_column_on_both_sides_and_rings_marked_cells():
    _, spec = _fau(marks=np.eye(4, 3, dtype=bool))
    heat = spec["hconcat"][0]["layer"][0]
    y_axis = heat["encoding"]["y"]["axis"]
    assert y_axis["values"] == [0, 1, 2, 3] and "#3 ·" in y_axis["labelExpr"] and y_axis["labelOverlap"] is False
    top = spec["hconcat"][0]["layer"][1]
    assert top["mark"]["type"] == "text" and [d["label"] for d in top["data"]["values"]] == ["AU1", "AU2", "AU4"]
    ring = spec["hconcat"][0]["layer"][2]
    assert ring["mark"]["shape"] == "circle" and ring["data"] == {"name": "rings"}
    rings = spec["datasets"]["rings"]  # the marked cells only, not a filter over every cell
    assert list(zip(rings["row"], rings["col"], rings["filter"], strict=True)) == [(0, 0, 3), (1, 1, 0), (2, 2, 2)]
    assert spec["config"]["aria"] is False  # no per-cell description text built on every draw
    assert "≥" in heat["encoding"]["color"]["legend"]["labelExpr"]  # a capped scale says so
    assert spec["autosize"] == {"type": "pad"}  # the plot keeps its 14 px rows


def test_a_map_without_marks_has_no_ring_layer():
    _, spec = _fau()
    assert len(spec["hconcat"][0]["layer"]) == 2 and "rings" not in spec["datasets"]


def test_selected_cells_reads_clicks_boxes_and_kl_bars():
    filters = np.array([3, 0, 2, 1])
    click = {"selection": {"cell": [{"filter": 3, "col": 1}, {"filter": 0, "col": 2}, {"filter": 3, "col": 1}]}}
    assert charts.selected_cells(click, filters, 3) == [(3, 1), (0, 2)]
    # a box from the middle of row 1 to row 2, over columns 0 and 1 (cell centres inside it count)
    box = {"selection": {"cell": [], "box": {"x0": [-0.2, 1.3], "y0": [0.6, 2.4]}}}
    assert charts.selected_cells(box, filters, 3) == [(0, 0), (0, 1), (2, 0), (2, 1)]
    assert charts.selected_cells({"selection": {"box": {"x0": [0.2, 0.4], "y0": [0.2, 0.4]}}}, filters, 3) == []
    assert charts.selected_cells({"selection": {"kl": [{"filter": 2}]}}, filters, 3) == [(2, -1)]
    assert charts.selected_cells(None, filters, 3) == []
    assert charts.selected_cells({"selection": {"cell": [{"filter": None, "col": 1}, {"x": 1}]}}, filters, 3) == []


def test_confusion_matrix_is_row_normalised_with_counts():
    spec = charts.confusion(np.array([[3, 1], [0, 0]]), ["a", "b"])
    cells = spec["datasets"]["cells"]
    assert np.allclose(cells["value"], [0.75, 0.25, 0, 0]) and list(cells["count"]) == [3, 1, 0, 0]
    assert list(cells["true"]) == ["a", "a", "b", "b"] and list(cells["predicted"]) == ["a", "b", "a", "b"]
    enc = spec["layer"][0]["encoding"]
    assert enc["x"]["title"] == "predicted" and enc["y"]["title"] == "true"
    assert enc["color"]["scale"]["domain"] == [0.0, 1.0]


def _curves_frame() -> pd.DataFrame:
    return pd.DataFrame([{"fold": f, "epoch": e, "series": s, "value": v + f}
                         for f in range(3) for e in (1, 2) for s, v in (("training accuracy", 0.5),
                                                                         ("training loss", 2.0))])


def test_learning_curves_are_accuracy_and_loss_panels_of_mean_and_sd():
    spec = charts.curves(_curves_frame())
    assert [p["title"] for p in spec["hconcat"]] == ["Accuracy", "Loss"]
    stats = spec["datasets"]["stats"]
    acc = stats[stats["panel"] == "accuracy"]
    assert np.allclose(acc["mean"], 1.5) and np.allclose(acc["std"], 1.0)  # folds 0.5, 1.5, 2.5
    assert set(stats["series"]) == {"training accuracy (mean ± sd, 3 folds)", "training loss (mean ± sd, 3 folds)"}
    assert "folds" not in spec["datasets"]
    with_folds = charts.curves(_curves_frame(), per_fold=True)
    assert len(with_folds["datasets"]["folds"]) == 12 and len(with_folds["hconcat"][0]["layer"]) == 3


def test_bars_put_series_side_by_side_in_the_given_order():
    spec = charts.bars({"share": np.array([0.2, np.nan]), "base rate": np.array([0.1, 0.3])}, ["AU2", "AU1"],
                       title="t", domain=(0.0, 1.0))
    frame = spec["datasets"]["bars"]
    assert list(frame["series"]) == ["share", "share", "base rate", "base rate"] and pd.isna(frame["value"][1])
    assert spec["encoding"]["y"]["sort"] == ["AU2", "AU1"] and spec["encoding"]["yOffset"]["field"] == "series"
    single = charts.bars({"probability": np.array([0.9, 0.1])}, ["happy", "sad"], title="p")
    assert "yOffset" not in single["encoding"] and single["encoding"]["color"]["legend"] is None


def test_time_panels_share_the_frame_axis_and_mark_frame_and_apex():
    spec = charts.time_panels([("A", {"f1": np.arange(4.0)}, "activation"), ("B", {"AU1": np.ones(4)}, "intensity")],
                              frame=2, phases=np.array([0, 1, 2, 3]))
    assert [v["title"] for v in spec["vconcat"]] == ["A", "B"]
    marks = [layer["mark"]["type"] for layer in spec["vconcat"][0]["layer"]]
    assert marks == ["rect", "line", "rule"]  # apex shading, the series, the chosen frame
    assert list(spec["datasets"]["p0"]["value"]) == [0.0, 1.0, 2.0, 3.0]
