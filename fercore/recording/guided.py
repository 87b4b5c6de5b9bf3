"""Guided backpropagation (Springenberg et al. 2015) of single units of any network.

The Zeiler-Fergus deconvnet (:mod:`fercore.recording.deconv`) inverts a plain conv / ReLU /
max-pool chain; a network with batch norm, residual adds or depthwise convolutions has no such
inverse. Guided backpropagation is its counterpart for any network: the gradient of one unit
with respect to the input, where every ReLU passes back only positive signal through units that
were on in the forward pass. It is computed with autograd, the ReLU's backward replaced while the
gradient is taken: a dispatch mode turns ``threshold_backward(grad, out, 0)`` (the backward of
every ReLU, module or functional) into ``threshold_backward(relu(grad), out, 0)``. On networks
whose ReLUs are ``nn.ReLU`` modules this equals Captum's ``GuidedBackprop`` (tested).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from fercore.recording.hooks import LayerCapture

__all__ = ["guided_backprop", "guided_relus"]

_aten = torch.ops.aten


class guided_relus(TorchDispatchMode):  # noqa: N801 (used as a context manager, like torch's modes)
    """Inside this block, every ReLU passes back only the positive part of its gradient."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is _aten.threshold_backward.default:
            grad, out, threshold = args
            return func(grad.clamp_min(0), out, threshold)
        return func(*args, **kwargs)


def guided_backprop(module: nn.Module, x: torch.Tensor, layer: str, image: torch.Tensor, filt: torch.Tensor,
                    pos: torch.Tensor, *, chunk: int = 64) -> torch.Tensor:
    """The guided gradient of single units of ``layer`` with respect to the input.

    Parameters
    ----------
    module : nn.Module
        In eval mode (batch norm per image).
    x : (B, C, S, S) float32
        Network inputs.
    layer : str
        A module's dotted name; its output is (B, F, h, w) (or (B, F)).
    image : (P,) int64
        Which image of ``x`` each projection uses.
    filt : (P,) int64
        The unit's channel.
    pos : (P, 2) int64
        (row, col) of the unit in the layer's map (ignored for (B, F) outputs).
    chunk : int
        Units per forward and backward pass (each gets its own copy of its image).

    Returns
    -------
    (P, C, S, S) float32
        The input gradient of each unit's activation.
    """
    p = len(image)
    out = torch.zeros(p, *x.shape[1:], dtype=torch.float32)
    for s in range(0, p, chunk):
        e = min(p, s + chunk)
        idx = torch.as_tensor(image[s:e], dtype=torch.long, device=x.device)
        xs = x[idx].detach().clone().requires_grad_(True)
        with torch.enable_grad(), LayerCapture(module, [layer], detach=False, stop=True) as cap:
            cap.run(xs)
            a = cap.outputs[layer]
            rows = torch.arange(e - s, device=a.device)
            f = torch.as_tensor(filt[s:e], dtype=torch.long, device=a.device)
            if a.dim() == 4:
                ps = torch.as_tensor(pos[s:e], dtype=torch.long, device=a.device).reshape(-1, 2)
                units = a[rows, f, ps[:, 0], ps[:, 1]]
            else:
                units = a[rows, f]
            with guided_relus():
                (g,) = torch.autograd.grad(units.sum(), xs)
        out[s:e] = g.detach().float().cpu()
    return out
