"""Per-subject identity of a phantom face and the nuisance applied to one image."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Identity", "Nuisance", "random_identity", "random_nuisance"]


@dataclass(frozen=True)
class Identity:
    """What stays fixed across one subject's images: face shape, proportions and tones.

    Lengths are in units of the inter-ocular distance (IOD, between the eye centres) in a face
    frame whose origin is the midpoint between the eyes, x towards the image right, y towards
    the chin. Tones are grey levels 0-255.
    """

    face_width: float = 1.02  # half-width of the face at the cheekbones
    chin: float = 1.62  # y of the chin
    jaw_square: float = 2.3  # superellipse exponent of the jaw: 2 round, 3 square
    hairline: float = -1.05  # y of the hairline at the midline
    eye_width: float = 0.45
    eye_height: float = 0.19
    eye_tilt: float = 0.0  # outer corners up (negative) or down (positive)
    iris_radius: float = 0.115
    brow_gap: float = 0.33  # brow centre line above the eye line
    brow_thickness: float = 0.085
    brow_arch: float = 0.06
    brow_length: float = 0.72
    nose_length: float = 0.68  # y of the nose tip
    nose_width: float = 0.23  # half-width of the nostril wings
    mouth_y: float = 1.06
    mouth_width: float = 0.41  # half-width, corner to midline
    upper_lip: float = 0.08
    lower_lip: float = 0.11
    fold_depth: float = 0.2  # nasolabial fold at rest, 0-1
    skin: float = 165.0
    hair: float = 45.0
    brow: float = 60.0
    iris: float = 60.0
    background: float = 110.0
    glasses: bool = False
    glasses_tone: float = 30.0
    hair_seed: int = 0


@dataclass(frozen=True)
class Nuisance:
    """What varies from image to image and says nothing about the expression.

    ``rotation`` in degrees (in-plane, counter-clockwise), ``scale`` a factor about the image
    centre, ``shift`` (dx, dy) as fractions of the image side, ``light`` the strength of a linear
    lighting gradient (fraction of brightness, across the image) at angle ``light_angle``
    (degrees), ``gamma`` applied to unit brightness, ``blur`` a Gaussian sigma in pixels at 64 px
    (scaled with the image size), ``noise`` the standard deviation of additive Gaussian noise
    in grey levels, drawn from ``seed``.
    """

    rotation: float = 0.0
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    light: float = 0.0
    light_angle: float = 0.0
    gamma: float = 1.0
    blur: float = 0.0
    noise: float = 0.0
    seed: int = 0


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def random_identity(rng: np.random.Generator) -> Identity:
    """Draw one subject's identity.

    Parameters
    ----------
    rng : numpy.random.Generator

    Returns
    -------
    Identity
        About one in seven subjects wears glasses; about one in five has light hair.
    """
    skin = _u(rng, 115, 205)
    light_hair = rng.random() < 0.2
    hair = _u(rng, 110, 170) if light_hair else _u(rng, 15, 85)
    # the background keeps at least 35 grey levels away from the skin
    while True:
        background = _u(rng, 25, 230)
        if abs(background - skin) > 35:
            break
    brow = min(hair + _u(rng, 5, 25), skin * _u(rng, 0.38, 0.52))
    return Identity(
        face_width=_u(rng, 0.95, 1.1),
        chin=_u(rng, 1.55, 1.7),
        jaw_square=_u(rng, 2.0, 2.9),
        hairline=_u(rng, -1.2, -0.95),
        eye_width=_u(rng, 0.4, 0.5),
        eye_height=_u(rng, 0.17, 0.21),
        eye_tilt=_u(rng, -0.03, 0.03),
        iris_radius=_u(rng, 0.105, 0.125),
        brow_gap=_u(rng, 0.3, 0.37),
        brow_thickness=_u(rng, 0.065, 0.11),
        brow_arch=_u(rng, 0.02, 0.08),
        brow_length=_u(rng, 0.65, 0.78),
        nose_length=_u(rng, 0.62, 0.72),
        nose_width=_u(rng, 0.19, 0.26),
        mouth_y=_u(rng, 1.03, 1.12),
        mouth_width=_u(rng, 0.37, 0.45),
        upper_lip=_u(rng, 0.06, 0.1),
        lower_lip=_u(rng, 0.08, 0.13),
        fold_depth=_u(rng, 0.05, 0.35),
        skin=skin,
        hair=hair,
        brow=brow,
        iris=_u(rng, 25, 100),
        background=background,
        glasses=bool(rng.random() < 0.15),
        glasses_tone=_u(rng, 10, 60),
        hair_seed=int(rng.integers(0, 2**31 - 1)),
    )


def random_nuisance(rng: np.random.Generator, strength: float = 1.0) -> Nuisance:
    """Draw moderate nuisance: rotation within ±5°, scale ±3 %, shift ±3 % of the side, a light
    gradient up to 25 % across the image, gamma e^±0.2, blur sigma up to 0.6 px at 64 px and noise
    sigma 1-3 grey levels.

    Parameters
    ----------
    rng : numpy.random.Generator
    strength : float
        Scales every range (0 gives the identity transform and no noise).
    """
    s = float(strength)
    u = rng.random(9)
    return Nuisance(
        rotation=(10 * u[0] - 5) * s,
        scale=1.0 + (0.06 * u[1] - 0.03) * s,
        shift=((0.06 * u[2] - 0.03) * s, (0.06 * u[3] - 0.03) * s),
        light=0.25 * u[4] * s,
        light_angle=360 * u[5],
        gamma=math.exp((0.4 * u[6] - 0.2) * s),
        blur=0.6 * u[7] * s,
        noise=(1.0 + 2.0 * u[8]) * s,
        seed=int(rng.integers(0, 2**31 - 1)),
    )
