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


def overlay(face: np.ndarray, heat: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """(S, S, 3) uint8: a heat map (any shape, any range) resized onto a grey face, jet colours."""
    s = face.shape[0]
    h = cv2.resize(np.asarray(heat, dtype=np.float32), (face.shape[1], s), interpolation=cv2.INTER_LINEAR)
    colour = cv2.cvtColor(cv2.applyColorMap(to_uint8(h), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(to_rgb(face), 1 - alpha, colour, alpha, 0)


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
            marks: np.ndarray | None = None, height: int | None = None) -> go.Figure:
    """A plotly heat map whose cells can be selected (click, box or lasso); AU labels on the top
    axis as well as the bottom; ``marks`` (same shape, bool) draws a ring on the marked cells.
    ``diverging`` centres a red-blue scale on 0 (correlations, excess), else a sequential one."""
    z = np.asarray(z, dtype=float)
    scale = dict(colorscale="RdBu_r", zmid=0.0) if diverging else dict(colorscale="Oranges")
    fig = go.Figure(go.Heatmap(z=z, x=x, y=y, **scale, colorbar={"title": zlabel},
                               hovertemplate="%{y} × %{x}<br>" + zlabel + " %{z:.3g}<extra></extra>"))
    if marks is not None and np.any(marks):
        yi, xi = np.nonzero(np.asarray(marks, bool))
        fig.add_trace(go.Scatter(x=[x[i] for i in xi], y=[y[i] for i in yi], mode="markers", hoverinfo="skip",
                                 marker={"symbol": "circle-open", "size": 9, "color": "black", "line": {"width": 1.5}},
                                 name="beyond emotion", showlegend=False))
    fig.update_layout(title=title, height=height or max(360, 14 * len(y) + 180),
                      margin={"l": 10, "r": 10, "t": 90, "b": 10},
                      yaxis={"autorange": "reversed", "type": "category"},
                      xaxis={"type": "category", "tickangle": -45, "side": "bottom"},
                      xaxis2={"type": "category", "overlaying": "x", "side": "top", "tickangle": -45,
                              "matches": "x", "showgrid": False},
                      dragmode="select")
    fig.add_trace(go.Scatter(x=x, y=[y[0]] * len(x) if y else [], xaxis="x2", mode="markers",
                             marker={"opacity": 0}, hoverinfo="skip", showlegend=False))
    return fig


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


def curves_figure(curves: pd.DataFrame) -> go.Figure:
    """Learning curves: one line per (fold, series)."""
    fig = go.Figure()
    for (fold, series), g in curves.groupby(["fold", "series"], sort=True):
        fig.add_trace(go.Scatter(x=g["epoch"], y=g["value"], mode="lines+markers", name=f"fold {fold} {series}",
                                 legendgroup=str(series)))
    fig.update_layout(title="Learning curves", xaxis_title="epoch", yaxis_title="value", height=420,
                      margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return fig


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
