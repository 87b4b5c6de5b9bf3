"""Drawing one phantom face: 68 landmarks from an identity and AUs, then shapes and texture.

Geometry lives in a face frame measured in inter-ocular distances (IOD): origin between the eye
centres, x towards the image right, y towards the chin. Action units move landmarks (shape) and
add texture (wrinkles, furrows, folds, bulges) where FACS places them; ``docs/phantom.md`` lists
what each AU does. The face is drawn at twice the output size with OpenCV, shaded, reduced with
area averaging, and then the nuisance (pose, light, gamma, blur, noise) is applied.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from fercore.data.phantom.identity import Identity, Nuisance

__all__ = ["DRAWN_AUS", "face_landmarks", "magnitude", "render_face", "render_strengths"]

#: The AUs the phantom draws, in column order of the generated FaceSet.
DRAWN_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 16, 17, 20, 23, 24, 25, 26)

_SS = 2  # supersampling factor
_IOD = 0.29  # inter-ocular distance as a fraction of the image side (before nuisance)
_EYE_Y = 0.38  # eye line as a fraction of the image side
_SHIFT = 4  # sub-pixel bits for OpenCV drawing
_ONE = 1 << _SHIFT


def magnitude(intensity: float) -> float:
    """Drawing strength 0-1 of an AU intensity 0-5 (A=1 ... E=5; 0 absent).

    Trace intensities stay visible at 48 px: A draws at half the strength of E, C at 3/4.
    """
    k = float(intensity)
    if k <= 0:
        return 0.0
    return (min(k, 5.0) + 3.0) / 8.0


# ------------------------------------------------------------------------------------------
# geometry


@functools.lru_cache(maxsize=256)
def _neutral(idn: Identity) -> np.ndarray:
    """(68, 2) float64 landmarks of the resting face in the face frame (read-only, cached)."""
    lm = np.zeros((68, 2))
    w, n = idn.face_width, idn.jaw_square
    phi = np.linspace(0.0, np.pi, 17)
    c, s = np.cos(phi), np.sin(phi)
    y0 = 0.05
    lm[0:17, 0] = -w * np.sign(c) * np.abs(c) ** (2 / n)
    lm[0:17, 1] = y0 + (idn.chin - y0) * np.abs(s) ** (2 / n)
    # brows, outer (u=0) to inner (u=1) on the subject's right
    u = np.linspace(0.0, 1.0, 5)
    inner = 0.13
    bx = -(inner + idn.brow_length * (1 - u))
    by = -idn.brow_gap - idn.brow_arch * np.sin(np.pi * (0.15 + 0.75 * u)) + 0.03 * (1 - u)
    lm[17:22] = np.stack([bx, by], 1)
    lm[22:27] = np.stack([-bx[::-1], by[::-1]], 1)
    # nose
    nl = idn.nose_length
    lm[27:31] = [[0, -0.04], [0, 0.3 * nl], [0, 0.6 * nl], [0, nl]]
    nw = idn.nose_width
    lm[31:36, 0] = [-nw, -0.5 * nw, 0, 0.5 * nw, nw]
    lm[31:36, 1] = nl + np.array([0.05, 0.085, 0.1, 0.085, 0.05])
    # eyes
    a, h, t = idn.eye_width / 2, idn.eye_height, idn.eye_tilt
    right = [(-a, t), (-a / 3, -0.5 * h), (a / 3, -0.5 * h), (a, -0.3 * t), (a / 3, 0.42 * h), (-a / 3, 0.42 * h)]
    lm[36:42] = np.array(right) + [-0.5, 0.0]
    left = [(-a, -0.3 * t), (-a / 3, -0.5 * h), (a / 3, -0.5 * h), (a, t), (a / 3, 0.42 * h), (-a / 3, 0.42 * h)]
    lm[42:48] = np.array(left) + [0.5, 0.0]
    # mouth
    my, mw, ul, ll = idn.mouth_y, idn.mouth_width, idn.upper_lip, idn.lower_lip
    lm[48:60] = [
        (-mw, my), (-0.6 * mw, my - 0.8 * ul), (-0.22 * mw, my - ul), (0, my - 0.85 * ul),
        (0.22 * mw, my - ul), (0.6 * mw, my - 0.8 * ul), (mw, my),
        (0.6 * mw, my + 0.85 * ll), (0.25 * mw, my + ll), (0, my + 1.02 * ll),
        (-0.25 * mw, my + ll), (-0.6 * mw, my + 0.85 * ll),
    ]
    e = 0.01
    lm[60:68] = [
        (-0.86 * mw, my), (-0.35 * mw, my - e), (0, my - e), (0.35 * mw, my - e),
        (0.86 * mw, my), (0.35 * mw, my + e), (0, my + e), (-0.35 * mw, my + e),
    ]
    lm.flags.writeable = False
    return lm


def _sides(lm0: np.ndarray) -> np.ndarray:
    """(68,) side of each landmark: -1 subject's right (image left), +1 left, 0 midline."""
    x = lm0[:, 0]
    return np.where(x < -0.02, -1.0, np.where(x > 0.02, 1.0, 0.0))


# Landmark moves per AU at full strength: (indices, outward dx, dy) in IOD. "Outward" is away
# from the midline (the sign follows each point's side), so one entry serves both sides.
_R = np.array
_MOVES: dict[int, list] = {
    1: [((18, 19, 20, 21, 22, 23, 24, 25), 0.0, -0.2 * _R([0.1, 0.4, 0.75, 1, 1, 0.75, 0.4, 0.1]))],
    2: [((17, 18, 19, 20, 23, 24, 25, 26), 0.0, -0.2 * _R([1, 0.85, 0.45, 0.1, 0.1, 0.45, 0.85, 1]))],
    4: [(tuple(range(17, 27)),
         -0.09 * _R([0, 0.1, 0.3, 0.6, 1, 1, 0.6, 0.3, 0.1, 0]),
         0.13 * _R([0.3, 0.5, 0.75, 0.95, 1, 1, 0.95, 0.75, 0.5, 0.3]))],
    5: [((37, 38, 43, 44), 0.0, -0.12)],
    6: [((40, 41, 46, 47), 0.0, -0.045), ((36, 45), 0.0, -0.01)],
    7: [((40, 41, 46, 47), 0.0, -0.08), ((37, 38, 43, 44), 0.0, 0.02)],
    9: [((31, 32, 33, 34, 35), _R([0.035, 0.015, 0, 0.015, 0.035]), -0.07), ((30,), 0.0, -0.025)],
    10: [((49, 50, 51, 52, 53), 0.0, -0.12 * _R([0.8, 1, 1, 1, 0.8])), ((61, 62, 63), 0.0, -0.1),
         ((48, 54, 60, 64), 0.0, -0.02)],
    12: [((48, 54, 60, 64), 0.12, -0.2), ((49, 53, 59, 55), 0.055, _R([-0.08, -0.08, -0.1, -0.1])),
         ((61, 63, 67, 65), 0.02, -0.03), ((50, 52, 58, 56), 0.0, -0.02)],
    14: [((48, 54, 60, 64), -0.06, -0.04), ((49, 53), 0.0, 0.02), ((59, 55), 0.0, -0.02)],
    15: [((48, 54, 60, 64), 0.01, 0.14), ((49, 53), 0.0, 0.05), ((59, 55), 0.0, 0.06),
         ((61, 63, 67, 65), 0.0, 0.03)],
    16: [((55, 56, 57, 58, 59), 0.0, 0.12 * _R([0.55, 0.9, 1, 0.9, 0.55])),
         ((65, 66, 67), 0.0, 0.12 * _R([0.85, 1, 0.85]))],
    17: [((55, 56, 57, 58, 59), 0.0, -0.08 * _R([0.6, 1, 1, 1, 0.6])), ((65, 66, 67), 0.0, -0.05),
         ((7, 8, 9), 0.0, -0.05 * _R([0.6, 1, 0.6])), ((50, 51, 52), 0.0, -0.02)],
    20: [((48, 54, 60, 64), 0.14, 0.02), ((49, 53, 59, 55), 0.06, 0.0), ((50, 51, 52), 0.0, 0.02),
         ((56, 57, 58), 0.0, -0.02)],
    23: [((49, 50, 51, 52, 53), 0.0, 0.075 * _R([0.6, 1, 1, 1, 0.6])),
         ((55, 56, 57, 58, 59), 0.0, -0.09 * _R([0.6, 1, 1, 1, 0.6])), ((48, 54, 60, 64), -0.07, 0.0)],
    24: [((49, 50, 51, 52, 53), 0.0, 0.05), ((55, 56, 57, 58, 59), 0.0, -0.06),
         ((61, 62, 63), 0.0, 0.01), ((65, 66, 67), 0.0, -0.01)],
    25: [((61, 62, 63), 0.0, -0.03), ((65, 66, 67), 0.0, 0.16 * _R([0.8, 1, 0.8])),
         ((55, 56, 57, 58, 59), 0.0, 0.09 * _R([0.6, 0.9, 1, 0.9, 0.6]))],
    26: [((4, 5, 6, 7, 8, 9, 10, 11, 12), 0.0, 0.28 * _R([0.03, 0.3, 0.65, 0.9, 1, 0.9, 0.65, 0.3, 0.03])),
         ((55, 56, 57, 58, 59), 0.0, 0.26 * _R([0.7, 0.95, 1, 0.95, 0.7])),
         ((65, 66, 67), 0.0, 0.28 * _R([0.85, 1, 0.85])), ((61, 62, 63), 0.0, -0.02),
         ((48, 54, 60, 64), -0.03, 0.07)],
}


def _dense_moves() -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per AU, the (68, 2) landmark displacement at full strength on the right and left side.

    Midline points take half of each side's move, so a one-sided AU moves them half as far.
    """
    sgn = _sides(_neutral(Identity()))
    out = {}
    for au_n, moves in _MOVES.items():
        dense = np.zeros((68, 2))
        for idx, dx, dy in moves:
            idx = np.asarray(idx)
            dense[idx, 0] += sgn[idx] * np.asarray(dx, float)
            dense[idx, 1] += np.asarray(dy, float)
        right = np.where((sgn < 0)[:, None], dense, np.where((sgn == 0)[:, None], 0.5 * dense, 0.0))
        left = np.where((sgn > 0)[:, None], dense, np.where((sgn == 0)[:, None], 0.5 * dense, 0.0))
        out[au_n] = (right, left)
    return out


def face_landmarks(idn: Identity, mags: dict[int, tuple[float, float]]) -> np.ndarray:
    """(68, 2) float64 landmarks in the face frame (IOD units, origin between the eyes).

    ``mags`` maps an AU number to its drawing strength 0-1 (:func:`magnitude` of the intensity)
    on the subject's right and left side: ``{12: (0.71, 0.71)}`` is AU12 at C on both sides.
    """
    lm = _neutral(idn).copy()
    for au_n, (mr, ml) in mags.items():
        right, left = _DENSE[au_n]
        if mr:
            lm += mr * right
        if ml:
            lm += ml * left
    # keep lips and lids from crossing
    y = lm[:, 1]
    y[[67, 66, 65]] = np.maximum(y[[67, 66, 65]], y[[61, 62, 63]] + 0.005)
    y[49:54] = np.minimum(y[49:54], y[[61, 61, 62, 63, 63]] - 0.02)
    y[55:60] = np.maximum(y[55:60], y[[65, 65, 66, 67, 67]] + 0.025)
    y[[41, 40, 47, 46]] = np.maximum(y[[41, 40, 47, 46]], y[[37, 38, 43, 44]] + 0.015)
    return lm


_DENSE = _dense_moves()

# ------------------------------------------------------------------------------------------
# drawing helpers


@functools.lru_cache(maxsize=256)
def _cr_matrix(n: int, k: int, closed: bool) -> np.ndarray:
    """(M, n) matrix taking n control points to the Catmull-Rom curve through them."""
    t = np.arange(k) / k
    t2, t3 = t * t, t * t * t
    basis = 0.5 * np.stack([-t3 + 2 * t2 - t, 3 * t3 - 5 * t2 + 2, -3 * t3 + 4 * t2 + t, t3 - t2], 1)
    # padded control points as rows of a (n + 3, n) selection matrix
    eye = np.eye(n)
    if closed:
        pad = np.concatenate([eye[-1:], eye, eye[:2]])
        segs = n
    else:
        pad = np.concatenate([2 * eye[:1] - eye[1:2], eye, 2 * eye[-1:] - eye[-2:-1]])
        segs = n - 1
    rows = [basis @ pad[s : s + 4] for s in range(segs)]
    if not closed:
        rows.append(eye[-1:])
    return np.ascontiguousarray(np.concatenate(rows))


def _smooth(p: np.ndarray, k: int = 4, closed: bool = False) -> np.ndarray:
    """Catmull-Rom curve through the points ``p`` (n, 2), ``k`` samples per segment."""
    return _cr_matrix(len(p), k, closed) @ p


class _Canvas:
    """The supersampled drawing surface: face-frame coordinates to fixed-point pixels."""

    def __init__(self, size: int, background: float, base: tuple[np.ndarray, np.ndarray] | None = None):
        self.r = size * _SS
        self.iod = _IOD * self.r
        self.cx = self.r / 2.0
        self.cy = _EYE_Y * self.r
        self.off = np.array([self.cx, self.cy])
        self.off16 = self.off * _ONE + 0.5  # +0.5: truncation rounds
        self.iod16 = self.iod * _ONE
        self._ox, self._oy = float(self.off16[0]), float(self.off16[1])
        if base is None:
            self.img = np.full((self.r, self.r), int(round(background)), np.uint8)
            # the soft (blurred) shading layer lives at the output size: pixel centres of the
            # output sit at (x - (_SS - 1) / 2) / _SS in canvas pixels
            self.soft = np.zeros((size, size), np.float32)
        else:
            self.img, self.soft = base[0].copy(), base[1].copy()
        self.soft_iod16 = self.iod16 / _SS
        self.soft_off16 = (self.off - (_SS - 1) / 2.0) / _SS * _ONE + 0.5
        self._sox, self._soy = float(self.soft_off16[0]), float(self.soft_off16[1])
        self._widths: dict[float, int] = {}

    def px(self, p) -> np.ndarray:
        return np.asarray(p, dtype=np.float64) * self.iod + self.off

    def fx(self, p) -> np.ndarray:
        return (np.asarray(p, dtype=np.float64) * self.iod16 + self.off16).astype(np.int32)

    def t(self, width: float) -> int:
        """Line thickness in pixels for a width in IOD."""
        t = self._widths.get(width)
        if t is None:
            t = self._widths[width] = max(1, int(round(width * self.iod)))
        return t

    def poly(self, pts, tone):
        cv2.fillPoly(self.img, [self.fx(pts)], _c(tone), cv2.LINE_AA, _SHIFT)

    def line(self, pts, tone, width, closed=False):
        cv2.polylines(self.img, [self.fx(pts)], closed, _c(tone), self.t(width), cv2.LINE_AA, _SHIFT)

    def lines(self, curves, tone, width):
        """Several open curves of one tone and width: (k, n, 2) or a list of (n, 2)."""
        pts = list(self.fx(curves)) if isinstance(curves, np.ndarray) else [self.fx(c) for c in curves]
        cv2.polylines(self.img, pts, False, _c(tone), self.t(width), cv2.LINE_AA, _SHIFT)

    def ellipse(self, centre, axes, tone, angle=0.0, thickness=-1):
        x, y = centre
        c = (int(x * self.iod16 + self._ox), int(y * self.iod16 + self._oy))
        ax = (int(axes[0] * self.iod16), int(axes[1] * self.iod16))
        cv2.ellipse(self.img, c, ax, angle, 0, 360, _c(tone), thickness, cv2.LINE_AA, _SHIFT)

    def sx(self, p) -> np.ndarray:
        return (np.asarray(p, dtype=np.float64) * self.soft_iod16 + self.soft_off16).astype(np.int32)

    def st(self, width: float) -> int:
        return max(1, int(round(width * self.iod / _SS)))

    def soft_line(self, pts, value, width):
        cv2.polylines(self.soft, [self.sx(pts)], False, float(value), self.st(width), cv2.LINE_8, _SHIFT)

    def soft_lines(self, curves, value, width):
        cv2.polylines(self.soft, list(self.sx(c) for c in curves), False, float(value), self.st(width),
                      cv2.LINE_8, _SHIFT)

    def soft_ellipse(self, centre, axes, value, angle=0.0):
        x, y = centre
        c = (int(x * self.soft_iod16 + self._sox), int(y * self.soft_iod16 + self._soy))
        ax = (int(axes[0] * self.soft_iod16), int(axes[1] * self.soft_iod16))
        cv2.ellipse(self.soft, c, ax, angle, 0, 360, float(value), -1, cv2.LINE_8, _SHIFT)


def _c(tone) -> int:
    return int(min(255, max(0, round(float(tone)))))


@functools.lru_cache(maxsize=64)
def _shade(r: int, face_width: float) -> np.ndarray:
    """(r, r) float32 brightness factor: a head lit from the front, darker towards its rim."""
    iod, cx, cy = _IOD * r, r / 2.0 - 0.5, _EYE_Y * r - 0.5
    yy, xx = np.mgrid[0:r, 0:r].astype(np.float32)
    u = (xx - cx) / (iod * face_width * 1.05)
    v = (yy - cy) / iod - 0.35
    r2 = u * u + (v / 1.5) ** 2
    return (1.0 - 0.22 * np.clip(r2, 0, 1.2) ** 2).astype(np.float32)


def _hair_strands(seed: int, w: float) -> list[np.ndarray]:
    """Curved strands inside the hair: arcs concentric with the head, a subject's own."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(10):
        f = rng.uniform(0.72, 0.97)
        a0 = rng.uniform(0.15, 0.75) * np.pi
        a = np.linspace(a0, a0 + rng.uniform(0.15, 0.35) * np.pi, 6)
        out.append(np.stack([np.cos(a) * w * 1.14 * f, -0.12 - np.sin(a) * 1.35 * f], 1))
    return out


# ------------------------------------------------------------------------------------------
# the face


_TEETH = np.stack([np.zeros(13), np.sin(np.linspace(0, np.pi, 13)) ** 0.5], 1)
_BROW_TAPER = np.stack([np.zeros(13), np.linspace(0.55, 1.0, 13)], 1)


@functools.lru_cache(maxsize=256)
def _forehead(idn: Identity) -> np.ndarray:
    """(13, 2) the forehead arc from the left temple over the hairline to the right temple."""
    w = idn.face_width
    phi = np.linspace(0.0, np.pi, 15)[1:-1]
    y0 = _neutral(idn)[16, 1]
    return np.stack([w * np.cos(phi), y0 + (idn.hairline - y0) * np.sin(phi) ** 0.45], 1)


@functools.lru_cache(maxsize=32)
def _base(idn: Identity, size: int) -> tuple[np.ndarray, np.ndarray]:
    """What no AU moves, drawn once per identity and size: background, hair, ears, neck and
    the resting soft shading (eye sockets, nose sides, cheeks). Read-only arrays."""
    cv = _Canvas(size, idn.background)
    w, skin = idn.face_width, idn.skin
    cv.ellipse((0, -0.12), (w * 1.14, 1.35), idn.hair)
    strand = idn.hair + (18 if idn.hair < 100 else -22)
    cv.lines(_hair_strands(idn.hair_seed, w), strand, 0.03)
    for side in (-1, 1):
        cv.ellipse((side * w * 0.98, 0.25), (0.1, 0.2), skin * 0.9)
    cv.poly([(-0.48 * w, 1.0), (0.48 * w, 1.0), (0.56 * w, 3.0), (-0.56 * w, 3.0)], skin * 0.82)
    nl = idn.nose_length
    for side in (-1, 1):
        cv.soft_ellipse((side * 0.5, -0.1), (0.3, 0.15), -14)
        cv.soft_line([(side * 0.1, 0.0), (side * 0.13, nl - 0.05), (side * (idn.nose_width + 0.02), nl + 0.02)],
                     -16, 0.05)
        cv.soft_ellipse((side * 0.55, 0.33), (0.2, 0.12), 7)
    cv.soft_ellipse((0, nl - 0.04), (0.06, 0.05), 12)
    cv.img.flags.writeable = False
    cv.soft.flags.writeable = False
    return cv.img, cv.soft


_L4 = np.linspace(-1.0, 1.0, 4)
_L5 = np.linspace(-1.0, 1.0, 5)
# texture templates, in IOD, relative to an anchor point; right side (image left) where sided
_AU1_WRINKLES = np.stack([np.stack([0.33 * _L5, -dy - 0.05 * (1 - _L5**2)], 1) for dy in (0.16, 0.28, 0.4)])
_AU2_WRINKLES = np.stack([np.stack([0.2 * _L4, -dy + 0.04 * _L4**2], 1) for dy in (0.15, 0.27)])
_AU4_FURROWS = np.array([[[-0.055, 0.0], [-0.044, 0.12], [-0.05, 0.22]], [[0.055, 0.0], [0.044, 0.12], [0.05, 0.22]]])
_CROW_START = np.array([[[-0.06, 0.0]] * 2] * 3)
_CROW_DIR = np.array([[[0.0, 0.0], [-math.cos(a), math.sin(a)]] for a in np.radians([-30, 0, 30])])
_INFRA = np.stack([np.linspace(-0.3, -0.82, 5), 0.36 - 0.08 * ((np.linspace(-0.3, -0.82, 5) + 0.56) / 0.26) ** 2], 1)
_DIMPLE = np.array([[-0.055, -0.09], [-0.09, 0.0], [-0.055, 0.09]])
_DEPRESSOR = np.array([[-0.03, 0.03], [-0.07, 0.12], [-0.09, 0.22]])
_STRETCH = np.array([[[-0.05, -0.03], [-0.17, -0.08]], [[-0.05, 0.03], [-0.17, 0.08]]])
_CHIN_FURROW = np.stack([0.17 * _L5, 0.07 + 0.03 * _L5**2], 1)
_CHIN_DOTS = ((-0.08, 0.08), (0.07, 0.1), (0.0, 0.16), (-0.05, 0.19), (0.09, 0.18))
_MIRROR = np.array([-1.0, 1.0])


def _side(template: np.ndarray, side: int) -> np.ndarray:
    """A right-side template as is (side -1) or mirrored to the left (side +1)."""
    return template if side < 0 else template * _MIRROR


@functools.lru_cache(maxsize=256)
def _nose_parts(idn: Identity) -> tuple[np.ndarray, np.ndarray]:
    """AU9 bridge wrinkles (3, 3, 2) and nose-side shadows (2, 2, 2) of the resting nose."""
    lm = _neutral(idn)
    y28, y29, y30 = lm[28, 1], lm[29, 1], lm[30, 1]
    wr = []
    for j, y in enumerate(np.linspace(y28 - 0.12, y29 - 0.02, 3)):
        half = 0.09 + 0.02 * j
        wr.append([(-half, y + 0.02), (0.0, y), (half, y + 0.02)])
    sides = [[(sd * 0.12, y28), (sd * 0.2, y30 - 0.05)] for sd in (-1, 1)]
    return np.array(wr), np.array(sides)


def _draw(cv: _Canvas, idn: Identity, lm: np.ndarray, m: dict[int, tuple[float, float]]):
    """Draw everything in face-frame coordinates onto the canvas (before shading)."""
    skin = idn.skin
    zero = (0.0, 0.0)

    def mx(au_n):
        return max(m.get(au_n, zero))

    cv.poly(np.concatenate([_smooth(lm[0:17], 3), _forehead(idn)]), skin)
    cv.soft_ellipse((0, lm[33, 1] + 0.05), (0.16, 0.035), -16)
    cv.soft_ellipse((0, lm[57, 1] + 0.08), (0.2, 0.045), -14)
    cv.soft_line(_smooth(lm[3:14], 2), -22, 0.07)

    # nasolabial folds: faint at rest, deepened by AU10 and AU12
    m10, m12 = m.get(10, zero), m.get(12, zero)
    for k, side, corner, wing_i in ((0, -1, 48, 31), (1, 1, 54, 35)):
        depth = idn.fold_depth * 0.35 + m10[k] * 0.8 + m12[k] * 0.9
        if depth <= 0.02:
            continue
        wx, wy = lm[wing_i]
        cx_, cy_ = lm[corner]
        pts = np.array([(wx + side * 0.04, wy - 0.02), (wx + side * 0.1, wy + 0.12),
                        (cx_ + side * 0.09, cy_ - 0.02), (cx_ + side * 0.11, cy_ + 0.1)])
        curve = _smooth(pts, 3)
        cv.soft_line(curve, -60 * depth, 0.06)
        if depth > 0.3:
            cv.line(curve[:7], skin * (1 - 0.35 * min(depth, 1.0)), 0.03)
            cv.soft_ellipse((cx_ + side * 0.2, cy_ - 0.17), (0.14, 0.09), 22 * depth)  # cheek above

    # AU6: cheeks raised, lower-lid bulge, infraorbital furrow, crow's feet; AU7: tensed lower lid
    m6, m7 = m.get(6, zero), m.get(7, zero)
    for k, side, outer_i, lo in ((0, -1, 36, (40, 41)), (1, 1, 45, (46, 47))):
        s6, s7 = m6[k], m7[k]
        if s6 <= 0 and s7 <= 0:
            continue
        lower = lm[list(lo)]
        lx, ly = 0.5 * (lower[0] + lower[1])
        half = 0.5 * abs(lower[0, 0] - lower[1, 0])
        if s6 > 0:
            cv.soft_ellipse((side * 0.55, 0.3), (0.22, 0.11), 26 * s6)
            bulge = np.empty((5, 2))
            bulge[:, 0] = lx + (half + 0.1) * _L5
            bulge[:, 1] = ly + 0.07 + 0.03 * _L5**2
            cv.line(bulge, skin * (1 - 0.4 * s6), 0.035)
            cv.soft_line(_side(_INFRA, side), -40 * s6, 0.05)
            crow = lm[outer_i] + _side(_CROW_START + (0.07 + 0.12 * s6) * _CROW_DIR, side)
            cv.lines(crow, skin * (1 - 0.45 * s6), 0.03)
        if s7 > 0:
            roll = np.empty((4, 2))
            roll[:, 0] = lx + (half + 0.03) * _L4
            roll[:, 1] = ly + 0.04
            cv.line(roll, skin * (1 - 0.3 * s7), 0.03)

    # forehead: AU1 wrinkles in the middle, AU2 wrinkles above the outer brows
    s1 = mx(1)
    if s1 > 0:
        top = min(lm[21, 1], lm[22, 1])
        cv.lines(_AU1_WRINKLES[: 3 if s1 >= 0.5 else 2] + (0.0, top), skin * (1 - 0.42 * s1), 0.032)
    m2 = m.get(2, zero)
    for k, side, brow in ((0, -1, slice(17, 20)), (1, 1, slice(24, 27))):
        if m2[k] > 0:
            b = lm[brow]
            anchor = (b[:, 0].mean() + side * 0.05, b[:, 1].min())
            cv.lines(_AU2_WRINKLES + anchor, skin * (1 - 0.4 * m2[k]), 0.03)
    # AU4: vertical furrows between the brows, the glabella shaded
    s4 = mx(4)
    if s4 > 0:
        ytop = min(lm[21, 1], lm[22, 1]) - 0.12
        cv.lines(_AU4_FURROWS + (0.0, ytop), skin * (1 - 0.5 * s4), 0.035)
        cv.soft_ellipse((0, ytop + 0.15), (0.12, 0.09), -18 * s4)

    # eyes first (brows and textures may overlap the lid skin), then the brows
    sclera = min(235.0, skin + 55)
    _draw_eyes(cv, idn, lm, sclera)
    th = idn.brow_thickness * _BROW_TAPER
    brows = []
    for brow in (lm[17:22], lm[22:27][::-1]):
        c = _smooth(brow, 3)
        brows.append(cv.fx(np.concatenate([c - th * 0.6, (c + th * 0.4)[::-1]])))
    cv2.fillPoly(cv.img, brows, _c(idn.brow), cv2.LINE_AA, _SHIFT)

    # nose: wings, nostrils, AU9 wrinkles across the bridge and shadows beside it
    s9 = mx(9)
    arcs = []
    for side, wing_i, nos_i in ((-1, 31, 32), (1, 35, 34)):
        wx, wy = lm[wing_i]
        nx, ny = lm[nos_i]
        arcs.append(_smooth(np.array([(wx - side * 0.01, wy - 0.1), (wx + side * 0.035, wy - 0.03), (wx, wy),
                                      (nx, ny + 0.01)]), 3))
        cv.ellipse((0.5 * (nx + wx), 0.5 * (ny + wy) - 0.005), (0.045 + 0.01 * s9, 0.02 + 0.006 * s9),
                   skin * 0.35, angle=side * 15)
    cv.lines(arcs, skin * (0.62 - 0.12 * s9), 0.03)
    if s9 > 0:
        wrinkles, shadows = _nose_parts(idn)
        cv.lines(wrinkles, skin * (1 - 0.6 * s9), 0.04)
        cv.soft_lines(shadows, -45 * s9, 0.07)

    _draw_mouth(cv, idn, lm, m)

    # glasses (fixed on the resting eye positions, so they never move with an AU)
    if idn.glasses:
        tone = idn.glasses_tone
        w = idn.face_width
        for side in (-1, 1):
            cv.ellipse((side * 0.5, -0.005), (0.29, 0.19), tone, thickness=cv.t(0.035))
        cv.lines([np.array([(-0.79, -0.04), (-w * 0.99, -0.02)]), np.array([(0.79, -0.04), (w * 0.99, -0.02)]),
                  np.array([(-0.22, -0.05), (0, -0.09), (0.22, -0.05)])], tone, 0.035)


def _draw_eyes(cv: _Canvas, idn: Identity, lm: np.ndarray, sclera: float):
    """Both eyes: sclera, iris, pupil and glint, lid skin over the iris outside the opening,
    the lids and the crease above."""
    skin = idn.skin
    eyes = (lm[36:42], lm[42:48])
    cv2.fillPoly(cv.img, [cv.fx(_smooth(e, 3, closed=True)) for e in eyes], _c(sclera), cv2.LINE_AA, _SHIFT)
    rad = int(round(idn.iris_radius * cv.iod16))
    r = idn.iris_radius + 0.03
    uppers, lowers, covers, creases = [], [], [], []
    for e in eyes:
        centre = 0.5 * (e[0] + e[3])
        c = cv.fx(centre + (0.0, 0.012))
        cc = (int(c[0]), int(c[1]))
        cv2.circle(cv.img, cc, rad, _c(idn.iris), -1, cv2.LINE_AA, _SHIFT)
        cv2.circle(cv.img, cc, int(rad * 0.45), _c(idn.iris * 0.3), -1, cv2.LINE_AA, _SHIFT)
        cv2.circle(cv.img, (cc[0] + int(0.3 * rad), cc[1] - int(0.35 * rad)), int(rad * 0.22), 235, -1,
                   cv2.LINE_AA, _SHIFT)
        upper = _smooth(e[[0, 1, 2, 3]], 4)
        lower = _smooth(e[[3, 4, 5, 0]], 4)
        cx_, cy_ = centre
        covers.append(np.concatenate([upper, [(e[3, 0], e[3, 1] - r), (cx_, cy_ - 2 * r), (e[0, 0], e[0, 1] - r)]]))
        covers.append(np.concatenate([lower, [(e[0, 0], e[0, 1] + r), (cx_, cy_ + 2 * r), (e[3, 0], e[3, 1] + r)]]))
        uppers.append(upper)
        lowers.append(lower)
        creases.append(_smooth(e[[0, 1, 2, 3]] + _CREASE, 3)[2:-2])
    cv2.fillPoly(cv.img, [cv.fx(p) for p in covers], _c(skin), cv2.LINE_AA, _SHIFT)
    cv.lines(np.stack(uppers), skin * 0.2, 0.05)
    cv.lines(np.stack(lowers), skin * 0.6, 0.025)
    cv.lines(np.stack(creases), skin * 0.72, 0.025)


_CREASE = np.array([[0.03, -0.02], [0, -0.075], [0, -0.075], [-0.03, -0.03]])


def _draw_mouth(cv: _Canvas, idn: Identity, lm: np.ndarray, m: dict[int, tuple[float, float]]):
    skin = idn.skin
    zero = (0.0, 0.0)
    inner = lm[60:68]
    outer = lm[48:60]
    gap = float(np.max(lm[[65, 66, 67], 1] - lm[[63, 62, 61], 1]))
    if gap > 0.035:
        # the opening, upper teeth under the upper lip, lower teeth when wide open; the lips
        # drawn next cover whatever of the teeth lies outside the opening
        cv.poly(_smooth(inner, 3, closed=True), skin * 0.16)
        up = _smooth(inner[[0, 1, 2, 3, 4]], 3)
        teeth_h = min(0.07, 0.6 * (gap - 0.1))
        if teeth_h > 0.01:
            cv.poly(np.concatenate([up, (up + _TEETH * teeth_h)[::-1]]), min(230, skin + 45))
        if gap > 0.16:
            lo = _smooth(inner[[4, 5, 6, 7, 0]], 3)
            cv.poly(np.concatenate([lo, (lo - _TEETH * 0.045)[::-1]]), min(220, skin + 30))
    # AU23 tightening darkens the lip red and rims it; AU24 pressing pales it
    s23, s24 = max(m.get(23, zero)), max(m.get(24, zero))
    up_outer = _smooth(outer[0:7], 3)
    lo_outer = _smooth(outer[[6, 7, 8, 9, 10, 11, 0]], 3)
    cv.poly(np.concatenate([up_outer, _smooth(inner[[4, 3, 2, 1, 0]], 3)]), skin * (0.66 - 0.2 * s23 + 0.06 * s24))
    cv.poly(np.concatenate([lo_outer, _smooth(inner[[0, 7, 6, 5, 4]], 3)]), skin * (0.74 - 0.2 * s23 + 0.06 * s24))
    if gap <= 0.035:
        line = _smooth(0.5 * (inner[[0, 1, 2, 3, 4]] + inner[[0, 7, 6, 5, 4]]), 3)
        cv.line(line, skin * (0.3 - 0.15 * s24), 0.03 + 0.04 * s24)
    cv.soft_ellipse((lm[57, 0], 0.5 * (lm[57, 1] + lm[66, 1]) + 0.005), (0.1, 0.025), 10)  # lower-lip light
    if s23 > 0:
        cv.lines([up_outer, lo_outer], skin * (1 - 0.6 * s23), 0.028)
    if s24 > 0:
        cv.soft_ellipse((0, lm[51, 1] - 0.06), (0.2, 0.045), 28 * s24)
        cv.soft_ellipse((0, lm[57, 1] + 0.05), (0.18, 0.045), 28 * s24)

    # corners: AU14 dimples, AU15 depressor folds, AU20 stretch lines
    m14, m15, m20 = m.get(14, zero), m.get(15, zero), m.get(20, zero)
    for k, side, corner in ((0, -1, 48), (1, 1, 54)):
        if m14[k] <= 0 and m15[k] <= 0 and m20[k] <= 0:
            continue
        c = lm[corner]
        if m14[k] > 0:
            cv.line(_smooth(c + _side(_DIMPLE, side), 3), skin * (1 - 0.8 * m14[k]), 0.055)
            cv.soft_ellipse((c[0] + side * 0.1, c[1]), (0.07, 0.1), -60 * m14[k])
        if m15[k] > 0:
            pts = c + _side(_DEPRESSOR, side)
            cv.line(_smooth(pts, 3), skin * (1 - 0.4 * m15[k]), 0.035)
            cv.soft_line(pts, -30 * m15[k], 0.06)
        if m20[k] > 0:
            cv.lines(c + _side(_STRETCH, side), skin * (1 - 0.35 * m20[k]), 0.028)
    # AU17: mentolabial furrow deepened, chin boss bulged with dimpled skin
    s17 = mx17 = max(m.get(17, zero))
    if mx17 > 0:
        furrow = _CHIN_FURROW + (0.0, lm[57, 1])
        cv.line(furrow, skin * (1 - 0.6 * s17), 0.045)
        cv.soft_line(furrow, -45 * s17, 0.08)
        mid = 0.5 * (lm[57] + lm[8])
        cv.soft_ellipse((mid[0], mid[1] + 0.07), (0.17, 0.1), 45 * s17)
        dot = skin * (1 - 0.45 * s17)
        for dx, dy in _CHIN_DOTS:
            cv.ellipse((mid[0] + dx, mid[1] + dy - 0.06), (0.025, 0.02), dot)


# ------------------------------------------------------------------------------------------
# public


def _validate(aus: dict, sides: dict | None) -> dict[int, tuple[float, float]]:
    if not isinstance(aus, dict):
        raise ValueError(f"aus: expected a dict {{AU number: intensity 0-5}}, got {type(aus).__name__}")
    sides = {} if sides is None else dict(sides)
    out = {}
    for k, v in aus.items():
        try:
            n = int(k)
        except (TypeError, ValueError):
            raise ValueError(f"aus: key {k!r} is not an AU number") from None
        if n not in DRAWN_AUS:
            raise ValueError(f"aus: AU{n} is not drawn by the phantom; drawn AUs are {', '.join(map(str, DRAWN_AUS))}")
        x = float(v)
        if not (0.0 <= x <= 5.0):
            raise ValueError(f"aus: AU{n} intensity {v!r} is outside 0-5 (0 absent, 1=A ... 5=E)")
        s = magnitude(x)
        if s == 0:
            continue
        side = str(sides.get(n, "B")).upper()
        if side not in ("B", "R", "L"):
            raise ValueError(f"sides: AU{n} side {sides[n]!r} is not 'R' (subject's right), 'L' or 'B' (both)")
        out[n] = (s if side in ("B", "R") else 0.0, s if side in ("B", "L") else 0.0)
    for k in sides:
        if int(k) not in DRAWN_AUS:
            raise ValueError(f"sides: AU{k} is not drawn by the phantom")
    return out


def _affine(size: int, nz: Nuisance) -> np.ndarray:
    c = (size - 1) / 2.0
    mat = cv2.getRotationMatrix2D((c, c), nz.rotation, nz.scale)
    mat[:, 2] += np.array(nz.shift) * size
    return mat


def render_face(
    identity: Identity,
    aus: dict[int, float],
    *,
    size: int = 64,
    nuisance: Nuisance | None = None,
    sides: dict[int, str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one grey face of ``identity`` showing the AUs ``aus``.

    Parameters
    ----------
    identity : Identity
        The subject (see :func:`random_identity`).
    aus : dict of int to float
        AU number -> intensity 0-5 (0 absent, 1=A trace ... 5=E maximum); fractional values
        are allowed. Only the AUs in :data:`DRAWN_AUS` are accepted.
    size : int
        Side of the square output image, 48-128 px (other sizes from 24 to 512 also work).
    nuisance : Nuisance or None
        Pose, light, gamma, blur and noise; None draws the face upright, centred and clean.
    sides : dict of int to str or None
        ``{AU: "R" | "L" | "B"}``: show an AU on the subject's right only (image left), left
        only, or both sides (the default).

    Returns
    -------
    image : (size, size) uint8
    landmarks : (68, 2) float32
        iBUG-68 points of the drawn face, x then y in pixel-centre coordinates of ``image``,
        after the nuisance transform.
    """
    return render_strengths(identity, _validate(aus, sides), size=size, nuisance=nuisance)


def render_strengths(identity: Identity, mags: dict[int, tuple[float, float]], *, size: int = 64,
                     nuisance: Nuisance | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw one face from drawing strengths per AU and side (what :func:`render_face` draws
    after mapping intensities through :func:`magnitude`; phantom sequences draw fractional
    strengths below the trace level with it).

    Parameters
    ----------
    identity : Identity
    mags : dict of int to (float, float)
        AU number -> strength 0-1 on the subject's right and left side (AUs of :data:`DRAWN_AUS`).
    size : int
        Image side in pixels (24-512).
    nuisance : Nuisance or None

    Returns
    -------
    image : (size, size) uint8
    landmarks : (68, 2) float32
        As :func:`render_face` returns them.
    """
    size = int(size)
    if not 24 <= size <= 512:
        raise ValueError(f"size: expected 24-512 px (48-128 is the designed range), got {size}")
    for a, (mr, ml) in mags.items():
        if a not in DRAWN_AUS:
            raise ValueError(f"mags: AU{a} is not drawn by the phantom; drawn AUs are {', '.join(map(str, DRAWN_AUS))}")
        if not (0.0 <= mr <= 1.0 and 0.0 <= ml <= 1.0):
            raise ValueError(f"mags: AU{a} strength {(mr, ml)} outside 0-1")
    mags = {a: m for a, m in mags.items() if m[0] or m[1]}
    lm = face_landmarks(identity, mags)
    cv = _Canvas(size, identity.background, _base(identity, size))
    _draw(cv, identity, lm, mags)
    soft = cv2.GaussianBlur(cv.soft, (0, 0), 0.05 * cv.iod / _SS)
    img = cv2.resize(cv.img, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    img = img * _shade(size, round(identity.face_width, 4)) + soft
    np.clip(img, 0, 255, out=img)
    pts = (cv.px(lm) - (_SS - 1) / 2.0) / _SS
    if nuisance is not None:
        img, pts = _apply_nuisance(img, pts, nuisance, size)
    return (img + 0.5).astype(np.uint8), pts.astype(np.float32)


@functools.lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """(640, 640) float32 unit Gaussian noise; each image takes the window its seed picks."""
    return np.random.default_rng(20260101).standard_normal((640, 640), dtype=np.float32)


def _apply_nuisance(img: np.ndarray, pts: np.ndarray, nz: Nuisance, size: int):
    mat = _affine(size, nz)
    if nz.rotation or nz.scale != 1.0 or any(nz.shift):
        img = cv2.warpAffine(img, mat, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        pts = pts @ mat[:, :2].T + mat[:, 2]
    if nz.light:
        a = math.radians(nz.light_angle)
        ramp = _ramp(size)
        img = img * ((1.0 + nz.light * math.sin(a) * ramp)[:, None] + (nz.light * math.cos(a)) * ramp[None, :])
    if nz.gamma != 1.0:
        np.clip(img, 0, 255, out=img)
        img = cv2.pow(img * (1 / 255.0), 1.0 / nz.gamma) * 255.0
    if nz.blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), nz.blur * size / 64.0)
    if nz.noise > 0:
        bank = _noise_bank()
        span = bank.shape[0] - size
        oy, ox = divmod(nz.seed % (span * span), span)
        img = img + bank[oy : oy + size, ox : ox + size] * nz.noise
    return np.clip(img, 0, 255), pts


@functools.lru_cache(maxsize=16)
def _ramp(size: int) -> np.ndarray:
    """(size,) float32 positions from -0.5 to 0.5 across the image."""
    return ((np.arange(size, dtype=np.float32) - (size - 1) / 2) / size).astype(np.float32)
