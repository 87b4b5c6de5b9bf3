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

from fercore.training.models import FERNet, feature_modules, forward_features, layer_geometry

__all__ = ["compact_switches", "deconv_project", "forward_switches", "run_features"]


def _pair(v) -> int:
    return v if isinstance(v, int) else v[0]


def _chain(model: FERNet, layer: str) -> list[tuple[str, nn.Module]]:
    return feature_modules(model, layer)


#: Projections computed together (the transposed convolutions run fastest on chunks of this size).
_CHUNK = 256


def _phase_pool(m: nn.Module) -> bool:
    """A max-pool whose windows tile its input (kernel == stride, no padding or dilation): its
    switches are kept as the argmax's place inside the window (uint8), not a flat index."""
    if not isinstance(m, nn.MaxPool2d):
        return False
    k, s, pd, d = (_pair(v) for v in (m.kernel_size, m.stride, m.padding, m.dilation))
    return k == s and pd == 0 and d == 1 and k * k <= 256


@torch.no_grad()
def run_features(model: FERNet, x: torch.Tensor, layer: str, *, through: bool = False, with_switches: bool = True
                 ) -> tuple[torch.Tensor, dict, dict]:
    """Run ``model.features`` up to ``layer`` (its input, or its output when ``through``), each
    module called as a module (so forward hooks on it fire), max-pools with their switches
    (unless ``with_switches`` is False: then the returned dict is empty).

    Returns
    -------
    out : tensor
        The input of ``layer`` (its output when ``through``).
    switches : dict of pool name to (B, C, h, w) int64
        Flat argmax index into the pool's input plane, per pooled unit (``F.max_pool2d``'s
        indices); see :func:`compact_switches`.
    sizes : dict of module name to (H, W)
        Spatial size of each module's input.
    """
    switches, sizes = {}, {}

    def step(name: str, m: nn.Module, t: torch.Tensor) -> torch.Tensor:
        sizes[name] = tuple(t.shape[-2:])
        if isinstance(m, nn.MaxPool2d) and with_switches:
            t, switches[name] = F.max_pool2d(t, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode,
                                             return_indices=True)
            return t
        return m(t)

    out = forward_features(model, x, until=layer, through=through, step=step)
    if not through:
        sizes[layer] = tuple(out.shape[-2:])  # the input of ``layer`` itself
    return out, switches, sizes


def compact_switches(model: FERNet, switches: dict, sizes: dict) -> dict:
    """Switches of :func:`run_features` in the form :func:`deconv_project` reads: for pools whose
    windows tile the input (kernel == stride, no padding) the argmax's place inside its window,
    ``row * k + col`` as uint8 (an eighth of the int64 index); other pools keep the flat index."""
    out, modules = {}, dict(model.named_modules())
    for name, idx in switches.items():
        m = modules[name]
        if _phase_pool(m) and idx.dtype != torch.uint8:
            k, w_in = _pair(m.kernel_size), sizes[name][1]
            hp, wp = idx.shape[-2:]
            # idx = (i k + dr) w_in + (j k + dc): take off the window's corner, then
            # dr w_in + dc -> dr k + dc without an integer division
            corner = (torch.arange(hp)[:, None] * (k * w_in) + torch.arange(wp)[None, :] * k).to(torch.int32)
            off = idx.to(torch.int32) - corner
            phase = off.clone()
            for r in range(1, k):
                phase += (off >= r * w_in).to(torch.int32) * (k - w_in)
            idx = phase.to(torch.uint8)
        out[name] = idx
    return out


def forward_switches(model: FERNet, x: torch.Tensor, layer: str) -> tuple[dict, dict]:
    """Run ``model.features`` up to the input of ``layer``, keeping max-pool switches and map sizes.

    Parameters
    ----------
    x : (B, 1, S, S) float32
        Normalised images.

    Returns
    -------
    switches : dict of layer name to (B, C, h, w) tensor
        :func:`compact_switches` of each max-pool's indices.
    sizes : dict of layer name to (H, W)
        Spatial size of each module's input.
    """
    _, switches, sizes = run_features(model, x, layer)
    return compact_switches(model, switches, sizes), sizes


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
    geo = layer_geometry(model, layer)
    image = torch.as_tensor(image, dtype=torch.long)
    p = len(image)
    filt = torch.as_tensor(filt, dtype=torch.long)
    pos = torch.as_tensor(pos, dtype=torch.long).reshape(p, 2)
    value = torch.ones(p) if value is None else torch.as_tensor(value, dtype=torch.float32).reshape(p)
    out = torch.empty(p, geo.rf, geo.rf)
    for s in range(0, p, _CHUNK):
        e = min(s + _CHUNK, p)
        out[s:e] = _project(chain, switches, image[s:e], filt[s:e], pos[s:e], value[s:e])
    return out


def _moves_next(chain, t: int) -> nn.Module | None:
    """The module below ``t`` in the chain that next moves values backwards (skipping ReLU,
    dropout and identity), or None at the input."""
    for u in range(t - 1, -1, -1):
        m = chain[u][1]
        if not isinstance(m, nn.ReLU | nn.Dropout | nn.Identity):
            return m
    return None


def _project(chain, switches, image, filt, pos, value) -> torch.Tensor:
    sw, sizes = switches
    p = len(image)
    conv = chain[-1][1]
    r0, c0 = pos[:, 0].clone(), pos[:, 1].clone()  # window origin in the current map, per projection
    relu_done = False  # a ReLU already applied before the unpooling that follows it backwards
    sig = None
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
            if sig is None and d == 1:
                # the transposed conv of a single unit is that filter's weights, scaled
                sig = value[:, None, None, None] * m.weight[filt]
            else:
                if sig is None:
                    sig = torch.zeros(p, conv.out_channels, 1, 1)
                    sig[torch.arange(p), filt, 0, 0] = value
                sig = F.conv_transpose2d(sig, m.weight, stride=s, dilation=d)
            r0, c0 = r0 * s - pd, c0 * s - pd
        elif isinstance(m, nn.ReLU):
            sig = F.relu(sig)
            continue
        elif isinstance(m, nn.MaxPool2d):
            k, s, pd = (_pair(v) for v in (m.kernel_size, m.stride, m.padding))
            idx_full = sw[name]  # (B, C, hp, wp)
            _, c, hw, ww = sig.shape
            hp, wp = idx_full.shape[-2:]
            rows = r0[:, None] + torch.arange(hw)[None]  # (P, hw) pooled rows of the window
            cols = c0[:, None] + torch.arange(ww)[None]
            inside = ((rows >= 0) & (rows < hp))[:, :, None] & ((cols >= 0) & (cols < wp))[:, None, :]
            idx = idx_full[image[:, None, None], :, rows.clamp(0, hp - 1)[:, :, None], cols.clamp(0, wp - 1)[:, None, :]]
            idx = idx.permute(0, 3, 1, 2)  # (P, C, hw, ww)
            vals = sig * inside[:, None].to(sig.dtype)
            nr0, nc0 = r0 * s - pd, c0 * s - pd
            if idx.dtype == torch.uint8:  # place inside each tiling window
                out = torch.zeros(p, c, k * k, hw, ww)
                out.scatter_(2, idx.long().unsqueeze(2), vals.unsqueeze(2))
                sig = F.pixel_shuffle(out.view(p, c * k * k, hw, ww), k)
            else:
                out_h, out_w = (hw - 1) * s + k, (ww - 1) * s + k
                lr = idx // w_in - nr0[:, None, None, None]
                lc = idx % w_in - nc0[:, None, None, None]
                flat = (lr * out_w + lc).clamp(0, out_h * out_w - 1).reshape(p, c, -1)
                out = torch.zeros(p, c, out_h * out_w)
                out.scatter_add_(2, flat, vals.reshape(p, c, -1))
                sig = out.reshape(p, c, out_h, out_w)
            r0, c0 = nr0, nc0
        elif isinstance(m, nn.Dropout | nn.Identity):
            continue
        else:
            raise ValueError(f"deconv_project: cannot invert {type(m).__name__} ({name})")
        if isinstance(_moves_next(chain, t), nn.MaxPool2d):
            continue  # the unpooling below masks the units outside its map itself
        # drop what falls outside this map (it lies in the padding)
        hh, wd = sig.shape[-2:]
        rr = r0[:, None] + torch.arange(hh)[None]
        cc = c0[:, None] + torch.arange(wd)[None]
        mask = ((rr >= 0) & (rr < h_in))[:, :, None] & ((cc >= 0) & (cc < w_in))[:, None, :]
        sig = sig * mask[:, None].to(sig.dtype)
    # the window is now the receptive-field box of each unit
    rf = sig.shape[-1]
    if sig.shape[1] != 1 or sig.shape[-2] != rf:
        raise RuntimeError(f"deconv_project: window {tuple(sig.shape)} is not a square single-channel box")
    return sig[:, 0]
