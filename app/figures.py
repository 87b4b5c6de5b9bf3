"""Small drawing helpers of the dashboard: image conversions, boxes, overlays, plotly figures.

Pure functions of arrays; no file access, no models. Images are ``(H, W)`` uint8 grey or
``(H, W, 3)`` uint8 RGB.
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import plotly.graph_objects as go

#: Colours of the dashboard (the theme's primary colour first).
ACCENT = "#c2410c"
BOX_RGB = (234, 88, 12)
#: How a filter's deepest stage of the funnel (0 none ... 4 in the AU's region) is shown.
STAGE_NAMES = ("none", "raw", "distinct top-K", "beyond emotion", "in the AU's region")
STAGE_MARKS = ("·", "raw", "distinct", "✓ beyond emotion", "✓ in region")
#: The same, short enough for a caption under a 72 px tile, and the legend that explains them.
STAGE_SHORT = ("-", "raw", "dist", "+emo", "+reg")
STAGE_LEGEND = ("- none, raw = raw top-K, dist = distinct top-K, +emo = beyond emotion, "
                "+reg = in the AU's region")
#: Height of one filter row in the FAU map (px).
ROW_PX = 14
#: −log10 q is drawn up to this (q below 1e-12 reads as "at least 12").
NEG_LOG10_CAP = 12.0


def neg_log10(q: np.ndarray, cap: float = NEG_LOG10_CAP) -> np.ndarray:
    """−log10 of q-values for display, capped at ``cap`` (NaN stays NaN)."""
    q = np.asarray(q, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.minimum(-np.log10(np.clip(q, 10.0 ** -cap, 1.0)), cap)


def class_rows(rows: list[list[np.ndarray]], *, per_class: int, size: int) -> np.ndarray:
    """One row of ``per_class`` tiles per class (missing tiles white): ``skimage.util.montage``."""
    from skimage.util import montage

    blank = np.full((size, size), 255, np.uint8)
    tiles = [t for row in rows for t in (list(row) + [blank] * (per_class - len(row)))[:per_class]]
    return montage(np.stack(tiles), grid_shape=(len(rows), per_class), fill=255).astype(np.uint8)


def to_uint8(a: np.ndarray) -> np.ndarray:
    """Scale any real array to (H, W) uint8 over its own min..max (constant -> mid grey)."""
    a = np.asarray(a, dtype=np.float32)
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if not np.isfinite(lo) or hi - lo < 1e-12:
        return np.full(a.shape, 128, np.uint8)
    return np.clip((a - lo) / (hi - lo) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """Square resize with nearest neighbour when enlarging small patches, area when shrinking."""
    img = np.asarray(img)
    if img.shape[0] == size and img.shape[1] == size:
        return img
    interp = cv2.INTER_NEAREST if img.shape[0] < size else cv2.INTER_AREA
    return cv2.resize(img, (size, size), interpolation=interp)


def to_rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    return img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=2)


def draw_box(img: np.ndarray, box, *, scale: int = 1, color=BOX_RGB, thickness: int = 1) -> np.ndarray:
    """(H*scale, W*scale, 3) uint8: the image enlarged with an inclusive x0,y0,x1,y1 box drawn."""
    rgb = to_rgb(img)
    if scale != 1:
        rgb = cv2.resize(rgb, (rgb.shape[1] * scale, rgb.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    x0, y0, x1, y1 = (int(v) for v in box)
    out = np.ascontiguousarray(rgb.copy())
    cv2.rectangle(out, (x0 * scale, y0 * scale), ((x1 + 1) * scale - 1, (y1 + 1) * scale - 1), color, thickness)
    return out


def overlay(face: np.ndarray, heat: np.ndarray, *, alpha: float = 0.5, vmin: float | None = None,
            vmax: float | None = None, fade: bool = False) -> np.ndarray:
    """(S, S, 3) uint8: a heat map (any shape) resized onto a grey face in jet colours.

    The colours span ``vmin..vmax`` (default: the map's own min..max). With ``fade`` each
    pixel's opacity grows with its value (``alpha`` at ``vmax``, none at ``vmin``), so a weak map
    leaves the face grey instead of painting it in full colour."""
    s = face.shape[0]
    h = cv2.resize(np.asarray(heat, dtype=np.float32), (face.shape[1], s), interpolation=cv2.INTER_LINEAR)
    if vmin is None and vmax is None:
        u = to_uint8(h)
    else:
        lo = float(np.nanmin(h)) if vmin is None else float(vmin)
        hi = float(np.nanmax(h)) if vmax is None else float(vmax)
        u = np.clip((h - lo) / max(hi - lo, 1e-12) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    colour = cv2.cvtColor(cv2.applyColorMap(u, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    if not fade:
        return cv2.addWeighted(to_rgb(face), 1 - alpha, colour, alpha, 0)
    a = (u.astype(np.float32) / 255.0 * alpha)[..., None]
    return np.clip(to_rgb(face) * (1 - a) + colour * a + 0.5, 0, 255).astype(np.uint8)


def colour_bar(lo: float, hi: float, *, label: str, width: int = 256, height: int = 14) -> np.ndarray:
    """(H, W, 3) uint8: the jet scale of :func:`overlay` from ``lo`` to ``hi`` with its end
    values and ``label`` written under it (for image panels, which have no axes)."""
    ramp = np.tile(np.linspace(0, 255, width).astype(np.uint8), (height, 1))
    bar = cv2.cvtColor(cv2.applyColorMap(ramp, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    out = np.full((height + 22, width + 2, 3), 255, np.uint8)
    out[1:height + 1, 1:width + 1] = bar
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.38
    lo_t, hi_t = f"{lo:.3g}", f"{hi:.3g}"
    cv2.putText(out, lo_t, (1, height + 16), font, scale, (30, 30, 30), 1, cv2.LINE_AA)
    (tw, _), _ = cv2.getTextSize(hi_t, font, scale, 1)
    cv2.putText(out, hi_t, (width + 1 - tw, height + 16), font, scale, (30, 30, 30), 1, cv2.LINE_AA)
    (lw, _), _ = cv2.getTextSize(label, font, scale, 1)
    cv2.putText(out, label, ((width - lw) // 2, height + 16), font, scale, (30, 30, 30), 1, cv2.LINE_AA)
    return out


def draw_landmarks(img: np.ndarray, landmarks: np.ndarray | None, *, regions: list[np.ndarray] | None = None,
                   scale: int = 1) -> np.ndarray:
    """(H*scale, W*scale, 3) uint8: the image with its 68 points (dots) and an AU's region
    polygons (outlines) drawn; ``landmarks`` and ``regions`` in pixels of ``img``. With
    ``landmarks`` None the image is returned enlarged, unmarked."""
    rgb = to_rgb(img)
    if scale != 1:
        rgb = cv2.resize(rgb, (rgb.shape[1] * scale, rgb.shape[0] * scale), interpolation=cv2.INTER_LINEAR)
    out = np.ascontiguousarray(rgb.copy())
    for poly in regions or []:
        pts = np.round((np.asarray(poly, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.int32)
        cv2.polylines(out, [pts.reshape(-1, 1, 2)], True, (22, 163, 74), max(1, scale // 2), cv2.LINE_AA)
    if landmarks is not None:
        r = max(1, scale // 2)
        for x, y in np.asarray(landmarks, dtype=np.float64):
            c = (int(round((x + 0.5) * scale - 0.5)), int(round((y + 0.5) * scale - 0.5)))
            cv2.circle(out, c, r, BOX_RGB, -1, cv2.LINE_AA)
    return out


def sig3(df: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """A copy with every float column rounded to ``digits`` significant digits (no float32 noise
    such as -0.30541667342185974 in tables; NaN stays NaN)."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype.kind == "f":
            v = out[c].to_numpy(dtype=float)
            with np.errstate(divide="ignore", invalid="ignore"):
                mag = np.where(np.isfinite(v) & (v != 0), np.floor(np.log10(np.abs(np.where(v == 0, 1, v)))), 0)
            factor = 10.0 ** (digits - 1 - mag)
            out[c] = np.where(np.isfinite(v), np.round(v * factor) / factor, v)
    return out


def csv_text(df: pd.DataFrame, *, index: bool = False, index_label: str | None = None) -> str:
    """CSV of a table with numbers to 3 significant digits (``%.3g``) and NaN as an empty cell."""
    return df.to_csv(index=index, index_label=index_label, float_format="%.3g")


def tile(images: list[np.ndarray], *, cols: int, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Images of one size in a grid with ``pad`` pixels between them."""
    if not images:
        return np.zeros((1, 1), np.uint8)
    rgb = images[0].ndim == 3
    h, w = images[0].shape[:2]
    rows = (len(images) + cols - 1) // cols
    shape = (rows * (h + pad) - pad, cols * (w + pad) - pad) + ((3,) if rgb else ())
    out = np.full(shape, fill, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        out[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = im
    return out


def captioned_tiles(tiles: list[np.ndarray], captions: list[str], *, cols: int, pad: int = 6,
                    font_size: int = 11, lines: int = 2) -> np.ndarray:
    """(H, W) uint8, or (H, W, 3) when the tiles are RGB: equal tiles in a grid, each with up to
    ``lines`` lines of caption under it (Pillow's built-in font; plain ASCII draws everywhere).
    A caption's ``\n`` starts a line; a line wider than the tile wraps at spaces.

    One image instead of one per tile: a browser lays out and fetches one element, not K."""
    from PIL import Image, ImageDraw, ImageFont

    if not tiles:
        return np.full((1, 1), 255, np.uint8)
    h, w = tiles[0].shape[:2]
    rgb = any(np.asarray(t).ndim == 3 for t in tiles)
    line = font_size + 3
    cols = max(1, min(cols, len(tiles)))
    cell_w, cell_h = w + pad, h + lines * line + pad
    rows = (len(tiles) + cols - 1) // cols
    canvas = Image.new("RGB" if rgb else "L", (cols * cell_w - pad, rows * cell_h - pad), (255,) * (3 if rgb else 1))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=font_size)
    ink = (40,) * (3 if rgb else 1)
    for i, (img, cap) in enumerate(zip(tiles, captions, strict=False)):
        r, c = divmod(i, cols)
        x, y = c * cell_w, r * cell_h
        a = np.asarray(img, np.uint8)
        a = to_rgb(a) if rgb else (a if a.ndim == 2 else a[..., 0])
        canvas.paste(Image.fromarray(a), (x, y))
        for k, text in enumerate(_wrap(str(cap), draw, font, w)[:lines]):
            draw.text((x, y + h + 1 + k * line), text, fill=ink, font=font)
    return np.asarray(canvas)


def _wrap(text: str, draw, font, width: int) -> list[str]:
    """``text`` as lines no wider than ``width`` pixels (words kept whole; a ``\n`` breaks)."""
    out = []
    for para in text.split("\n"):
        cur = ""
        for word in para.split(" "):
            trial = f"{cur} {word}" if cur else word
            if cur and draw.textlength(trial, font=font) > width:
                out.append(cur)
                cur = word
            else:
                cur = trial
        out.append(cur)
    return out


def png_bytes(img: np.ndarray) -> bytes:
    """PNG file bytes of a grey or RGB uint8 image (for download buttons)."""
    img = np.asarray(img)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError("could not encode the image as PNG")
    return buf.tobytes()


def heatmap(z: np.ndarray, *, x: list[str], y: list[str], title: str, zlabel: str, diverging: bool = False,
            height: int | None = None, zrange: tuple[float, float] | None = None) -> go.Figure:
    """A plain plotly heat map (AU co-occurrence, the Runs view's side-by-side maps): AU labels
    on the top axis as well as the bottom. ``diverging`` centres a red-blue scale on 0."""
    z = np.asarray(z, dtype=float)
    fig = go.Figure(go.Heatmap(z=z, x=x, y=y, **_scale(diverging, zrange), colorbar=_colorbar(zlabel, zrange),
                               hovertemplate="%{y} × %{x}<br>" + zlabel + " %{z:.3g}<extra></extra>"))
    fig.update_layout(title=title, height=height or max(360, ROW_PX * len(y) + 200),
                      margin={"l": 10, "r": 10, "t": 110, "b": 10},
                      yaxis={"autorange": "reversed", "type": "category"},
                      xaxis={"type": "category", "tickangle": -45})
    _top_labels(fig, x, xref="x")
    return fig


def _scale(diverging: bool, zrange: tuple[float, float] | None) -> dict:
    if diverging:
        lim = max(abs(zrange[0]), abs(zrange[1])) if zrange else None
        return dict(colorscale="RdBu_r", zmid=0.0, **({"zmin": -lim, "zmax": lim} if lim else {}))
    return dict(colorscale="Oranges", **({"zmin": zrange[0], "zmax": zrange[1]} if zrange else {}))


def _colorbar(zlabel: str, zrange: tuple[float, float] | None, capped: bool = False) -> dict:
    bar = {"title": {"text": zlabel, "side": "right"}, "len": 0.5, "y": 1.0, "yanchor": "top", "thickness": 14}
    if capped and zrange:
        ticks = np.linspace(zrange[0], zrange[1], 7)
        bar.update(tickvals=list(ticks), ticktext=[f"{t:g}" for t in ticks[:-1]] + [f"≥{ticks[-1]:g}"])
    return bar


def _top_labels(fig: go.Figure, x: list[str], *, xref: str) -> None:
    """The column labels once more above the plot (tall maps are read from the top)."""
    for label in x:
        fig.add_annotation(x=label, y=1.0, xref=xref, yref="paper", yanchor="bottom", text=label, showarrow=False,
                           textangle=-45, font={"size": 11}, yshift=4)


def fau_map(z: np.ndarray, *, aus: list[str], rows: list[str], filters: np.ndarray, title: str, zlabel: str,
            kl: np.ndarray, diverging: bool = False, zrange: tuple[float, float] | None = None,
            capped: bool = False, marks: np.ndarray | None = None) -> go.Figure:
    """The FAU map: filters (rows, in the given order) × AUs, a per-filter KL column beside it.

    Parameters
    ----------
    z : (F, A) float
        The values shown, rows already in display order.
    aus : list of str, length A
        Column labels (``AU12``).
    rows : list of str, length F
        Row labels (unique).
    filters : (F,) int
        The filter index of each row (returned by a selection as ``customdata``).
    kl : (F,) float
        KL selectivity of each row's filter (the column beside the map).
    zrange : (lo, hi), optional
        Fixed colour range (``capped`` writes "≥ hi" on the top tick).
    marks : (F, A) bool, optional
        Cells drawn with a ring (pairs that pass beyond emotion).

    Returns
    -------
    plotly Figure
        Cells are selectable (click, box, lasso through Streamlit's ``on_select``): an invisible
        point sits on every cell with ``customdata = (filter, AU column, value)``, because plotly's
        heat map trace itself reports no selection. A KL bar carries ``(filter, -1)``.
    """
    from plotly.subplots import make_subplots

    z = np.asarray(z, dtype=float)
    n_f, n_a = z.shape
    filters = np.asarray(filters, dtype=int)
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, column_widths=[0.86, 0.14], horizontal_spacing=0.012)
    fig.add_trace(go.Heatmap(z=z, x=aus, y=rows, **_scale(diverging, zrange), hoverinfo="skip",
                             colorbar={**_colorbar(zlabel, zrange, capped), "x": 1.01}), row=1, col=1)
    ai, fi = np.meshgrid(np.arange(n_a), np.arange(n_f))
    # One point per cell, drawn as (empty) text rather than as markers: the browser draws 2,304
    # transparent SVG markers (conv3) in about a second and WebGL ones erratically in software, while
    # text points cost about nothing; hover, click and box / lasso selection work the same.
    fig.add_trace(go.Scatter(x=[aus[a] for a in ai.ravel()], y=[rows[r] for r in fi.ravel()], mode="text",
                             customdata=np.stack([filters[fi.ravel()], ai.ravel(), z.ravel()], axis=1),
                             hovertemplate="%{y} × %{x}<br>" + zlabel + " %{customdata[2]:.3g}<extra></extra>",
                             showlegend=False, name="cells"),
                  row=1, col=1)
    if marks is not None and np.any(marks):
        yi, xi = np.nonzero(np.asarray(marks, bool))
        fig.add_trace(go.Scatter(x=[aus[i] for i in xi], y=[rows[i] for i in yi], mode="markers", hoverinfo="skip",
                                 marker={"symbol": "circle-open", "size": 9, "color": "black", "line": {"width": 1.5}},
                                 name="beyond emotion", showlegend=False), row=1, col=1)
    kl = np.asarray(kl, dtype=float)
    fig.add_trace(go.Bar(x=kl, y=rows, orientation="h", marker_color="#64748b", showlegend=False, name="KL",
                         customdata=np.stack([filters, np.full(n_f, -1)], axis=1),
                         hovertemplate="%{y}<br>KL selectivity %{x:.3g}<extra></extra>"), row=1, col=2)
    fig.update_layout(title={"text": title, "y": 0.995, "yanchor": "top"},
                      height=max(360, ROW_PX * n_f + 230), margin={"l": 10, "r": 10, "t": 120, "b": 10},
                      bargap=0.15)
    # Fixed ranges: autorange would pad for the (invisible) markers, shifting the cells off the
    # plot area's edges.
    fig.update_yaxes(range=[n_f - 0.5, -0.5], autorange=False, type="category", row=1, col=1)
    fig.update_xaxes(range=[-0.5, n_a - 0.5], autorange=False, type="category", tickangle=-45, row=1, col=1)
    fig.update_xaxes(title_text="KL selectivity", row=1, col=2, side="bottom")
    _top_labels(fig, aus, xref="x")
    fig.add_annotation(x=0.5, y=1.0, xref="x2 domain", yref="paper", yanchor="bottom", text="KL", showarrow=False,
                       font={"size": 11}, yshift=4)
    return fig


def selected_cells(event) -> list[tuple[int, int]]:
    """(filter, AU column) of every cell a selection event of :func:`fau_map` names, in the order
    given (a KL bar gives (filter, -1)); points of other traces are ignored."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        points = getattr(getattr(event, "selection", None), "points", None) or []
    out = []
    for p in points or []:
        cd = p.get("customdata") if isinstance(p, dict) else None
        if isinstance(cd, dict):
            cd = [cd.get("0"), cd.get("1")]
        if not isinstance(cd, list | tuple) or len(cd) < 2 or cd[0] is None or cd[1] is None:
            continue
        try:
            cell = (int(cd[0]), int(cd[1]))
        except (TypeError, ValueError):
            continue
        if cell not in out:
            out.append(cell)
    return out


def confusion_figure(conf: np.ndarray, class_names: list[str]) -> go.Figure:
    """Row-normalised confusion matrix (true rows, predicted columns) with counts in the cells."""
    conf = np.asarray(conf, dtype=float)
    rows = conf.sum(axis=1, keepdims=True)
    norm = np.divide(conf, rows, out=np.zeros_like(conf), where=rows > 0)
    fig = go.Figure(go.Heatmap(z=norm, x=list(class_names), y=list(class_names), colorscale="Oranges", zmin=0, zmax=1,
                               text=conf.astype(int), texttemplate="%{text}",
                               colorbar={"title": "share of row"},
                               hovertemplate="true %{y} → predicted %{x}<br>%{text} images<extra></extra>"))
    fig.update_layout(title="Confusion matrix (all test folds)", xaxis_title="predicted", yaxis_title="true",
                      yaxis={"autorange": "reversed"}, height=420, margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return fig


#: Learning-curve series in words (metrics.json keys them in snake case).
SERIES_NAMES = {"train_acc": "training accuracy", "val_acc": "validation accuracy", "test_acc": "test accuracy",
                "train_loss": "training loss", "val_loss": "validation loss"}
_SERIES_COLOURS = ("#c2410c", "#2563eb", "#16a34a", "#9333ea")


def series_name(key: str) -> str:
    """``train_acc`` -> ``training accuracy`` (unknown keys: underscores become spaces)."""
    if key in SERIES_NAMES:
        return SERIES_NAMES[key]
    words = {"acc": "accuracy", "val": "validation", "train": "training"}
    return " ".join(words.get(w, w) for w in str(key).split("_"))


def curves_figure(curves: pd.DataFrame, *, per_fold: bool = False) -> go.Figure:
    """Learning curves in two panels, accuracy and loss: the mean over folds with a band of ± one
    standard deviation, and (``per_fold``) each fold's own line.

    ``curves`` is long: columns ``fold``, ``epoch``, ``series`` (in words), ``value``."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("Accuracy", "Loss"), horizontal_spacing=0.1)
    for i, (series, g) in enumerate(curves.groupby("series", sort=True)):
        col = 2 if "loss" in str(series) else 1
        colour = _SERIES_COLOURS[i % len(_SERIES_COLOURS)]
        stats = g.groupby("epoch")["value"].agg(["mean", "std", "count"]).reset_index()
        sd = stats["std"].fillna(0.0)
        lo, hi = stats["mean"] - sd, stats["mean"] + sd
        band = _rgba(colour, 0.18)
        fig.add_trace(go.Scatter(x=stats["epoch"], y=hi, mode="lines", line={"width": 0}, hoverinfo="skip",
                                 showlegend=False, legendgroup=str(series)), row=1, col=col)
        fig.add_trace(go.Scatter(x=stats["epoch"], y=lo, mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor=band, hoverinfo="skip", showlegend=False, legendgroup=str(series)),
                      row=1, col=col)
        n = int(stats["count"].max())
        fig.add_trace(go.Scatter(x=stats["epoch"], y=stats["mean"], mode="lines+markers", line={"color": colour},
                                 name=f"{series} (mean ± sd, {n} folds)", legendgroup=str(series),
                                 hovertemplate=f"{series}<br>epoch %{{x}}: %{{y:.3g}}<extra></extra>"),
                      row=1, col=col)
        if per_fold:
            for fold, gf in g.groupby("fold", sort=True):
                fig.add_trace(go.Scatter(x=gf["epoch"], y=gf["value"], mode="lines",
                                         line={"color": colour, "width": 0.8}, opacity=0.45, showlegend=False,
                                         legendgroup=str(series),
                                         hovertemplate=f"fold {fold} {series}<br>epoch %{{x}}: %{{y:.3g}}<extra></extra>"),
                              row=1, col=col)
    fig.update_xaxes(title_text="epoch", dtick=1)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(title_text="loss", rangemode="tozero", row=1, col=2)
    fig.update_layout(title="Learning curves", height=420, margin={"l": 10, "r": 10, "t": 70, "b": 10},
                      legend={"orientation": "h", "y": -0.25})
    return fig


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def bars(values: np.ndarray, labels: list[str], *, title: str, base: np.ndarray | None = None,
         base_name: str = "base rate", value_name: str = "value") -> go.Figure:
    """Horizontal bars (optionally beside base rates)."""
    fig = go.Figure(go.Bar(y=labels, x=np.asarray(values, dtype=float), orientation="h", name=value_name,
                           marker_color=ACCENT))
    if base is not None:
        fig.add_trace(go.Bar(y=labels, x=np.asarray(base, dtype=float), orientation="h", name=base_name,
                             marker_color="#94a3b8"))
    fig.update_layout(title=title, barmode="group", height=max(260, 22 * len(labels) + 120),
                      yaxis={"autorange": "reversed"}, margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return fig


def frames_player(images: np.ndarray, *, captions: list[str], size: int = 192) -> go.Figure:
    """A sequence's frames as one figure with a frame slider and a play button (plotly
    animation: it plays in the browser, no rerun per frame). ``images`` (T, S, S) uint8."""
    t = len(images)
    big = [resize(im, size) for im in images]

    def trace(i: int) -> go.Image:
        return go.Image(z=to_rgb(big[i]), hoverinfo="skip")

    fig = go.Figure(data=[trace(0)], frames=[go.Frame(data=[trace(i)], name=str(i)) for i in range(t)])
    steps = [{"args": [[str(i)], {"frame": {"duration": 0, "redraw": True}, "mode": "immediate"}],
              "label": str(i), "method": "animate"} for i in range(t)]
    fig.update_layout(
        height=size + 150, width=size + 80, margin=dict(l=10, r=10, t=30, b=10),
        title=dict(text=captions[0] if captions else "", font=dict(size=12)),
        xaxis=dict(visible=False), yaxis=dict(visible=False),
        updatemenus=[{"type": "buttons", "direction": "left", "x": 0.0, "y": -0.02, "xanchor": "left", "yanchor": "top",
                      "buttons": [
                          {"label": "▶ play", "method": "animate",
                           "args": [None, {"frame": {"duration": 180, "redraw": True}, "fromcurrent": True}]},
                          {"label": "❚❚", "method": "animate",
                           "args": [[None], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate"}]}]}],
        sliders=[{"active": 0, "steps": steps, "x": 0.32, "len": 0.68, "y": -0.02, "yanchor": "top",
                  "currentvalue": {"prefix": "frame "}, "pad": {"t": 0}}],
    )
    for i, fr in enumerate(fig.frames):
        fr.layout = go.Layout(title=dict(text=captions[i] if i < len(captions) else ""))
    return fig


def time_panels(panels: list[tuple[str, dict[str, np.ndarray], str]], *, frame: int | None = None,
                phases: np.ndarray | None = None) -> go.Figure:
    """Stacked line panels over frames sharing the frame axis: each ``(title, {series: (T,)
    values}, y label)``; a dashed line at ``frame``; the apex frames (or the micro-expression's
    frames) shaded when ``phases`` marks them (:data:`fercore.data.faceset.PHASE_CODES`)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=[p[0] for p in panels])
    colours = ("#c2410c", "#2563eb", "#16a34a", "#9333ea", "#0891b2", "#ca8a04", "#db2777", "#4b5563")
    for r, (_, series, ylabel) in enumerate(panels, start=1):
        for j, (name, y) in enumerate(series.items()):
            y = np.asarray(y, dtype=float)
            fig.add_trace(go.Scatter(x=np.arange(len(y)), y=y, mode="lines+markers", name=name,
                                     legendgroup=str(r), line=dict(color=colours[j % len(colours)]),
                                     marker=dict(size=4)), row=r, col=1)
        fig.update_yaxes(title_text=ylabel, row=r, col=1)
    if phases is not None:
        apex = np.flatnonzero(np.isin(np.asarray(phases), (2, 4)))
        if len(apex):
            fig.add_vrect(x0=apex.min() - 0.5, x1=apex.max() + 0.5, fillcolor="#fde68a", opacity=0.3, line_width=0)
    if frame is not None:
        fig.add_vline(x=frame, line_dash="dash", line_color="#6b7280")
    fig.update_xaxes(title_text="frame", row=len(panels), col=1)
    fig.update_layout(height=230 * len(panels) + 40, margin=dict(l=60, r=20, t=40, b=40),
                      legend=dict(tracegroupgap=140))
    return fig
