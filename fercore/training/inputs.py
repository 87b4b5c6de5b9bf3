"""Stored faces -> network input: resize to the model's side, then the pixel normalisation.

:func:`to_input` is the one way a face reaches a network, in training, recording, evaluation and
for an uploaded photo. The normalisation method is recorded in a FaceSet's
``meta["preprocess"]["normalize"]`` and in each run's config.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fercore.data.preprocess import NORMALIZE_METHODS, check_method

__all__ = ["METHODS", "check_method", "normalize", "normalize_method", "to_input", "to_unit"]

#: The normalisations (defined with the data, which records the one it asks for).
METHODS = NORMALIZE_METHODS


def to_unit(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, H, W) uint8 -> (N, 1, H, W) float32 in [0, 1]."""
    t = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if t.ndim == 3:
        t = t[:, None]
    return t.to(torch.float32) / 255.0


def normalize(x: torch.Tensor, method: str) -> torch.Tensor:
    """Normalise a batch of unit-range grey images.

    Parameters
    ----------
    x : (N, 1, H, W) float32 in [0, 1]
    method : {"none", "standardize", "local_mean"}
        ``none`` centres on 0.5; ``standardize`` gives each image zero mean and unit standard
        deviation; ``local_mean`` subtracts the 5x5 local mean (Khorrami et al. 2015; their
        division step was a no-op) and scales by 4 to keep the values near unit range.

    Returns
    -------
    (N, 1, H, W) float32
    """
    check_method(method)
    if method == "none":
        return x - 0.5
    if method == "standardize":
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
        return (x - mean) / std
    local = F.avg_pool2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), 5, stride=1)
    return (x - local) * 4.0


def normalize_method(meta: dict) -> str:
    """The pixel normalisation a FaceSet asks for (``meta["preprocess"]["normalize"]``)."""
    pre = meta.get("preprocess") or {}
    return check_method(pre.get("normalize", "standardize") if isinstance(pre, dict) else "standardize")


def to_input(images: np.ndarray, *, in_size: int, method: str | None) -> torch.Tensor:
    """Stored faces -> network input.

    Parameters
    ----------
    images : (N, H, W) uint8
    in_size : int
        The model's input side; images of another size are resized (area-weighted when
        shrinking, bilinear when enlarging).
    method : str or None
        Normalisation method (:func:`normalize`); None returns unit-range
        pixels (for augmentation before normalising).

    Returns
    -------
    (N, 1, in_size, in_size) float32
    """
    x = to_unit(images)
    if x.shape[-1] != in_size or x.shape[-2] != in_size:
        x = F.interpolate(x, size=(in_size, in_size), mode="bilinear", antialias=True, align_corners=False)
        x = x.clamp_(0.0, 1.0)
    return x if method is None else normalize(x, method)
