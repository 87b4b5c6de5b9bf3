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


def test_to_uint8_constant_and_range():
    assert figures.to_uint8(np.zeros((3, 3))).tolist() == [[128] * 3] * 3
    u = figures.to_uint8(np.array([[-1.0, 0.0, 1.0]]))
    assert u.min() == 0 and u.max() == 255


def test_confusion_figure_normalises_rows():
    fig = figures.confusion_figure(np.array([[3, 1], [0, 0]]), ["a", "b"])
    z = np.asarray(fig.data[0].z)
    assert np.allclose(z[0], [0.75, 0.25]) and np.allclose(z[1], 0)
