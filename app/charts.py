"""Vega-Lite specs of the dashboard's charts, drawn by ``st.vega_lite_chart``.

Pure functions of arrays and tables that return a spec (a dict; its tables ride in
``spec["datasets"]`` as data frames, which Streamlit sends as Arrow). Vega-Lite draws a chart in
one pass (more than 2,000 marks on a canvas), where Streamlit's plotly component drew each chart
twice when it mounted (docs/dashboard.md, "Reading these figures"); the chart's menu saves it as
PNG.

Grids (the FAU map, co-occurrence, confusion) put rows and columns on integer positions with the
labels written by the axes, so that a box drawn over the map (an interval selection) names the
cells under it: :func:`selected_cells` turns either selection of :func:`fau_map` into
``(filter, AU column)`` pairs.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

#: Colours of the dashboard (the theme's primary colour first), and of series in order.
ACCENT = "#c2410c"
SERIES_COLOURS = ("#c2410c", "#2563eb", "#16a34a", "#9333ea", "#0891b2", "#ca8a04", "#db2777", "#4b5563")
#: Height of one filter row in the FAU map (px), width of one AU column.
ROW_PX = 14
COL_PX = 30
#: Cells without a value (an AU the layer cannot be tested for).
MISSING = "#e5e7eb"
_SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"
#: Every spec's sizing: ``width`` and ``height`` are the plot's own, and axes, legends and titles
#: come on top ("fit", Streamlit's default for single views, would shrink the plot to make room).
_PAD = {"type": "pad"}
#: Grids: no ARIA description per mark (Vega would build a text for each of a map's 2,000+ cells
#: on every draw, in its CSP-safe expression interpreter; Streamlit draws on a canvas, which has
#: none), and no filter of invalid positions (cell positions are always numbers).
_GRID_CONFIG = {"view": {"stroke": None}, "aria": False, "mark": {"invalid": "show"}}


def _finite(a) -> np.ndarray:
    """Floats, flat, with inf as NaN: Streamlit sends NaN as null, which the charts draw as
    :data:`MISSING` (or leave out)."""
    a = np.asarray(a, dtype=float).ravel()
    return np.where(np.isfinite(a), a, np.nan)


def _labels(names: list[str]) -> str:
    """A Vega expression mapping an axis position to its label."""
    return f"{json.dumps([str(n) for n in names], ensure_ascii=False)}[datum.value] || ''"


def _colour(field: str, title: str, *, diverging: bool, zrange: tuple[float, float] | None,
            capped: bool = False) -> dict:
    """A continuous colour encoding: oranges, or red-blue centred on 0 when ``diverging``; a fixed
    ``zrange`` keeps colours comparable between layers and runs; ``capped`` writes "≥" on the top."""
    scale: dict = {"scheme": "oranges"}
    if diverging:
        lim = max(abs(zrange[0]), abs(zrange[1])) if zrange else None
        scale = {"scheme": "redblue", "reverse": True, "domainMid": 0.0, **({"domain": [-lim, lim]} if lim else {})}
    elif zrange:
        scale["domain"] = [float(zrange[0]), float(zrange[1])]
    legend: dict = {"title": title, "orient": "right", "gradientLength": 220}
    if capped and zrange:
        legend["labelExpr"] = f"datum.value >= {zrange[1]:g} ? '≥' + datum.label : datum.label"
    return {"condition": {"test": f"!isValid(datum.{field})", "value": MISSING},
            "field": field, "type": "quantitative", "scale": {**scale, "clamp": True}, "legend": legend}


def _grid_axes(n_cols: int, n_rows: int, cols: list[str], rows: list[str], *, col_title: str | None,
               row_title: str | None, col_angle: int = -45) -> tuple[dict, dict]:
    """Position encodings of a grid: ``col`` and ``row`` on integer positions, each cell spanning
    ±0.5; the labels come from the axes."""
    x = {"field": "x0", "type": "quantitative", "title": col_title,
         "scale": {"domain": [-0.5, n_cols - 0.5], "nice": False, "zero": False},
         "axis": {"values": list(range(n_cols)), "labelExpr": _labels(cols), "grid": False, "labelAngle": col_angle,
                  "labelAlign": "right" if col_angle else "center", "labelOverlap": False, "orient": "bottom",
                  "ticks": False, "domain": False}}
    y = {"field": "y0", "type": "quantitative", "title": row_title,
         "scale": {"domain": [-0.5, n_rows - 0.5], "nice": False, "zero": False, "reverse": True},
         "axis": {"values": list(range(n_rows)), "labelExpr": _labels(rows), "grid": False, "labelOverlap": False,
                  "ticks": False, "domain": False, "labelLimit": 220}}
    return x, y


def _cells(z: np.ndarray, rows: list[str], cols: list[str], *, row_field: str = "row_name",
           col_field: str = "col_name") -> pd.DataFrame:
    """One row per cell of ``z``: ``row``, ``col``, its span ``x0..x1`` / ``y0..y1``, ``value``,
    and the row's and column's names (in ``row_field`` and ``col_field``)."""
    z = np.asarray(z, dtype=float)
    n_r, n_c = z.shape
    ri, ci = np.divmod(np.arange(n_r * n_c), n_c)
    return pd.DataFrame({"row": ri, "col": ci, "x0": ci - 0.5, "x1": ci + 0.5, "y0": ri - 0.5, "y1": ri + 0.5,
                         "value": _finite(z), row_field: np.asarray(rows, dtype=object)[ri],
                         col_field: np.asarray(cols, dtype=object)[ci]})


def _top_labels(names: list[str], x: dict, y: dict, *, angle: int = -45) -> dict:
    """A layer that writes the column labels above the grid (tall maps are read from the top),
    with a row of data of its own (one datum per column). ``x`` and ``y`` are the grid's position
    encodings (a layer that shares an axis must repeat its definition, or Vega-Lite thins the
    labels)."""
    return {"data": {"values": [{"col": i, "label": str(n)} for i, n in enumerate(names)]},
            "mark": {"type": "text", "align": "left" if angle else "center", "baseline": "middle",
                     "angle": 360 + angle if angle else 0, "dy": -8, "dx": 4 if angle else 0, "fontSize": 11,
                     "color": "#4b5563"},
            "encoding": {"x": {**x, "field": "col"}, "y": {**{k: v for k, v in y.items() if k != "field"}, "datum": -0.5},
                         "text": {"field": "label"}}}


def heatmap(z: np.ndarray, *, x: list[str], y: list[str], title: str, zlabel: str, diverging: bool = False,
            zrange: tuple[float, float] | None = None, capped: bool = False, height: int | None = None,
            cell_width: int = COL_PX) -> dict:
    """A plain heat map (AU co-occurrence, the Runs view's side-by-side maps): column labels on
    the top axis as well as the bottom, the value on hover."""
    z = np.asarray(z, dtype=float)
    n_r, n_c = z.shape
    xe, ye = _grid_axes(n_c, n_r, x, y, col_title=None, row_title=None)
    cells = _cells(z, y, x)
    base = {"mark": {"type": "rect"},
            "encoding": {"x": xe, "x2": {"field": "x1"}, "y": ye, "y2": {"field": "y1"},
                         "color": _colour("value", zlabel, diverging=diverging, zrange=zrange, capped=capped),
                         "tooltip": [{"field": "row_name", "title": "row"}, {"field": "col_name", "title": "column"},
                                     {"field": "value", "title": zlabel, "format": ".3g"}]}}
    return {"$schema": _SCHEMA, "autosize": _PAD, "title": title, "datasets": {"cells": cells}, "data": {"name": "cells"},
            "width": max(200, cell_width * n_c), "height": height or max(200, ROW_PX * n_r),
            "layer": [base, _top_labels(x, xe, ye)], "config": _GRID_CONFIG}


def fau_map(z: np.ndarray, *, aus: list[str], rows: list[str], filters: np.ndarray, title: str, zlabel: str,
            kl: np.ndarray, diverging: bool = False, zrange: tuple[float, float] | None = None,
            capped: bool = False, marks: np.ndarray | None = None) -> dict:
    """The FAU map: filters (rows, in the given order) × AUs, a per-filter KL column beside it.

    Parameters
    ----------
    z : (F, A) float
        The values shown, rows already in display order.
    aus : list of str, length A
        Column labels (``AU12``).
    rows : list of str, length F
        Row labels.
    filters : (F,) int
        The filter index of each row.
    kl : (F,) float
        KL selectivity of each row's filter (the bars beside the map).
    zrange : (lo, hi), optional
        Fixed colour range (``capped`` writes "≥ hi" on the top of the legend).
    marks : (F, A) bool, optional
        Cells drawn with a ring (pairs that pass beyond emotion).

    Returns
    -------
    Vega-Lite spec with three selections for ``st.vega_lite_chart(on_select="rerun")``: ``cell``
    (a click on a cell: its ``filter`` and ``col``), ``box`` (a box dragged over the map: its
    ``x0`` and ``y0`` ranges in cell positions) and ``kl`` (a click on a bar: its ``filter``).
    """
    z = np.asarray(z, dtype=float)
    n_f, n_a = z.shape
    filters = np.asarray(filters, dtype=int)
    xe, ye = _grid_axes(n_a, n_f, aus, rows, col_title=None, row_title=None)
    cells = _cells(z, rows, aus, col_field="au")
    cells = cells.assign(filter=filters[cells["row"]])
    rings = cells[np.zeros(z.size, bool) if marks is None else np.asarray(marks, bool).ravel()]
    height = ROW_PX * n_f
    tooltip = [{"field": "filter", "title": "filter"}, {"field": "au", "title": "AU"},
               {"field": "value", "title": zlabel, "format": ".3g"}]
    heat = {"mark": {"type": "rect", "strokeWidth": 2},
            "params": [{"name": "cell", "select": {"type": "point", "fields": ["filter", "col"], "toggle": "event.shiftKey"}},
                       {"name": "box", "select": {"type": "interval", "encodings": ["x", "y"], "clear": "dblclick"}}],
            "encoding": {"x": xe, "x2": {"field": "x1"}, "y": ye, "y2": {"field": "y1"},
                         "color": _colour("value", zlabel, diverging=diverging, zrange=zrange, capped=capped),
                         "stroke": {"condition": {"param": "cell", "empty": False, "value": "#111827"}, "value": None},
                         "tooltip": tooltip}}
    ring = {"data": {"name": "rings"},
            "mark": {"type": "point", "shape": "circle", "filled": False, "color": "#111827", "size": 70,
                     "strokeWidth": 1.5},
            "encoding": {"x": {**xe, "field": "col"}, "y": {**ye, "field": "row"}, "tooltip": tooltip}}
    layers = [heat, _top_labels(aus, xe, ye)] + ([ring] if len(rings) else [])
    bars = pd.DataFrame({"row": np.arange(n_f), "filter": filters, "name": rows, "kl": _finite(kl),
                         "y0": np.arange(n_f) - 0.4, "y1": np.arange(n_f) + 0.4, "zero": 0.0})
    kl_view = {"data": {"name": "kl"}, "width": 110, "height": height,
               "mark": {"type": "rect", "color": "#64748b"},
               "params": [{"name": "kl", "select": {"type": "point", "fields": ["filter"]}}],
               "encoding": {"x": {"field": "zero", "type": "quantitative", "title": "KL selectivity",
                                  "axis": {"orient": "top", "tickCount": 3, "grid": False}},
                            "x2": {"field": "kl"},
                            "y": {"field": "y0", "type": "quantitative", "axis": None,
                                  "scale": {"domain": [-0.5, n_f - 0.5], "nice": False, "zero": False, "reverse": True}},
                            "y2": {"field": "y1"},
                            "opacity": {"condition": {"param": "kl", "empty": True, "value": 1.0}, "value": 0.4},
                            "tooltip": [{"field": "name", "title": "row"}, {"field": "kl", "title": "KL selectivity",
                                                                            "format": ".3g"}]}}
    return {"$schema": _SCHEMA, "autosize": _PAD, "title": {"text": title, "anchor": "start"},
            "datasets": {"cells": cells, "kl": bars, **({"rings": rings} if len(rings) else {})},
            "hconcat": [{"data": {"name": "cells"}, "width": max(240, COL_PX * n_a), "height": height,
                         "layer": layers}, kl_view],
            "spacing": 8, "config": _GRID_CONFIG}


def selected_cells(event, filters: np.ndarray, n_cols: int) -> list[tuple[int, int]]:
    """(filter, AU column) of every cell a selection of :func:`fau_map` names: a clicked cell,
    the cells under a box (centres inside it, in row order) or a KL bar's filter as (filter, -1).
    ``filters`` is the filter of each row in display order."""
    sel = _get(event, "selection") or {}
    filters = np.asarray(filters, dtype=int)
    out: list[tuple[int, int]] = []

    def add(cell):
        if cell not in out:
            out.append(cell)

    for p in _get(sel, "cell") or []:
        try:
            add((int(p["filter"]), int(p["col"])))
        except (KeyError, TypeError, ValueError):
            continue
    box = _get(sel, "box") or {}
    xs, ys = _get(box, "x0"), _get(box, "y0")
    if xs and ys and len(xs) == 2 and len(ys) == 2:
        x_lo, x_hi = sorted(float(v) for v in xs)
        y_lo, y_hi = sorted(float(v) for v in ys)
        for r in range(len(filters)):
            if y_lo <= r <= y_hi:
                for c in range(n_cols):
                    if x_lo <= c <= x_hi:
                        add((int(filters[r]), c))
    for p in _get(sel, "kl") or []:
        try:
            add((int(p["filter"]), -1))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def _get(d, key):
    try:
        return d[key]
    except (KeyError, TypeError, IndexError):
        return getattr(d, key, None)


def confusion(conf: np.ndarray, class_names: list[str]) -> dict:
    """Row-normalised confusion matrix (true rows, predicted columns) with the counts in the cells."""
    conf = np.asarray(conf, dtype=float)
    totals = conf.sum(axis=1, keepdims=True)
    norm = np.divide(conf, totals, out=np.zeros_like(conf), where=totals > 0)
    names = list(class_names)
    n = len(names)
    xe, ye = _grid_axes(n, n, names, names, col_title="predicted", row_title="true", col_angle=-30)
    cells = _cells(norm, names, names, row_field="true", col_field="predicted").assign(count=conf.astype(int).ravel())
    tooltip = [{"field": "true"}, {"field": "predicted"}, {"field": "count", "title": "images"},
               {"field": "value", "title": "share of row", "format": ".3g"}]
    return {"$schema": _SCHEMA, "autosize": _PAD, "title": "Confusion matrix (all test folds)", "datasets": {"cells": cells},
            "data": {"name": "cells"}, "width": 360, "height": 330,
            "layer": [{"mark": "rect", "encoding": {"x": xe, "x2": {"field": "x1"}, "y": ye, "y2": {"field": "y1"},
                                                    "color": _colour("value", "share of row", diverging=False,
                                                                     zrange=(0.0, 1.0)),
                                                    "tooltip": tooltip}},
                      {"mark": {"type": "text", "fontSize": 11},
                       "encoding": {"x": {**xe, "field": "col"}, "y": {**ye, "field": "row"},
                                    "text": {"field": "count"},
                                    "color": {"condition": {"test": "datum.value > 0.6", "value": "white"},
                                              "value": "#111827"},
                                    "tooltip": tooltip}}]}


def curves(frame: pd.DataFrame, *, per_fold: bool = False) -> dict:
    """Learning curves in two panels, accuracy and loss: the mean over folds with a band of ± one
    standard deviation, and (``per_fold``) each fold's own line.

    ``frame`` is long: columns ``fold``, ``epoch``, ``series`` (in words), ``value``."""
    stats = (frame.groupby(["series", "epoch"])["value"].agg(["mean", "std", "count"]).reset_index())
    stats["std"] = stats["std"].fillna(0.0)
    stats = stats.assign(lo=stats["mean"] - stats["std"], hi=stats["mean"] + stats["std"])
    folds = int(stats["count"].max()) if len(stats) else 0
    stats["panel"] = _panel(stats["series"])
    stats["series"] = stats["series"] + f" (mean ± sd, {folds} folds)"
    names = sorted(stats["series"].unique())
    colour = {"field": "series", "type": "nominal", "title": None,
              "scale": {"domain": names, "range": list(SERIES_COLOURS[:len(names)])},
              "legend": {"orient": "bottom", "columns": 2, "labelLimit": 320, "symbolOpacity": 1}}

    def panel(kind: str, title: str) -> dict:
        keep = {"filter": {"field": "panel", "equal": kind}}
        y_scale = {"zero": True} if kind == "loss" else {"domain": [0, 1.02], "nice": False}
        x = {"field": "epoch", "type": "quantitative", "title": "epoch", "axis": {"tickMinStep": 1}}
        layers = [{"data": {"name": "stats"}, "transform": [keep], "mark": {"type": "area", "opacity": 0.18},
                   "encoding": {"x": x, "y": {"field": "lo", "type": "quantitative", "title": kind, "scale": y_scale},
                                "y2": {"field": "hi"}, "color": colour}},
                  {"data": {"name": "stats"}, "transform": [keep], "mark": {"type": "line", "point": True},
                   "encoding": {"x": x, "y": {"field": "mean", "type": "quantitative"}, "color": colour,
                                "tooltip": [{"field": "series"}, {"field": "epoch"},
                                            {"field": "mean", "format": ".3g"}, {"field": "std", "title": "sd",
                                                                                 "format": ".3g"}]}}]
        if per_fold:
            layers.append({"data": {"name": "folds"}, "transform": [keep],
                           "mark": {"type": "line", "strokeWidth": 0.8, "opacity": 0.45},
                           "encoding": {"x": x, "y": {"field": "value", "type": "quantitative"},
                                        "detail": {"field": "fold", "type": "nominal"}, "color": colour,
                                        "tooltip": [{"field": "fold"}, {"field": "series"}, {"field": "epoch"},
                                                    {"field": "value", "format": ".3g"}]}})
        return {"title": title, "width": 210, "height": 220, "layer": layers}

    datasets = {"stats": stats}
    if per_fold:
        datasets["folds"] = frame.assign(series=frame["series"] + f" (mean ± sd, {folds} folds)",
                                         panel=_panel(frame["series"]))
    return {"$schema": _SCHEMA, "autosize": _PAD, "title": "Learning curves", "datasets": datasets,
            "hconcat": [panel("accuracy", "Accuracy"), panel("loss", "Loss")]}


def _panel(series: pd.Series) -> pd.Series:
    """Which learning-curve panel a series belongs to: "loss" or "accuracy"."""
    return series.astype(str).str.contains("loss").map({True: "loss", False: "accuracy"})


def bars(values: dict[str, np.ndarray], labels: list[str], *, title: str, horizontal: bool = True,
         value_title: str = "value", domain: tuple[float, float] | None = None) -> dict:
    """Bars per label, one bar per series side by side (``values``: series name -> (L,) values in
    the order of ``labels``); the first series in the accent colour."""
    names = list(values)
    frame = pd.DataFrame([{"label": str(lab), "series": s, "value": v}
                          for s in names for lab, v in zip(labels, _finite(values[s]), strict=True)])
    colours = [ACCENT, "#94a3b8"] + list(SERIES_COLOURS[1:]) if len(names) <= 2 else list(SERIES_COLOURS)
    value = {"field": "value", "type": "quantitative", "title": value_title,
             **({"scale": {"domain": list(domain), "nice": False}} if domain else {})}
    cat = {"field": "label", "type": "nominal", "sort": [str(lab) for lab in labels], "title": None,
           "axis": {"labelLimit": 260, "labelOverlap": False}}
    enc = {"color": {"field": "series", "type": "nominal", "title": None, "sort": names,
                     "scale": {"domain": names, "range": colours[:len(names)]},
                     "legend": {"orient": "bottom"} if len(names) > 1 else None},
           "tooltip": [{"field": "label", "title": "what"}, {"field": "series"}, {"field": "value", "format": ".3g"}]}
    offset = {"field": "series", "type": "nominal", "sort": names} if len(names) > 1 else None
    if horizontal:
        enc.update(y=cat, x=value, **({"yOffset": offset} if offset else {}))
        size = {"height": max(120, len(labels) * (14 + 8 * len(names))), "width": 460}
    else:
        enc.update(x={**cat, "axis": {"labelAngle": -30, "labelOverlap": False}}, y=value, **({"xOffset": offset} if offset else {}))
        size = {"height": 240, "width": max(320, 24 * len(labels) * len(names))}
    return {"$schema": _SCHEMA, "autosize": _PAD, "title": title, "datasets": {"bars": frame}, "data": {"name": "bars"},
            "mark": {"type": "bar"}, "encoding": enc, **size}


def time_panels(panels: list[tuple[str, dict[str, np.ndarray], str]], *, frame: int | None = None,
                phases: np.ndarray | None = None, width: int = 560) -> dict:
    """Stacked line panels over frames sharing the frame axis: each ``(title, {series: (T,)
    values}, y label)``; a dashed rule at ``frame``; the apex frames (or the micro-expression's
    frames) shaded when ``phases`` marks them (:data:`fercore.data.faceset.PHASE_CODES`).

    The chart is ``width`` px of plot plus the y axis (at least 40 px, alike in every panel), nothing beside
    it: each panel's legend stands above its plot, at most three entries a row, so the plots line
    up frame for frame and the chart's width does not grow with the series' names (a legend at the
    right was cut off in a column). The frame rides in its own dataset (``"frame"``), so charts of the
    same series at another frame differ in data only."""
    plot_px = int(width)
    datasets: dict[str, pd.DataFrame] = {}
    views = []
    n_frames = max((len(y) for _, series, _ in panels for y in series.values()), default=1)
    apex = np.flatnonzero(np.isin(np.asarray(phases), (2, 4))) if phases is not None else np.array([], int)
    for i, (title, series, ylabel) in enumerate(panels):
        rows = [{"frame": t, "series": name, "value": v} for name, y in series.items()
                for t, v in enumerate(_finite(y))]
        datasets[f"p{i}"] = pd.DataFrame(rows, columns=["frame", "series", "value"])
        x = {"field": "frame", "type": "quantitative", "title": "frame" if i == len(panels) - 1 else None,
             "axis": {"tickMinStep": 1}, "scale": {"domain": [-0.5, n_frames - 0.5], "nice": False}}
        layers = []
        if len(apex):
            layers.append({"data": {"values": [{"a": float(apex.min()) - 0.5, "b": float(apex.max()) + 0.5}]},
                           "mark": {"type": "rect", "color": "#fde68a", "opacity": 0.4},
                           "encoding": {"x": {"field": "a", "type": "quantitative"}, "x2": {"field": "b"}}})
        layers.append({"data": {"name": f"p{i}"}, "mark": {"type": "line", "point": {"size": 16}},
                       "encoding": {"x": x, "y": {"field": "value", "type": "quantitative", "title": ylabel,
                                                  "axis": {"minExtent": 40}},
                                    "color": {"field": "series", "type": "nominal", "title": None,
                                              "scale": {"range": list(SERIES_COLOURS)}, "sort": list(series),
                                              "legend": {"orient": "top", "direction": "horizontal", "columns": 3,
                                                         "labelLimit": max(60, plot_px // 3 - 40),
                                                         "offset": 4}},
                                    "tooltip": [{"field": "series"}, {"field": "frame"},
                                                {"field": "value", "format": ".3g"}]}})
        if frame is not None:
            layers.append({"data": {"name": "frame"},
                           "mark": {"type": "rule", "strokeDash": [4, 3], "color": "#6b7280"},
                           "encoding": {"x": {"field": "f", "type": "quantitative"}}})
        views.append({"title": title, "width": plot_px, "height": 150, "layer": layers,
                      "resolve": {"scale": {"color": "independent"}}})
    if frame is not None:
        datasets["frame"] = pd.DataFrame({"f": [int(frame)]})
    # padding: Vega's estimate of the rotated y titles' size falls 2-3 px short of the browser's
    return {"$schema": _SCHEMA, "autosize": _PAD, "padding": {"left": 9, "right": 5, "top": 5, "bottom": 5},
            "datasets": datasets, "vconcat": views,
            "resolve": {"scale": {"color": "independent"}, "legend": {"color": "independent"}}}


def gallery(image: str, size: tuple[int, int], tiles: pd.DataFrame, *, current: int | None) -> dict:
    """A grid of filters drawn as one image, with a clickable cell over each filter.

    Parameters
    ----------
    image : str
        The grid as a PNG data URI (one image: a browser fetches and draws one element, not one per
        filter).
    size : (width, height)
        The image's size in pixels; the chart draws it 1:1.
    tiles : DataFrame
        One row per filter: ``filter``, its cell's box ``x0``, ``y0``, ``x1``, ``y1`` in pixels of
        the image, and the tooltip's ``AU judged`` and ``stage reached``.
    current : int, optional
        The filter whose cell is framed (the one open beside the gallery).

    Returns
    -------
    Vega-Lite spec with one selection for ``st.vega_lite_chart(on_select=...)``: ``tile`` (a click
    on a cell: its ``filter``, read by :func:`selected_filter`). The clicked cell is framed at once
    in the browser; ``current``'s frame shows while nothing is clicked or it is the clicked one.
    """
    w, h = (int(v) for v in size)
    px = {"type": "quantitative", "scale": None, "axis": None}  # positions in pixels of the image
    box = {"x": {**px, "field": "x0"}, "x2": {"field": "x1"}, "y": {**px, "field": "y0"}, "y2": {"field": "y1"}}
    frame = tiles[tiles["filter"] == current] if current is not None else tiles.iloc[:0]
    tooltip = [{"field": "filter"}, {"field": "AU judged"}, {"field": "stage reached"}]
    return {"$schema": _SCHEMA, "autosize": _PAD, "width": w, "height": h,
            "datasets": {"tiles": tiles, "current": frame},
            "layer": [
                {"data": {"values": [{"url": image}]},
                 "mark": {"type": "image", "x": 0, "y": 0, "width": w, "height": h, "align": "left",
                          "baseline": "top", "smooth": False},
                 "encoding": {"url": {"field": "url", "type": "nominal"}}},
                {"data": {"name": "current"}, "mark": {"type": "rect", "fill": None, "stroke": ACCENT,
                                                       "strokeWidth": 3},
                 "encoding": {**box, "opacity": {"condition": {"param": "tile", "empty": True, "value": 1},
                                                 "value": 0}}},
                {"data": {"name": "tiles"},
                 "mark": {"type": "rect", "fill": "#ffffff", "fillOpacity": 0.001, "strokeWidth": 3,
                          "cursor": "pointer"},
                 "params": [{"name": "tile", "select": {"type": "point", "fields": ["filter"]}}],
                 "encoding": {**box, "tooltip": tooltip,
                              "stroke": {"condition": {"param": "tile", "empty": False, "value": ACCENT},
                                         "value": None}}},
            ],
            "config": {**_GRID_CONFIG, "view": {"stroke": None}}}


def selected_filter(event) -> int | None:
    """The filter a click on :func:`gallery` names (None when nothing is selected)."""
    for p in _get(_get(event, "selection") or {}, "tile") or []:
        try:
            return int(p["filter"])
        except (KeyError, TypeError, ValueError):
            continue
    return None


def class_probabilities(probs: np.ndarray, class_names: list[str], *, title: str = "Class probabilities") -> dict:
    """Horizontal bars of a face's class probabilities, each written at its bar, that fit the
    column they are drawn in (``st.vega_lite_chart(..., width="stretch")``): the plot takes the
    container's width less its labels (``"width": "container"``, autosize ``fit-x``; the height is
    the plot's own), where :func:`bars` is a fixed 460 px of plot. ``probs`` (C,) in
    ``class_names``' order, on a 0-1 axis."""
    names = [str(c) for c in class_names]
    frame = pd.DataFrame({"class": names, "probability": _finite(probs)})
    frame["text"] = [f"{p:.2f}" if np.isfinite(p) else "" for p in frame["probability"]]
    y = {"field": "class", "type": "nominal", "sort": names, "title": None,
         "axis": {"labelLimit": 120, "labelOverlap": False}}
    x = {"field": "probability", "type": "quantitative", "title": "probability",
         "scale": {"domain": [0.0, 1.0], "nice": False}}
    tooltip = [{"field": "class"}, {"field": "probability", "format": ".3g"}]

    def text(inside: bool) -> dict:  # the value right of a short bar, inside the end of a long one
        return {"mark": {"type": "text", "baseline": "middle", "align": "right" if inside else "left",
                         "dx": -3 if inside else 3, "color": "#ffffff" if inside else "#374151"},
                "transform": [{"filter": f"datum.probability {'>=' if inside else '<'} 0.8"}],
                "encoding": {"x": x, "y": y, "text": {"field": "text"}}}

    return {"$schema": _SCHEMA, "autosize": {"type": "fit-x", "contains": "padding"}, "title": title,
            "width": "container", "height": max(120, 22 * len(names)), "datasets": {"probs": frame}, "data": {"name": "probs"},
            "layer": [{"mark": {"type": "bar", "color": ACCENT}, "encoding": {"x": x, "y": y, "tooltip": tooltip}},
                      text(False), text(True)]}
