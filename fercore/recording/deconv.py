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

Speed (``docs/records.md``, "Speed and memory"): 2 x 2 tiling max-pools are computed as the maximum
of four strided views, with the ReLU before them applied to the 4x smaller pooled map (``max`` and
ReLU commute); their switches come out of that comparison directly as the argmax's place in its
window (uint8, the first maximum in row-major order, as ``F.max_pool2d`` picks it), never as int64
indices. Backwards, the unpooling that is followed by a transposed convolution to a map of few
channels (the last step to the grey pixels) is fused with it into one matrix product on the
pooled grid and a ``fold``: the unpooled map is 3/4 zeros and is never built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fercore.training.models import FERNet, feature_modules, forward_features, layer_geometry

__all__ = ["compact_switches", "deconv_project", "forward_switches", "is_pool2x2", "pool2x2", "pool_switches",
           "run_features"]


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


def is_pool2x2(m: nn.Module) -> bool:
    """A 2 x 2 max-pool with stride 2 (no padding, dilation or ceil mode): :func:`pool2x2`."""
    if not isinstance(m, nn.MaxPool2d) or m.ceil_mode:
        return False
    k, s, pd, d = (_pair(v) for v in (m.kernel_size, m.stride, m.padding, m.dilation))
    return k == 2 and s == 2 and pd == 0 and d == 1


def pool2x2(x: torch.Tensor, *, phase: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """2 x 2 max-pool with stride 2 as the maximum of four strided views (a few times faster than
    ``F.max_pool2d`` on CPU; the same values, odd last rows and columns left out the same way).

    Parameters
    ----------
    x : (B, C, H, W) float
    phase : bool
        Also return the switches: the argmax's place in its window, ``row * 2 + col``.

    Returns
    -------
    out : (B, C, H // 2, W // 2)
    phase : (B, C, H // 2, W // 2) uint8 or None
        The first maximum in row-major order (``F.max_pool2d``'s choice on ties); None unless
        ``phase``, or when ``x`` holds NaN (call ``F.max_pool2d`` then).
    """
    hp, wp = x.shape[-2] // 2, x.shape[-1] // 2
    a, b = x[..., 0:2 * hp:2, 0:2 * wp:2], x[..., 0:2 * hp:2, 1:2 * wp:2]
    c, d = x[..., 1:2 * hp:2, 0:2 * wp:2], x[..., 1:2 * hp:2, 1:2 * wp:2]
    m01, m23 = torch.maximum(a, b), torch.maximum(c, d)
    out = torch.maximum(m01, m23)
    if not phase:
        return out, None
    if torch.isnan(out).any():
        return out, None
    # ties go to the earlier place: b only when b > a, the lower row only when it is larger
    ph = torch.where(m23 > m01, (d > c).to(torch.uint8) + 2, (b > a).to(torch.uint8))
    return out, ph


def _relu_pool(h: torch.Tensor, pool: nn.Module, *, phase: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``pool(relu(h))`` for a :func:`is_pool2x2` ``pool``, the ReLU applied after pooling (they
    commute); with ``phase`` the switches of the pool *on the rectified map*: where the window's
    maximum is <= 0 every rectified value is 0 and the first place wins."""
    pre, ph = pool2x2(h, phase=phase)
    if phase and ph is None:  # NaN: torch's own pool decides
        return F.max_pool2d(F.relu(h), 2, 2, return_indices=True)
    if phase:
        ph = ph * (pre > 0)
    return F.relu(pre), ph


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


def _compact(m: nn.Module, idx: torch.Tensor, w_in: int) -> torch.Tensor:
    """One pool's flat int64 indices -> the argmax's place in its window (uint8) for a pool whose
    windows tile its input (:func:`_phase_pool`); other pools keep the flat index."""
    if not _phase_pool(m) or idx.dtype == torch.uint8:
        return idx
    k = _pair(m.kernel_size)
    hp, wp = idx.shape[-2:]
    dev = idx.device
    # idx = (i k + dr) w_in + (j k + dc): take off the window's corner, then
    # dr w_in + dc -> dr k + dc without an integer division
    corner = (torch.arange(hp, device=dev)[:, None] * (k * w_in)
              + torch.arange(wp, device=dev)[None, :] * k).to(torch.int32)
    off = idx.to(torch.int32) - corner
    phase = off.clone()
    for r in range(1, k):
        phase += (off >= r * w_in).to(torch.int32) * (k - w_in)
    return phase.to(torch.uint8)


def compact_switches(model: FERNet, switches: dict, sizes: dict) -> dict:
    """Switches of :func:`run_features` in the form :func:`deconv_project` reads: for pools whose
    windows tile the input (kernel == stride, no padding) the argmax's place inside its window,
    ``row * k + col`` as uint8 (an eighth of the int64 index); other pools keep the flat index."""
    modules = dict(model.named_modules())
    return {name: _compact(modules[name], idx, sizes[name][1]) for name, idx in switches.items()}


@torch.no_grad()
def pool_switches(m: nn.MaxPool2d, h: torch.Tensor, *, relu_first: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A max-pool's output and its switches in :func:`compact_switches` form.

    Parameters
    ----------
    m : nn.MaxPool2d
    h : (B, C, H, W) float
        The pool's input, or with ``relu_first`` the input of the ReLU just before it.
    relu_first : bool

    Returns
    -------
    out : (B, C, h, w)
    switches : (B, C, h, w) uint8 (tiling pools) or int64 (flat index into each input plane)
    """
    w_in = h.shape[-1]
    if is_pool2x2(m):
        out, sw = _relu_pool(h, m, phase=True) if relu_first else pool2x2(h, phase=True)
        if sw is None:  # NaN: torch's own pool decides
            out, sw = F.max_pool2d(h, 2, 2, return_indices=True)
    else:
        if relu_first:
            h = F.relu(h)
        out, sw = F.max_pool2d(h, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, return_indices=True)
    return out, _compact(m, sw, w_in)


@torch.no_grad()
def forward_switches(model: FERNet, x: torch.Tensor, layer: str) -> tuple[dict, dict]:
    """Run ``model.features`` up to the input of ``layer``, keeping max-pool switches and map sizes.

    The switches equal :func:`compact_switches` of :func:`run_features`'s (tested); 2 x 2 pools
    (and the ReLU before them) go through :func:`pool2x2`, which gives them directly.

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
    chain = feature_modules(model, layer)[:-1]
    switches, sizes = {}, {}
    h = x
    i = 0
    while i < len(chain):
        name, m = chain[i]
        sizes[name] = tuple(h.shape[-2:])
        if isinstance(m, nn.ReLU) and i + 1 < len(chain) and is_pool2x2(chain[i + 1][1]):
            pname = chain[i + 1][0]
            sizes[pname] = sizes[name]
            h, switches[pname] = pool_switches(chain[i + 1][1], h, relu_first=True)
            i += 2
            continue
        if isinstance(m, nn.MaxPool2d):
            h, switches[name] = pool_switches(m, h, relu_first=False)
        elif isinstance(m, nn.ReLU):
            h = F.relu(h)  # never in place: the caller's tensors stay as they are
        else:
            h = m(h)
        i += 1
    sizes[layer] = tuple(h.shape[-2:])
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


#: Unpooling fused with the transposed convolution below it when that convolution maps back to at
#: most this many channels (the grey input: 1); for more channels torch's own transposed
#: convolution of the unpooled map is faster (measured, ``docs/records.md``).
_FUSE_MAX_CHANNELS = 4


def _fusable_conv(chain, t: int, relu_done: bool) -> int | None:
    """The index of the Conv2d that directly follows the 2 x 2 unpooling at ``t`` backwards (past
    the ReLU already applied before the unpooling, dropout and identity) when it can be fused with
    it (stride 1, no dilation, no groups, at most :data:`_FUSE_MAX_CHANNELS` input channels)."""
    for u in range(t - 1, -1, -1):
        m = chain[u][1]
        if isinstance(m, nn.Dropout | nn.Identity):
            continue
        if isinstance(m, nn.ReLU) and relu_done and u == t - 1:
            continue
        if isinstance(m, nn.Conv2d) and _pair(m.stride) == 1 and _pair(m.dilation) == 1 and _pair(m.groups) == 1 \
                and m.in_channels <= _FUSE_MAX_CHANNELS:
            return u
        return None
    return None


def _phase_kernel(conv: nn.Conv2d) -> torch.Tensor:
    """(C * 4, D * (k + 1)^2): the conv's (C, D, k, k) weights placed at each of the four places of
    a 2 x 2 window inside a (k + 1)^2 support, so that unpooling by phase then the transposed
    convolution is one matrix product on the pooled grid and a stride-2 ``fold``."""
    w = conv.weight.detach()
    c, d, k, _ = w.shape
    out = w.new_zeros(c, 4, d, k + 1, k + 1)
    for dr in range(2):
        for dc in range(2):
            out[:, dr * 2 + dc, :, dr:dr + k, dc:dc + k] = w
    return out.reshape(c * 4, d * (k + 1) ** 2)


def _window_switches(idx_full: torch.Tensor, image, r0, c0, hw: int, ww: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The switches under each projection's (hw, ww) pooled window at (r0, c0): (P, C, hw, ww),
    contiguous (places outside the pooled map repeat the border's), and the (P, 1, hw, ww) mask of
    the places inside the map (None when every window lies inside)."""
    hp, wp = idx_full.shape[-2:]
    rows = r0[:, None] + torch.arange(hw, device=r0.device)[None]  # (P, hw)
    cols = c0[:, None] + torch.arange(ww, device=r0.device)[None]
    inside = None
    if bool((r0 < 0).any() or (r0 + hw > hp).any() or (c0 < 0).any() or (c0 + ww > wp).any()):
        inside = (((rows >= 0) & (rows < hp))[:, :, None] & ((cols >= 0) & (cols < wp))[:, None, :])[:, None]
        rows, cols = rows.clamp(0, hp - 1), cols.clamp(0, wp - 1)
    idx = idx_full[image[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (P, hw, ww, C)
    return idx.permute(0, 3, 1, 2).contiguous(), inside


def _project(chain, switches, image, filt, pos, value) -> torch.Tensor:
    sw, sizes = switches
    p = len(image)
    conv = chain[-1][1]
    dev = conv.weight.device
    r0, c0 = pos[:, 0].clone(), pos[:, 1].clone()  # window origin in the current map, per projection
    relu_done = False  # a ReLU already applied before the unpooling that follows it backwards
    sig = None
    skip_to = None  # a conv already done, fused with the unpooling above it
    for t in range(len(chain) - 1, -1, -1):
        if skip_to is not None:
            if t > skip_to:
                continue
            skip_to = None
            name, m = chain[t]
            h_in, w_in = sizes[name]
            pd = _pair(m.padding)
            r0, c0 = r0 - pd, c0 - pd
        else:
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
                        sig = torch.zeros(p, conv.out_channels, 1, 1, device=dev)
                        sig[torch.arange(p, device=dev), filt, 0, 0] = value
                    sig = F.conv_transpose2d(sig, m.weight, stride=s, dilation=d)
                r0, c0 = r0 * s - pd, c0 * s - pd
            elif isinstance(m, nn.ReLU):
                sig = F.relu(sig)
                continue
            elif isinstance(m, nn.MaxPool2d):
                k, s, pd = (_pair(v) for v in (m.kernel_size, m.stride, m.padding))
                _, c, hw, ww = sig.shape
                idx, inside = _window_switches(sw[name], image, r0, c0, hw, ww)
                if inside is not None:  # values outside the pooled map are dropped
                    sig = sig * inside.to(sig.dtype)
                nr0, nc0 = r0 * s - pd, c0 * s - pd
                if idx.dtype == torch.uint8:  # place inside each tiling window
                    # unpooling: each value to its place (scatter into zeros: the unpooled map is
                    # (k^2 - 1) / k^2 zeros, measured faster than a one-hot product)
                    out = sig.new_zeros(p, c, k * k, hw * ww)
                    out.scatter_(2, idx.view(p, c, 1, hw * ww).long(), sig.reshape(p, c, 1, hw * ww))
                    fuse = _fusable_conv(chain, t, relu_done) if k == 2 else None
                    if fuse is not None:
                        # unpool + transposed conv: one product with the phase-placed weights on the
                        # pooled grid, then a stride-2 fold of the (k + 1)^2 supports
                        cv = chain[fuse][1]
                        kk = _pair(cv.kernel_size)
                        cols = torch.matmul(_phase_kernel(cv).t(), out.view(p, c * 4, hw * ww))  # (P, D (kk+1)^2, hw ww)
                        sig = F.fold(cols, (2 * hw + kk - 1, 2 * ww + kk - 1), kk + 1, stride=2)
                        r0, c0 = nr0, nc0
                        if relu_done and isinstance(chain[t - 1][1], nn.ReLU):
                            relu_done = False
                        skip_to = fuse
                        continue
                    sig = F.pixel_shuffle(out.view(p, c * k * k, hw, ww), k)
                else:
                    out_h, out_w = (hw - 1) * s + k, (ww - 1) * s + k
                    lr = idx // w_in - nr0[:, None, None, None]
                    lc = idx % w_in - nc0[:, None, None, None]
                    flat = (lr * out_w + lc).clamp(0, out_h * out_w - 1).reshape(p, c, -1)
                    out = torch.zeros(p, c, out_h * out_w, device=dev)
                    out.scatter_add_(2, flat, sig.reshape(p, c, -1))
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
        rr = r0[:, None] + torch.arange(hh, device=dev)[None]
        cc = c0[:, None] + torch.arange(wd, device=dev)[None]
        mask = ((rr >= 0) & (rr < h_in))[:, :, None] & ((cc >= 0) & (cc < w_in))[:, None, :]
        sig = sig * mask[:, None].to(sig.dtype)
    # the window is now the receptive-field box of each unit
    rf = sig.shape[-1]
    if sig.shape[1] != 1 or sig.shape[-2] != rf:
        raise RuntimeError(f"deconv_project: window {tuple(sig.shape)} is not a square single-channel box")
    return sig[:, 0]
