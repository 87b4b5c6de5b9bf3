"""Zeiler-Fergus deconvnet projections of single activations back to pixels.

For one unit (filter ``f`` at map position ``(i, j)`` of a conv layer) and one image, only that
activation is kept and sent back through ``model.features`` in reverse: max-pools are undone
with the switches recorded on that image's forward pass, ReLUs are applied to the signal, and
convolutions are undone by the transposed convolution with the same weights (no bias).
Dropout is the identity at eval time.

The backward signal of one unit only ever covers that unit's receptive field, so the projection
is computed on a window that grows layer by layer (never on the full maps); the result is
exactly the rf x rf box of :func:`fercore.models.layer_geometry`, and equals the full-map
computation (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .models import FERNet, layer_geometry, resolve_layer

__all__ = ["deconv_project", "forward_switches"]


def _pair(v) -> int:
    return v if isinstance(v, int) else v[0]


def _chain(model: FERNet, layer: str) -> list[tuple[str, nn.Module]]:
    resolve_layer(model, layer)
    out = []
    for name, m in model.features.named_children():
        out.append((f"features.{name}", m))
        if f"features.{name}" == layer:
            return out
    raise ValueError(f"layer {layer!r} is not in model.features")


@torch.no_grad()
def forward_switches(model: FERNet, x: torch.Tensor, layer: str) -> tuple[dict, dict]:
    """Run ``model.features`` up to the input of ``layer``, keeping max-pool switches and map sizes.

    Parameters
    ----------
    x : (B, 1, S, S) float32
        Normalised images.

    Returns
    -------
    switches : dict of layer name to (B, C, h, w) int64
        Flat argmax index into the pool's input plane, per pooled unit.
    sizes : dict of layer name to (H, W)
        Spatial size of each module's input.
    """
    switches, sizes = {}, {}
    for name, m in _chain(model, layer):
        sizes[name] = tuple(x.shape[-2:])
        if name == layer:  # the layer's own output is not needed for projecting back from it
            break
        if isinstance(m, nn.MaxPool2d):
            x, idx = F.max_pool2d(x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, return_indices=True)
            switches[name] = idx
        else:
            x = m(x)
    return switches, sizes


@torch.no_grad()
def deconv_project(model: FERNet, x: torch.Tensor, layer: str, image: torch.Tensor, filt: torch.Tensor,
                   pos: torch.Tensor, value: torch.Tensor | None = None, *, switches: tuple | None = None) -> torch.Tensor:
    """Project single activations of ``layer`` back to the pixels of their receptive fields.

    Parameters
    ----------
    model : FERNet (eval mode)
    x : (B, 1, S, S) float32
        Normalised images.
    layer : str
        A conv layer of ``model.features``.
    image : (P,) int64
        Which image of ``x`` each projection uses.
    filt : (P,) int64
        Filter index of each projection.
    pos : (P, 2) int64
        (row, col) of the unit in the layer's output map.
    value : (P,) float32, optional
        The activation kept at that unit (default 1).
    switches : (switches, sizes), optional
        :func:`forward_switches` of ``x`` for ``layer`` (or a deeper layer), to reuse.

    Returns
    -------
    (P, rf, rf) float32
        The projection on the unit's receptive-field box (``layer_geometry(model, layer).box``),
        zero where the box leaves the image.
    """
    chain = _chain(model, layer)
    if not isinstance(chain[-1][1], nn.Conv2d):
        raise ValueError(f"deconv_project: {layer!r} is not a Conv2d layer")
    if switches is None:
        switches = forward_switches(model, x, layer)
    sw, sizes = switches
    geo = layer_geometry(model, layer)
    image = torch.as_tensor(image, dtype=torch.long)
    p = len(image)
    filt = torch.as_tensor(filt, dtype=torch.long)
    pos = torch.as_tensor(pos, dtype=torch.long).reshape(p, 2)
    conv = chain[-1][1]
    sig = torch.zeros(p, conv.out_channels, 1, 1)
    sig[torch.arange(p), filt, 0, 0] = 1.0 if value is None else torch.as_tensor(value, dtype=torch.float32)
    r0, c0 = pos[:, 0].clone(), pos[:, 1].clone()  # window origin in the current map, per projection
    relu_done = False  # a ReLU already applied before the unpooling that follows it backwards
    for t in range(len(chain) - 1, -1, -1):
        name, m = chain[t]
        h_in, w_in = sizes[name]
        if isinstance(m, nn.MaxPool2d) and t > 0 and isinstance(chain[t - 1][1], nn.ReLU) \
                and _pair(m.kernel_size) <= _pair(m.stride):
            # unpooling only places values (the windows do not overlap), so ReLU commutes with it:
            # apply it on the 4x smaller pooled window
            sig = F.relu(sig)
            relu_done = True
        if isinstance(m, nn.ReLU) and relu_done:
            relu_done = False
            continue
        if isinstance(m, nn.Conv2d):
            k, s, pd, d = (_pair(v) for v in (m.kernel_size, m.stride, m.padding, m.dilation))
            if _pair(m.groups) != 1:
                raise ValueError(f"deconv_project: grouped conv {name} is not supported")
            sig = F.conv_transpose2d(sig, m.weight, stride=s, dilation=d)
            r0, c0 = r0 * s - pd, c0 * s - pd
        elif isinstance(m, nn.ReLU):
            sig = F.relu(sig)
            continue
        elif isinstance(m, nn.MaxPool2d):
            k, s, pd = (_pair(v) for v in (m.kernel_size, m.stride, m.padding))
            idx_full = sw[name]  # (B, C, hp, wp) flat index into the (h_in, w_in) plane
            _, c, hw, ww = sig.shape
            hp, wp = idx_full.shape[-2:]
            rows = r0[:, None] + torch.arange(hw)[None]  # (P, hw) pooled rows of the window
            cols = c0[:, None] + torch.arange(ww)[None]
            inside = ((rows >= 0) & (rows < hp))[:, :, None] & ((cols >= 0) & (cols < wp))[:, None, :]
            idx = idx_full[image[:, None, None], :, rows.clamp(0, hp - 1)[:, :, None], cols.clamp(0, wp - 1)[:, None, :]]
            idx = idx.permute(0, 3, 1, 2)  # (P, C, hw, ww)
            nr0, nc0 = r0 * s - pd, c0 * s - pd
            out_h, out_w = (hw - 1) * s + k, (ww - 1) * s + k
            lr = idx // w_in - nr0[:, None, None, None]
            lc = idx % w_in - nc0[:, None, None, None]
            vals = sig * inside[:, None].to(sig.dtype)
            flat = (lr * out_w + lc).clamp(0, out_h * out_w - 1).reshape(p, c, -1)
            out = torch.zeros(p, c, out_h * out_w)
            out.scatter_add_(2, flat, vals.reshape(p, c, -1))
            sig = out.reshape(p, c, out_h, out_w)
            r0, c0 = nr0, nc0
        elif isinstance(m, nn.Dropout | nn.Identity):
            continue
        else:
            raise ValueError(f"deconv_project: cannot invert {type(m).__name__} ({name})")
        # drop what falls outside this map (it lies in the padding)
        hh, wd = sig.shape[-2:]
        rr = r0[:, None] + torch.arange(hh)[None]
        cc = c0[:, None] + torch.arange(wd)[None]
        mask = ((rr >= 0) & (rr < h_in))[:, :, None] & ((cc >= 0) & (cc < w_in))[:, None, :]
        sig = sig * mask[:, None].to(sig.dtype)
    # the window is now the receptive-field box of each unit
    if sig.shape[-1] != geo.rf or sig.shape[1] != 1:
        raise RuntimeError(f"deconv_project: window {tuple(sig.shape)} does not match rf {geo.rf}")
    return sig[:, 0].contiguous()
