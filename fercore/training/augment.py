"""Khorrami et al. 2015 augmentation, on whole batches in torch (``affine_grid``/``grid_sample``).

Per image: horizontal flip with probability 0.5, rotation within +-5 degrees, scale in
[0.7, 1.4], translation within +-10% of the side, and an intensity change ``x**a * b + c`` with
``a`` in [0.25, 4] (log-uniform, so brighter and darker are equally likely), ``b`` in
[0.7, 1.4], ``c`` in [-0.1, 0.1]; the result is rescaled into [0, 1] where it leaves that range.
All draws come from one ``torch.Generator``, so a seed fixes the augmentation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

__all__ = ["AugmentParams", "augment_batch"]


@dataclass(frozen=True)
class AugmentParams:
    """Ranges of the random transforms (the defaults are Khorrami et al.'s)."""

    flip: float = 0.5
    rotate_deg: float = 5.0
    scale: tuple[float, float] = (0.7, 1.4)
    translate: float = 0.1
    gamma: tuple[float, float] = (0.25, 4.0)
    gain: tuple[float, float] = (0.7, 1.4)
    offset: tuple[float, float] = (-0.1, 0.1)

    def to_dict(self) -> dict:
        return asdict(self)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator | None) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def augment_batch(
    x: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    params: AugmentParams = AugmentParams(),
) -> torch.Tensor:
    """Randomly transform a batch of unit-range grey faces.

    Parameters
    ----------
    x : (N, 1, H, W) float32 in [0, 1]
    generator : torch.Generator, optional
        Source of every random draw (CPU generator).
    params : AugmentParams

    Returns
    -------
    (N, 1, H, W) float32 in [0, 1], a new tensor.
    """
    if x.ndim != 4:
        raise ValueError(f"augment_batch: expected (N, 1, H, W), got shape {tuple(x.shape)}")
    n = x.shape[0]
    g = generator
    flip = torch.where(torch.rand(n, generator=g) < params.flip, -1.0, 1.0)
    angle = _uniform(n, -params.rotate_deg, params.rotate_deg, g) * (math.pi / 180.0)
    scale = _uniform(n, *params.scale, g)
    # translation in normalised coordinates: the side spans 2, so a fraction f is 2f
    shift = _uniform(2 * n, -2 * params.translate, 2 * params.translate, g).view(n, 2)
    log_gamma = _uniform(n, math.log(params.gamma[0]), math.log(params.gamma[1]), g)
    gain = _uniform(n, *params.gain, g)
    offset = _uniform(n, *params.offset, g)

    # theta maps output coordinates to input coordinates: zooming in by s samples 1/s as far.
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([
        torch.stack([cos * flip, -sin, shift[:, 0]], dim=1),
        torch.stack([sin * flip, cos, shift[:, 1]], dim=1),
    ], dim=1).to(x.dtype)  # (N, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    view = (n, 1, 1, 1)
    y = y.clamp_min(0.0).pow(torch.exp(log_gamma).view(view).to(x.dtype))
    y = y * gain.view(view).to(x.dtype) + offset.view(view).to(x.dtype)
    lo = y.amin(dim=(1, 2, 3), keepdim=True).clamp_max(0.0)
    hi = y.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1.0)
    return (y - lo) / (hi - lo)
