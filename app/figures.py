"""Small drawing helpers of the dashboard: image conversions, boxes, overlays, captioned tiles,
tables for display and CSV (every chart is a Vega-Lite spec of :mod:`app.charts`).

Pure functions of arrays; no file access, no models. Images are ``(H, W)`` uint8 grey or
``(H, W, 3)`` uint8 RGB.
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

#: Colour of receptive-field boxes.
BOX_RGB = (234, 88, 12)
#: How a filter's deepest stage of the funnel (0 none ... 4 in the AU's region) is shown.
STAGE_NAMES = ("none", "raw", "distinct top-K", "beyond emotion", "in the AU's region")
STAGE_MARKS = ("·", "raw", "distinct", "✓ beyond emotion", "✓ in region")
#: The same, short enough for a caption under a 72 px tile, and the legend that explains them.
STAGE_SHORT = ("-", "raw", "dist", "+emo", "+reg")
STAGE_LEGEND = ("- none, raw = raw top-K, dist = distinct top-K, +emo = beyond emotion, "
                "+reg = in the AU's region")
#: −log10 q is drawn up to this (q below 1e-12 reads as "at least 12").
NEG_LOG10_CAP = 12.0
#: A layer whose receptive field covers at least this share of the input image is shown by whole
#: faces with the field's box drawn, not by patches: a patch that large is most of the face, cut
#: off and padded with black where the field runs past the image (the default network's conv3:
#: 32 px on a 48 px face, 44 %).
FACE_TILE_SHARE = 0.4


def filter_label(f: int, au: str, stage: int) -> str:
    """What every filter picker shows for filter ``f``: ``#110 · judged by AU26 jaw drop · beyond
    emotion`` (``au``: the label of the AU it is judged by; ``stage``: the deepest stage of the
    funnel it reaches, an index into :data:`STAGE_NAMES`)."""
    return f"#{int(f)} · judged by {au} · {STAGE_NAMES[int(stage)]}"


def rf_share(rf: int, size: int) -> float:
    """The share of a ``size`` × ``size`` image that a receptive field of ``rf`` pixels covers (the
    part of the field that lies in the image, for a unit at the centre)."""
    return min(int(rf), int(size)) ** 2 / float(int(size) ** 2)


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


def sig3_style(df: pd.DataFrame, digits: int = 3):
    """A pandas Styler that writes every float of ``df`` with ``digits`` significant digits (NaN
    as "–"), for ``st.table`` (which would otherwise print floats with four decimals)."""
    fmt = {c: f"{{:.{digits}g}}" for c in df.columns if df[c].dtype.kind == "f"}
    return df.style.format(fmt, na_rep="–")


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


#: Learning-curve series in words (metrics.json keys them in snake case).
SERIES_NAMES = {"train_acc": "training accuracy", "val_acc": "validation accuracy", "test_acc": "test accuracy",
                "train_loss": "training loss", "val_loss": "validation loss"}


def series_name(key: str) -> str:
    """``train_acc`` -> ``training accuracy`` (unknown keys: underscores become spaces)."""
    if key in SERIES_NAMES:
        return SERIES_NAMES[key]
    words = {"acc": "accuracy", "val": "validation", "train": "training"}
    return " ".join(words.get(w, w) for w in str(key).split("_"))
