"""Receptive fields of any network's layers, measured: which input pixels can change a unit.

For the project's own ``FERNet`` the geometry is computed from the layer chain
(:func:`fercore.training.models.layer_geometry`). For any other network it is measured on the
network itself, which needs no table of operators and follows residual adds, depthwise
convolutions, asymmetric ("same") padding, transposes and anything else the graph does:

1. Every row of a random input is set, in turn, to a huge value (+1e30 and -1e30: one sign gets
   through any ReLU), and the network runs up to the deepest layer; a unit whose output changes
   (or becomes infinite or NaN) depends on that row. Columns likewise. A unit's rows form an
   interval ``[lo_i, hi_i]``; units whose interval touches no border of the image give the field
   exactly: ``rf = hi - lo + 1``, ``jump = lo_{i+1} - lo_i``, ``start = lo_i + (rf - 1) / 2 -
   i * jump`` (:class:`fercore.store.geometry.LayerGeometry`), checked on every unit.
2. A layer whose every unit sees the whole image (rf larger than the input) is measured again on
   taller (for rows) and wider (for columns) inputs, 2, 4, 8 times the side, up to the deepest
   such layer only.

Why not the gradient of a unit: at one input, a ReLU that is off or a max-pool's choice zeroes
the gradient of pixels that do belong to the field; a huge value in the field always changes the
unit. Measured on ``FERNet`` this gives exactly ``layer_geometry`` (tested), and the gradient of a
unit of a residual network lies inside the box (tested).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fercore.recording.hooks import LayerCapture
from fercore.store.geometry import LayerGeometry

__all__ = ["FieldError", "measure_geometry"]

#: The probe value: large enough that a pixel's influence survives any chain of small weights
#: (or overflows to inf / NaN, which counts as a change too).
_PROBE = 1e30
#: Largest input side tried for a layer whose field exceeds the image.
_MAX_SIDE = 1024


class FieldError(ValueError):
    """A layer's receptive field could not be measured exactly."""


def measure_geometry(module: nn.Module, layers: list[str], *, size: int, channels: int,
                     device: torch.device | str | None = None, batch: int = 64) -> dict[str, tuple[LayerGeometry, str]]:
    """The receptive field of every unit of ``layers``, measured by influence.

    Parameters
    ----------
    module : nn.Module
        In eval mode.
    layers : list of str
        Dotted module names; their outputs are (N, F, h, w) maps (or (N, F) vectors: one unit).
    size : int
        The network's input side S.
    channels : int
    device : optional
    batch : int
        Probe images per forward pass.

    Returns
    -------
    dict of layer to (LayerGeometry, method)
        ``method`` is ``"influence"`` (measured exactly), or ``"whole image"`` for a layer whose
        units each depend on every pixel at every input size tried (a global operation such as
        squeeze-and-excitation before it, or a network that takes no larger input): its box is
        the whole image and its units' centres are spread evenly over it.
    """
    dev = torch.device(device) if device is not None else next(iter(module.parameters()), torch.zeros(0)).device
    g = torch.Generator().manual_seed(0)
    out: dict[str, tuple[LayerGeometry, str]] = {}
    rows = _influence(module, layers, size, size, channels, axis=0, device=dev, batch=batch, gen=g)
    cols = _influence(module, layers, size, size, channels, axis=1, device=dev, batch=batch, gen=g)
    todo = []
    for name in layers:
        m_r, n_r = rows[name]
        m_c, n_c = cols[name]
        fr, fc = _fit(m_r, size), _fit(m_c, size)
        if fr is not None and fc is not None:
            out[name] = (_geometry(fr, fc, n_r), "influence")
        else:
            todo.append(name)
    side = size
    while todo and side * 2 <= _MAX_SIDE:
        side *= 2
        try:
            rows = _influence(module, todo, side, size, channels, axis=0, device=dev, batch=batch, gen=g)
            cols = _influence(module, todo, size, side, channels, axis=1, device=dev, batch=batch, gen=g)
        except Exception:  # a network whose graph fixes its input size: no larger probe
            break
        left = []
        for name in todo:
            fr, fc = _fit(rows[name][0], side), _fit(cols[name][0], side)
            if fr is not None and fc is not None:
                n_out = _out_size(module, name, size, channels, dev)
                out[name] = (_geometry(fr, fc, n_out), "influence")
            else:
                left.append(name)
        todo = left
    for name in todo:
        n_out = _out_size(module, name, size, channels, dev)
        jump = max(1, size // max(n_out, 1))
        start = (size - 1) / 2 - (n_out - 1) * jump / 2
        out[name] = (LayerGeometry(rf=size, jump=jump, start=float(start), out_size=n_out), "whole image")
    return {name: out[name] for name in layers}


def _geometry(fr, fc, n_out: int) -> LayerGeometry:
    """One geometry for both axes (square kernels and strides); the larger field when they differ."""
    rf = max(fr[0], fc[0])
    jump = fr[1]
    start = fr[2] - (rf - fr[0]) / 2
    return LayerGeometry(rf=int(rf), jump=int(jump), start=float(start), out_size=int(n_out))


def _out_size(module, name, size, channels, dev) -> int:
    x = torch.zeros(1, channels, size, size, device=dev)
    with torch.no_grad(), LayerCapture(module, [name], stop=True) as cap:
        cap.run(x)
        t = cap.outputs[name]
    return int(t.shape[2]) if t.dim() == 4 else 1


def _influence(module, layers, height, width, channels, *, axis, device, batch, gen) -> dict:
    """For each layer, (M, n_out): ``M[p, i]`` whether setting input row (axis 0) or column
    (axis 1) ``p`` to +-1e30 changes some unit at output row (column) ``i``."""
    base = torch.randn(1, channels, height, width, generator=gen).to(device)
    n = height if axis == 0 else width
    with torch.no_grad(), LayerCapture(module, layers, stop=True) as cap:
        cap.run(base)
        ref = {k: _as_map(v) for k, v in cap.outputs.items()}
        hits = {k: np.zeros((n, r.shape[2 + axis]), bool) for k, r in ref.items()}
        probes = [(p, s) for p in range(n) for s in (1.0, -1.0)]
        for lo in range(0, len(probes), batch):
            chunk = probes[lo:lo + batch]
            x = base.expand(len(chunk), -1, -1, -1).clone()
            for j, (p, s) in enumerate(chunk):
                if axis == 0:
                    x[j, :, p, :] = s * _PROBE
                else:
                    x[j, :, :, p] = s * _PROBE
            cap.run(x)
            for name, r in ref.items():
                o = _as_map(cap.outputs[name])
                scale = float(r.abs().max()) + 1e-12
                changed = ~torch.isclose(o, r.expand_as(o), rtol=1e-4, atol=1e-5 * scale) | ~torch.isfinite(o)
                red = changed.any(dim=1).any(dim=2 - axis)  # (B, n_out)
                red = red.cpu().numpy()
                for j, (p, _) in enumerate(chunk):
                    hits[name][p] |= red[j]
    return {k: (v, v.shape[1]) for k, v in hits.items()}


def _as_map(t: torch.Tensor) -> torch.Tensor:
    if t.dim() == 4:
        return t
    if t.dim() == 2:
        return t[:, :, None, None]
    raise FieldError(f"a recorded layer's output has shape {tuple(t.shape)}; expected (N, F, h, w) or (N, F)")


def _fit(m: np.ndarray, n: int):
    """(rf, jump, start) from the influence matrix ``m`` (n input positions x units), exact and
    checked on every unit; None when no unit's interval lies inside the input (or no fit)."""
    n_out = m.shape[1]
    lo = np.full(n_out, -1)
    hi = np.full(n_out, -1)
    for i in range(n_out):
        rows = np.flatnonzero(m[:, i])
        if not len(rows):
            return None
        if rows[-1] - rows[0] + 1 != len(rows):
            return None  # not an interval
        lo[i], hi[i] = rows[0], rows[-1]
    inside = np.flatnonzero((lo > 0) & (hi < n - 1))
    if not len(inside):
        return None
    rfs = hi[inside] - lo[inside] + 1
    if len(set(rfs.tolist())) != 1:
        return None
    rf = int(rfs[0])
    if n_out == 1:
        jump = 1
    elif len(inside) >= 2:
        steps = np.diff(lo[inside]) / np.diff(inside)
        if not np.allclose(steps, steps[0]) or steps[0] <= 0 or steps[0] != int(steps[0]):
            return None
        jump = int(steps[0])
    else:
        return None
    i0 = int(inside[0])
    start = lo[i0] + (rf - 1) / 2 - i0 * jump
    # every unit, clipped by the image where its field leaves it, must follow the same geometry
    idx = np.arange(n_out)
    want_lo = np.clip(np.round(start + idx * jump - (rf - 1) / 2), 0, n - 1)
    want_hi = np.clip(np.round(start + idx * jump - (rf - 1) / 2) + rf - 1, 0, n - 1)
    if not (np.array_equal(want_lo, lo) and np.array_equal(want_hi, hi)):
        return None
    return rf, jump, float(start)
