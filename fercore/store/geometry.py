"""Where the units of a recorded layer look in the input: the receptive-field box, defined once.

The geometry of a layer is computed from the model (:func:`fercore.training.models.layer_geometry`)
and stored with its records (``records.h5``, attributes of ``/layers/<layer>``), so a reader
can turn a map position into input pixels without the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LayerGeometry"]


@dataclass(frozen=True)
class LayerGeometry:
    """Where the units of one layer look in the input.

    Unit ``(i, j)`` of the layer's output map sees input pixels ``[y0, y1] x [x0, x1]``
    (inclusive) with ``x0 = round(start + j * jump - (rf - 1) / 2)``, ``x1 = x0 + rf - 1`` (rows
    likewise with ``i``); pixel centres are integers, ``round`` is numpy's (half to even). Parts
    of the box may lie in the padding.
    """

    rf: int  # receptive field side in input pixels
    jump: int  # input pixels between neighbouring units
    start: float  # input coordinate of the centre of unit 0
    out_size: int  # side of the layer's output map for the model's input size

    def boxes(self, rows, cols) -> np.ndarray:
        """(..., 4) int32 boxes x0, y0, x1, y1 (inclusive) of the units at map positions
        ``rows``, ``cols`` (integer arrays of one shape)."""
        half = (self.rf - 1) / 2
        x0 = np.round(self.start + np.asarray(cols) * self.jump - half).astype(np.int32)
        y0 = np.round(self.start + np.asarray(rows) * self.jump - half).astype(np.int32)
        return np.stack([x0, y0, x0 + self.rf - 1, y0 + self.rf - 1], -1).astype(np.int32)

    def box(self, i: int, j: int, image_size: int | None = None) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) inclusive pixel box of unit (row i, column j), clipped to the image
        when ``image_size`` is given."""
        x0, y0, x1, y1 = (int(v) for v in self.boxes(i, j))
        if image_size is not None:
            x0, y0 = max(x0, 0), max(y0, 0)
            x1, y1 = min(x1, image_size - 1), min(y1, image_size - 1)
        return x0, y0, x1, y1
