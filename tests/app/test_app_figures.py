"""The dashboard's drawing helpers: pure functions of arrays."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from app import figures


def test_draw_box_marks_exactly_the_inclusive_box_scaled():
    img = np.zeros((10, 12), np.uint8)
    out = figures.draw_box(img, (2, 3, 5, 7), scale=2)
    assert out.shape == (20, 24, 3) and out.dtype == np.uint8
    ys, xs = np.nonzero(out.any(axis=2))
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == (4, 6, 11, 15)
    assert img.max() == 0  # input untouched


def test_overlay_resizes_any_map_onto_the_face():
    face = np.full((48, 48), 100, np.uint8)
    heat = np.zeros((6, 6), np.float32)
    heat[0, 0] = 1
    out = figures.overlay(face, heat)
    assert out.shape == (48, 48, 3)
    assert not np.array_equal(out[0, 0], out[47, 47])  # hot corner differs from cold corner


@pytest.mark.parametrize("shape", [(7, 9), (7, 9, 3)])
def test_png_bytes_round_trip(shape):
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    back = cv2.imdecode(np.frombuffer(figures.png_bytes(img), np.uint8), cv2.IMREAD_UNCHANGED)
    if len(shape) == 3:
        back = cv2.cvtColor(back, cv2.COLOR_BGR2RGB)
    assert np.array_equal(back, img)


def test_tile_lays_out_rows_with_padding():
    tiles = [np.full((4, 4), i, np.uint8) for i in range(5)]
    out = figures.tile(tiles, cols=3, pad=1)
    assert out.shape == (9, 14)
    assert out[5, 5] == 4 and out[0, 4] == 255


def test_captioned_tiles_keep_colour_and_wrap_long_captions():
    red = np.zeros((20, 30, 3), np.uint8)
    red[..., 0] = 255
    grey = np.full((20, 30), 128, np.uint8)
    out = figures.captioned_tiles([red, grey, red], ["a", "b", "c"], cols=2, pad=4, lines=3)
    line = 11 + 3
    assert out.shape == (2 * (20 + 3 * line + 4) - 4, 2 * (30 + 4) - 4, 3)  # 2 x 2 cells, RGB
    assert (out[:20, :30] == red).all() and (out[:20, 34:64] == 128).all()  # tiles pasted unchanged
    one = figures.captioned_tiles([grey], ["AU1 AU2"], cols=4, lines=3)
    assert one.ndim == 2 and one.shape[1] == 30  # grey in, grey out; cols capped at the tile count
    wrapped = figures.captioned_tiles([grey], ["AU1 AU2 AU4 AU5 AU26"], cols=1, lines=3)
    ink = [(wrapped[20 + 1 + k * line: 20 + 1 + (k + 1) * line] < 128).any() for k in range(3)]
    assert ink[0] and ink[1]  # wider than the 30 px tile: it goes on in the next line
    short = figures.captioned_tiles([grey], ["AU1"], cols=1, lines=3)
    assert not (short[20 + 1 + line:] < 128).any()  # a short caption stays on one line


def test_to_uint8_constant_and_range():
    assert figures.to_uint8(np.zeros((3, 3))).tolist() == [[128] * 3] * 3
    u = figures.to_uint8(np.array([[-1.0, 0.0, 1.0]]))
    assert u.min() == 0 and u.max() == 255
