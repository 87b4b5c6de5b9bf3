"""Label schemes and their losses (Barsoum et al. 2016, FER+).

A scheme says what a training image's target is and how the loss compares it with the
network's output:

- ``hard``: the integer ``labels``; cross-entropy.
- ``majority``: the one-hot (or any) row of ``FaceSet.targets["majority"]``; cross-entropy
  against its arg-max.
- ``multilabel``: every class with a non-zero entry in ``targets["multilabel"]`` is accepted;
  loss ``-log max_k (t_k * p_k)`` with ``t`` the 0/1 indicator of accepted classes.
- ``probability``: each epoch, one label per image is drawn from ``targets["probability"]``
  (renormalised to sum 1); cross-entropy against the drawn label.
- ``crossentropy``: cross-entropy against the distribution ``targets["crossentropy"]``
  (renormalised), ``-sum_k t_k log p_k``.

Schemes other than ``hard`` read ``FaceSet.targets[scheme]``; images whose row is all zero are
dropped from training. Validation and test always use ``labels``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["SCHEMES", "check_scheme", "draw_labels", "scheme_loss"]

#: The label schemes, in the order the FER+ paper lists them (``hard`` first).
SCHEMES = ("hard", "majority", "multilabel", "probability", "crossentropy")


def check_scheme(scheme: str) -> str:
    """Return ``scheme`` if it is known; ValueError listing the known schemes otherwise."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme: expected one of {', '.join(SCHEMES)}, got {scheme!r}")
    return scheme


def draw_labels(dist: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """One label per row drawn from a (not necessarily normalised) distribution.

    Parameters
    ----------
    dist : (N, C) float, non-negative, every row with a positive sum
    generator : torch.Generator, optional

    Returns
    -------
    (N,) int64
    """
    return torch.multinomial(dist, 1, generator=generator).squeeze(1)


def scheme_loss(logits: torch.Tensor, target: torch.Tensor, scheme: str) -> torch.Tensor:
    """Mean loss of a batch under a label scheme.

    Parameters
    ----------
    logits : (B, C) float
        Network outputs before the softmax.
    target : (B,) int64 or (B, C) float
        Class indices for ``hard``, ``majority`` (an already reduced arg-max) and
        ``probability`` (an already drawn label); the target rows for ``multilabel`` and
        ``crossentropy``. ``majority`` also accepts (B, C) rows and takes their arg-max.
    scheme : str
        One of :data:`SCHEMES`.

    Returns
    -------
    () float
    """
    check_scheme(scheme)
    if scheme == "multilabel":
        accepted = (target > 0).to(logits.dtype)
        logp = F.log_softmax(logits, dim=1)
        # log max_k t_k p_k = max over accepted k of log p_k (t_k is 0 or 1)
        masked = logp.masked_fill(accepted == 0, float("-inf"))
        return -masked.max(dim=1).values.mean()
    if scheme == "crossentropy":
        t = target / target.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return -(t * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    if target.ndim == 2:
        target = target.argmax(dim=1)
    return F.cross_entropy(logits, target)
