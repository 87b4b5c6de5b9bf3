"""Stored faces -> network input: resize to the model's side, then the pixel normalisation.

:func:`to_input` is the one way a face reaches a network, in training, recording, evaluation and
for an uploaded photo. The normalisation method is recorded in a FaceSet's
``meta["preprocess"]["normalize"]`` and in each run's config.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fercore.data.preprocess import NORMALIZE_METHODS, check_method

__all__ = ["MEAN_STD", "METHODS", "InputSpec", "check_method", "normalize", "normalize_method", "to_input", "to_unit"]

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


# --------------------------------------------------------------------------------------------
# Any network's input: the spec a user knows from torchvision


@dataclass(frozen=True)
class InputSpec:
    """How a stored grey face becomes one network's input.

    A network trained here takes ``channels=1`` and one of :data:`METHODS` (``normalize``); a
    network trained elsewhere states its input as torchvision's transforms do: the square side,
    the channels (a grey face is replicated for an RGB network) and a per-channel ``mean`` and
    ``std`` on pixel values scaled to [0, 1] (``normalize="mean_std"``).

    Attributes
    ----------
    size : int
        Side of the square input in pixels.
    channels : {1, 3}
    normalize : str
        One of :data:`METHODS`, or ``"mean_std"``.
    mean, std : tuple of float, optional
        Per channel (one value is used for every channel); only with ``"mean_std"``.
    """

    size: int
    channels: int = 1
    normalize: str = "standardize"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self):
        if not isinstance(self.size, int | np.integer) or not 8 <= int(self.size) <= 1024:
            raise ValueError(f"size: expected the network's square input side in pixels (8 to 1024), got {self.size!r}")
        object.__setattr__(self, "size", int(self.size))
        if self.channels not in (1, 3):
            raise ValueError(f"channels: expected 1 (grey) or 3 (RGB: the grey face is replicated), got {self.channels!r}")
        if self.normalize == MEAN_STD:
            mean = _per_channel("mean", self.mean if self.mean is not None else (0.0,), self.channels)
            std = _per_channel("std", self.std if self.std is not None else (1.0,), self.channels)
            if min(std) <= 0:
                raise ValueError(f"std: expected positive values, got {list(std)}")
            object.__setattr__(self, "mean", mean)
            object.__setattr__(self, "std", std)
        else:
            check_method(self.normalize)
            if self.mean is not None or self.std is not None:
                raise ValueError(f"mean/std are only used with normalize={MEAN_STD!r}, not {self.normalize!r}")

    def prepare(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W) uint8 faces -> (N, channels, size, size) float32 network input."""
        x = to_input(images, in_size=self.size, method=None)
        if self.normalize != MEAN_STD:
            x = normalize(x, self.normalize)
        if self.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        if self.normalize == MEAN_STD:
            mean = torch.tensor(self.mean, dtype=x.dtype).view(1, -1, 1, 1)
            std = torch.tensor(self.std, dtype=x.dtype).view(1, -1, 1, 1)
            x = (x - mean) / std
        return x.contiguous()

    def to_dict(self) -> dict:
        out = {"size": self.size, "channels": self.channels, "normalize": self.normalize}
        if self.normalize == MEAN_STD:
            out.update(mean=list(self.mean), std=list(self.std))
        return out

    @classmethod
    def from_dict(cls, d: dict) -> InputSpec:
        d = dict(d)
        for key in ("mean", "std"):
            if d.get(key) is not None:
                d[key] = tuple(float(v) for v in d[key])
        return cls(**d)

    def describe(self) -> str:
        """The spec in words (for protocols and captions)."""
        what = f"{self.size}×{self.size} px, {'grey' if self.channels == 1 else 'grey replicated to RGB'}"
        if self.normalize == MEAN_STD:
            fmt = lambda v: ", ".join(f"{x:g}" for x in v)  # noqa: E731
            return f"{what}, pixels in [0, 1] minus mean ({fmt(self.mean)}) over std ({fmt(self.std)})"
        return f"{what}, normalised by {self.normalize}"


#: The normalisation of a network trained elsewhere: per-channel mean and std on [0, 1] pixels.
MEAN_STD = "mean_std"


def _per_channel(name: str, values, channels: int) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected numbers, got {values!r}") from None
    if len(vals) == 1:
        vals = vals * channels
    if len(vals) != channels:
        raise ValueError(f"{name}: expected 1 or {channels} values (one per channel), got {len(vals)}: {list(vals)}")
    if not all(np.isfinite(vals)):
        raise ValueError(f"{name}: expected finite numbers, got {list(vals)}")
    return vals
