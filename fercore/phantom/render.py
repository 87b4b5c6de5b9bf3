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

from .identity import Identity, Nuisance

__all__ = ["DRAWN_AUS", "magnitude", "render_face", "face_landmarks"]

#: The AUs the phantom draws, in column order of the generated FaceSet.
DRAWN_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 16, 17, 20, 23, 24, 25, 26)

_SS = 2  # supersampling factor
_IOD = 0.29  # inter-ocular distance as a fraction of the image side (before nuisance)
_EYE_Y = 0.38  # eye line as a fraction of the image side
_SHIFT = 4  # sub-pixel bits for OpenCV drawing
_ONE = 1 << _SHIFT


def magnitude(intensity: float) -> float:
    """Drawing strength 0-1 of an AU intensity 0-5 (A=1 ... E=5; 0 absent).

    Trace intensities stay visible at 48 px: A draws at 1/3 of E, C at 2/3.
    """
    k = float(intensity)
    if k <= 0:
        return 0.0
    return (min(k, 5.0) + 1.0) / 6.0


# ------------------------------------------------------------------------------------------
# geometry


def _neutral(idn: Identity) -> np.ndarray:
    """(68, 2) float64 landmarks of the resting face in the face frame."""
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
    return lm


def _sides(lm0: np.ndarray) -> np.ndarray:
    """(68,) side of each landmark: -1 subject's right (image left), +1 left, 0 midline."""
    x = lm0[:, 0]
    return np.where(x < -0.02, -1.0, np.where(x > 0.02, 1.0, 0.0))


def _point_mags(mags: dict[int, tuple[float, float]], sgn: np.ndarray) -> dict[int, np.ndarray]:
    out = {}
    for au_n, (mr, ml) in mags.items():
        out[au_n] = np.where(sgn < 0, mr, np.where(sgn > 0, ml, 0.5 * (mr + ml)))
    return out


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
    9: [((31, 32, 33, 34, 35), _R([0.025, 0.012, 0, 0.012, 0.025]), -0.055), ((30,), 0.0, -0.02)],
    10: [((49, 50, 51, 52, 53), 0.0, -0.1 * _R([0.8, 1, 1, 1, 0.8])), ((61, 62, 63), 0.0, -0.085),
         ((48, 54, 60, 64), 0.0, -0.02)],
    12: [((48, 54, 60, 64), 0.11, -0.17), ((49, 53, 59, 55), 0.05, _R([-0.07, -0.07, -0.09, -0.09])),
         ((61, 63, 67, 65), 0.02, -0.03), ((50, 52, 58, 56), 0.0, -0.02)],
    14: [((48, 54, 60, 64), -0.05, -0.03), ((49, 53), 0.0, 0.015), ((59, 55), 0.0, -0.015)],
    15: [((48, 54, 60, 64), 0.01, 0.14), ((49, 53), 0.0, 0.05), ((59, 55), 0.0, 0.06),
         ((61, 63, 67, 65), 0.0, 0.03)],
    16: [((55, 56, 57, 58, 59), 0.0, 0.12 * _R([0.55, 0.9, 1, 0.9, 0.55])),
         ((65, 66, 67), 0.0, 0.12 * _R([0.85, 1, 0.85]))],
    17: [((55, 56, 57, 58, 59), 0.0, -0.05 * _R([0.6, 1, 1, 1, 0.6])), ((65, 66, 67), 0.0, -0.03),
         ((7, 8, 9), 0.0, -0.035 * _R([0.6, 1, 0.6])), ((50, 51, 52), 0.0, -0.015)],
    20: [((48, 54, 60, 64), 0.14, 0.02), ((49, 53, 59, 55), 0.06, 0.0), ((50, 51, 52), 0.0, 0.02),
         ((56, 57, 58), 0.0, -0.02)],
    23: [((49, 50, 51, 52, 53), 0.0, 0.045 * _R([0.6, 1, 1, 1, 0.6])),
         ((55, 56, 57, 58, 59), 0.0, -0.055 * _R([0.6, 1, 1, 1, 0.6])), ((48, 54, 60, 64), -0.04, 0.0)],
    24: [((49, 50, 51, 52, 53), 0.0, 0.035), ((55, 56, 57, 58, 59), 0.0, -0.045),
         ((61, 62, 63), 0.0, 0.01), ((65, 66, 67), 0.0, -0.01)],
    25: [((61, 62, 63), 0.0, -0.025), ((65, 66, 67), 0.0, 0.08 * _R([0.8, 1, 0.8])),
         ((55, 56, 57, 58, 59), 0.0, 0.06 * _R([0.6, 0.9, 1, 0.9, 0.6]))],
    26: [((4, 5, 6, 7, 8, 9, 10, 11, 12), 0.0, 0.28 * _R([0.03, 0.3, 0.65, 0.9, 1, 0.9, 0.65, 0.3, 0.03])),
         ((55, 56, 57, 58, 59), 0.0, 0.26 * _R([0.7, 0.95, 1, 0.95, 0.7])),
         ((65, 66, 67), 0.0, 0.28 * _R([0.85, 1, 0.85])), ((61, 62, 63), 0.0, -0.02),
         ((48, 54, 60, 64), -0.03, 0.07)],
}
_MOVES = {k: [(np.array(i), np.asarray(dx, float), np.asarray(dy, float)) for i, dx, dy in v] for k, v in _MOVES.items()}


def face_landmarks(idn: Identity, mags: dict[int, tuple[float, float]]) -> np.ndarray:
    """(68, 2) float64 landmarks in the face frame for AU strengths ``{au: (right, left)}``."""
    lm0 = _neutral(idn)
    sgn = _sides(lm0)
    pm = _point_mags(mags, sgn)
    lm = lm0.copy()
    for au_n, m in pm.items():
        for idx, dx, dy in _MOVES.get(au_n, ()):
            mi = m[idx]
            lm[idx, 0] += sgn[idx] * dx * mi
            lm[idx, 1] += dy * mi
    # keep lips and lids from crossing
    inner_up = lm[[61, 62, 63], 1]
    lm[[67, 66, 65], 1] = np.maximum(lm[[67, 66, 65], 1], inner_up + 0.005)
    lm[[49, 50, 51, 52, 53], 1] = np.minimum(lm[[49, 50, 51, 52, 53], 1], lm[[61, 61, 62, 63, 63], 1] - 0.02)
    lm[[55, 56, 57, 58, 59], 1] = np.maximum(lm[[55, 56, 57, 58, 59], 1], lm[[65, 65, 66, 67, 67], 1] + 0.025)
    for up, lo in ((37, 41), (38, 40), (43, 47), (44, 46)):
        lm[lo, 1] = max(lm[lo, 1], lm[up, 1] + 0.015)
    return lm


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

    def __init__(self, size: int, background: float):
        self.r = size * _SS
        self.iod = _IOD * self.r
        self.cx = self.r / 2.0
        self.cy = _EYE_Y * self.r
        self.off = np.array([self.cx, self.cy])
        self.off16 = self.off * _ONE
        self.iod16 = self.iod * _ONE
        self.img = np.full((self.r, self.r), int(round(background)), np.uint8)
        self.soft = np.zeros((self.r, self.r), np.float32)

    def px(self, p) -> np.ndarray:
        return np.asarray(p, dtype=np.float64) * self.iod + self.off

    def fx(self, p) -> np.ndarray:
        return np.rint(np.asarray(p, dtype=np.float64) * self.iod16 + self.off16).astype(np.int32)

    def t(self, width: float) -> int:
        """Line thickness in pixels for a width in IOD."""
        return max(1, int(round(width * self.iod)))

    def poly(self, pts, tone, img=None):
        cv2.fillPoly(self.img if img is None else img, [self.fx(pts)], _c(tone), cv2.LINE_AA, _SHIFT)

    def line(self, pts, tone, width, closed=False):
        cv2.polylines(self.img, [self.fx(pts)], closed, _c(tone), self.t(width), cv2.LINE_AA, _SHIFT)

    def ellipse(self, centre, axes, tone, angle=0.0, img=None, thickness=-1, arc=(0, 360)):
        c = self.fx(centre)
        ax = np.round(np.asarray(axes) * self.iod * _ONE).astype(int)
        target = self.img if img is None else img
        lt = cv2.LINE_AA if target.dtype == np.uint8 else cv2.LINE_8
        color = _c(tone) if target.dtype == np.uint8 else float(tone)
        cv2.ellipse(target, (int(c[0]), int(c[1])), (int(ax[0]), int(ax[1])), angle, arc[0], arc[1],
                    color, thickness, lt, _SHIFT)

    def soft_line(self, pts, value, width):
        cv2.polylines(self.soft, [self.fx(pts)], False, float(value), self.t(width), cv2.LINE_8, _SHIFT)

    def soft_ellipse(self, centre, axes, value, angle=0.0):
        self.ellipse(centre, axes, value, angle=angle, img=self.soft)


def _c(tone) -> int:
    return int(min(255, max(0, round(float(tone)))))


@functools.lru_cache(maxsize=64)
def _shade(r: int, face_width: float) -> np.ndarray:
    """(r, r) float32 brightness factor: a head lit from the front, darker towards its rim."""
    iod, cx, cy = _IOD * r, r / 2.0, _EYE_Y * r
    yy, xx = np.mgrid[0:r, 0:r].astype(np.float32)
    u = (xx - cx) / (iod * face_width * 1.05)
    v = (yy - cy) / iod - 0.35
    r2 = u * u + (v / 1.5) ** 2
    return (1.0 - 0.22 * np.clip(r2, 0, 1.2) ** 2).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _hair_strands(seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(9):
        x0 = rng.uniform(-0.9, 0.9)
        ang = rng.uniform(-0.6, 0.6)
        length = rng.uniform(0.3, 0.6)
        t = np.linspace(0, 1, 4)[:, None]
        start = np.array([x0, -1.45 + rng.uniform(0, 0.2)])
        d = np.array([math.sin(ang), math.cos(ang)])
        out.append(start + t * length * d + np.array([0.05, 0]) * np.sin(3 * t))
    return tuple(out)


# ------------------------------------------------------------------------------------------
# the face


def _draw(cv: _Canvas, idn: Identity, lm: np.ndarray, m: dict[int, tuple[float, float]]):
    """Draw everything in face-frame coordinates onto the canvas (before shading)."""
    skin = idn.skin
    w = idn.face_width

    def mm(au_n):  # (right, left) strength
        return m.get(au_n, (0.0, 0.0))

    def mx(au_n):
        r, le = mm(au_n)
        return max(r, le)

    # head: hair behind, ears, neck, face
    cv.ellipse((0, -0.12), (w * 1.14, 1.35), idn.hair)
    strand = idn.hair + (18 if idn.hair < 100 else -22)
    for s in _hair_strands(idn.hair_seed):
        cv.line(s, strand, 0.03)
    for side in (-1, 1):
        cv.ellipse((side * w * 0.98, 0.25), (0.1, 0.2), skin * 0.9)
    cv.poly([(-0.48 * w, 1.0), (0.48 * w, 1.0), (0.56 * w, 3.0), (-0.56 * w, 3.0)], skin * 0.82)
    jaw = _smooth(lm[0:17], 3)
    phi = np.linspace(0.0, np.pi, 15)
    y0 = lm[16, 1]
    forehead = np.stack([w * np.cos(phi), y0 + (idn.hairline - y0) * np.sin(phi) ** 0.45], 1)
    cv.poly(np.concatenate([jaw, forehead[1:-1]]), skin)

    # soft shading (identity): eye sockets, nose sides, below the nose, lips and chin
    nl = lm[30, 1]
    for side in (-1, 1):
        cv.soft_ellipse((side * 0.5, -0.1), (0.3, 0.15), -14)
        cv.soft_line([(side * 0.1, 0.0), (side * 0.13, nl - 0.05), (side * (idn.nose_width + 0.02), nl + 0.02)],
                     -16, 0.05)
        cv.soft_ellipse((side * 0.55, 0.33), (0.2, 0.12), 7)
    cv.soft_ellipse((0, lm[33, 1] + 0.05), (0.16, 0.035), -16)
    cv.soft_ellipse((0, nl - 0.04), (0.06, 0.05), 12)
    cv.soft_ellipse((0, lm[57, 1] + 0.08), (0.2, 0.045), -14)
    cv.soft_line(_smooth(lm[3:14], 2), -22, 0.07)

    # nasolabial folds: at rest, deepened by AU10, AU11-like AU12 pull, and AU9
    r10, l10 = mm(10)
    r12, l12 = mm(12)
    r9, l9 = mm(9)
    for k, side, corner in ((0, -1, 48), (1, 1, 54)):
        depth = idn.fold_depth * 0.35 + (r10, l10)[k] * 0.8 + (r12, l12)[k] * 0.9 + (r9, l9)[k] * 0.25
        if depth <= 0.02:
            continue
        wing = lm[31 if side < 0 else 35]
        cx_, cy_ = lm[corner]
        pts = np.array([
            wing + (side * 0.04, -0.02),
            (wing[0] + side * 0.1, wing[1] + 0.12),
            (cx_ + side * 0.09, cy_ - 0.02),
            (cx_ + side * 0.11, cy_ + 0.1),
        ])
        cv.soft_line(_smooth(pts, 3), -60 * depth, 0.06)
        if depth > 0.3:
            cv.line(_smooth(pts[:3], 3), skin * (1 - 0.35 * min(depth, 1.0)), 0.03)
            # cheek lifted above the fold
            cv.soft_ellipse((cx_ + side * 0.2, cy_ - 0.17), (0.14, 0.09), 22 * depth)

    # AU6: cheeks raised (highlight moved up), lower-lid bulge, infraorbital furrow, crow's feet
    for k, side, eye in ((0, -1, slice(36, 42)), (1, 1, slice(42, 48))):
        s6 = mm(6)[k]
        s7 = mm(7)[k]
        e = lm[eye]
        outer = e[0] if side < 0 else e[3]
        lower = e[4:6] if side < 0 else e[4:6]
        if s6 > 0:
            cv.soft_ellipse((side * 0.55, 0.3), (0.22, 0.11), 26 * s6)
            bx = np.linspace(lower[:, 0].min() - 0.1, lower[:, 0].max() + 0.1, 5)
            by = lower[:, 1].mean() + 0.07 + 0.03 * ((bx - bx.mean()) / (np.ptp(bx) / 2)) ** 2
            cv.line(np.stack([bx, by], 1), skin * (1 - 0.4 * s6), 0.035)
            fx = np.linspace(side * 0.3, side * 0.82, 5)
            fy = 0.36 - 0.08 * ((fx - side * 0.56) / 0.26) ** 2
            cv.soft_line(np.stack([fx, fy], 1), -40 * s6, 0.05)
            for ang in (-30, 0, 30):
                a = math.radians(ang)
                start = outer + (side * 0.06, 0.0)
                d = np.array([side * math.cos(a), math.sin(a)])
                cv.line([start, start + 0.07 * d + 0.12 * s6 * d], skin * (1 - 0.45 * s6), 0.03)
        if s7 > 0:
            # tensed lower lid: a raised roll just under the lid
            bx = np.linspace(lower[:, 0].min() - 0.03, lower[:, 0].max() + 0.03, 4)
            by = np.full_like(bx, lower[:, 1].mean() + 0.04)
            cv.line(np.stack([bx, by], 1), skin * (1 - 0.3 * s7), 0.03)

    # forehead: AU1 wrinkles in the middle, AU2 wrinkles above the outer brows
    s1 = mx(1)
    if s1 > 0:
        top = min(lm[21, 1], lm[22, 1])
        for j, dy in enumerate((0.16, 0.28, 0.4)):
            if j == 2 and s1 < 0.5:
                continue
            xs = np.linspace(-0.33, 0.33, 5)
            ys = top - dy - 0.05 * (1 - (xs / 0.33) ** 2)
            cv.line(np.stack([xs, ys], 1), skin * (1 - 0.42 * s1), 0.032)
    for k, side, brow in ((0, -1, slice(17, 20)), (1, 1, slice(24, 27))):
        s2 = mm(2)[k]
        if s2 > 0:
            b = lm[brow]
            top = b[:, 1].min()
            for dy in (0.15, 0.27):
                xs = np.linspace(b[:, 0].min() + 0.05 * side, b[:, 0].max() + 0.05 * side, 4)
                ys = top - dy + 0.04 * ((xs - xs.mean()) / (np.ptp(xs) / 2)) ** 2
                cv.line(np.stack([xs, ys], 1), skin * (1 - 0.4 * s2), 0.03)
    # AU4: vertical furrows between the brows
    s4 = mx(4)
    if s4 > 0:
        ytop = min(lm[21, 1], lm[22, 1]) - 0.12
        for side in (-1, 1):
            x = side * 0.055
            cv.line([(x, ytop), (x * 0.8, ytop + 0.12), (x * 0.9, ytop + 0.22)], skin * (1 - 0.5 * s4), 0.035)
        cv.soft_ellipse((0, ytop + 0.15), (0.12, 0.09), -18 * s4)

    # brows: thick at the inner end, thinner outwards
    for brow, inner_last in ((lm[17:22], True), (lm[22:27][::-1], True)):
        c = _smooth(brow, 3)
        d = np.gradient(c, axis=0)
        nrm = np.stack([-d[:, 1], d[:, 0]], 1) / (np.linalg.norm(d, axis=1, keepdims=True) + 1e-9)
        th = idn.brow_thickness * np.linspace(0.55, 1.0, len(c))[:, None] * (1 if inner_last else 1)
        nrm = nrm * np.sign(nrm[:, 1:2] + 1e-9)  # point downwards (towards the eye)
        poly = np.concatenate([c - nrm * th * 0.6, (c + nrm * th * 0.4)[::-1]])
        cv.poly(poly, idn.brow)

    # eyes: socket shadow already soft; sclera, iris, pupil inside the lids
    sclera = min(235.0, skin + 55)
    for eye in (lm[36:42], lm[42:48]):
        _draw_eye(cv, idn, eye, sclera)

    # nose: wings, nostrils, AU9 wrinkles
    s9 = mx(9)
    for side, wing_i, nos_i in ((-1, 31, 32), (1, 35, 34)):
        wing = lm[wing_i]
        arc = np.array([wing + (side * -0.01, -0.1), wing + (side * 0.035, -0.03), wing, lm[nos_i] + (0, 0.01)])
        cv.line(_smooth(arc, 3), skin * (0.62 - 0.12 * s9), 0.03)
        cv.ellipse(0.5 * (lm[nos_i] + wing) + (0, -0.005), (0.045 + 0.01 * s9, 0.02 + 0.006 * s9),
                   skin * 0.35, angle=side * 15)
    if s9 > 0:
        y28, y29 = lm[28, 1], lm[29, 1]
        for j, y in enumerate(np.linspace(y28 - 0.12, y29 - 0.02, 3)):
            half = 0.09 + 0.02 * j
            cv.line([(-half, y + 0.02), (0, y), (half, y + 0.02)], skin * (1 - 0.45 * s9), 0.03)
        for side in (-1, 1):
            cv.soft_line([(side * 0.12, lm[28, 1]), (side * 0.2, lm[30, 1] - 0.05)], -35 * s9, 0.06)

    # mouth
    _draw_mouth(cv, idn, lm, m)

    # glasses (fixed on the resting eye positions, so they never move with an AU)
    if idn.glasses:
        tone = idn.glasses_tone
        for side in (-1, 1):
            cv.ellipse((side * 0.5, -0.005), (0.29, 0.19), tone, thickness=cv.t(0.035))
            cv.line([(side * 0.79, -0.04), (side * w * 0.99, -0.02)], tone, 0.035)
        cv.line([(-0.22, -0.05), (0, -0.09), (0.22, -0.05)], tone, 0.035)


def _draw_eye(cv: _Canvas, idn: Identity, e: np.ndarray, sclera: float):
    outline = _smooth(e, 3, closed=True)
    p = cv.px(outline)
    pad = 2
    x0, y0 = np.floor(p.min(0)).astype(int) - pad
    x1, y1 = np.ceil(p.max(0)).astype(int) + pad
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, cv.r), min(y1, cv.r)
    if x1 <= x0 or y1 <= y0:
        return
    roi = cv.img[y0:y1, x0:x1]
    inner = np.full_like(roi, _c(sclera))
    mask = np.zeros_like(roi)
    off = np.array([x0, y0]) * _ONE
    cv2.fillPoly(mask, [cv.fx(outline) - off], 255, cv2.LINE_AA, _SHIFT)
    centre = 0.5 * (e[0] + e[3]) + (0, 0.012)
    c = cv.fx(centre) - off
    rad = int(round(idn.iris_radius * cv.iod * _ONE))
    cv2.circle(inner, (int(c[0]), int(c[1])), rad, _c(idn.iris), -1, cv2.LINE_AA, _SHIFT)
    cv2.circle(inner, (int(c[0]), int(c[1])), int(rad * 0.45), _c(idn.iris * 0.3), -1, cv2.LINE_AA, _SHIFT)
    hl = c + np.round(np.array([0.3, -0.35]) * rad).astype(np.int32)
    cv2.circle(inner, (int(hl[0]), int(hl[1])), int(rad * 0.22), 235, -1, cv2.LINE_AA, _SHIFT)
    a = mask.astype(np.float32) * (1 / 255)
    roi[...] = (roi * (1 - a) + inner * a + 0.5).astype(np.uint8)
    # lids: a dark upper lid with lashes, a lighter lower lid, the crease above
    upper = _smooth(e[[0, 1, 2, 3]], 4)
    lower = _smooth(e[[3, 4, 5, 0]], 4)
    cv.line(upper, idn.skin * 0.2, 0.05)
    cv.line(lower, idn.skin * 0.6, 0.025)
    crease = _smooth(e[[0, 1, 2, 3]] + np.array([[0.03, -0.02], [0, -0.075], [0, -0.075], [-0.03, -0.03]]), 3)
    cv.line(crease[2:-2], idn.skin * 0.72, 0.025)


def _draw_mouth(cv: _Canvas, idn: Identity, lm: np.ndarray, m: dict[int, tuple[float, float]]):
    skin = idn.skin
    inner = lm[60:68]
    outer = lm[48:60]
    gap = float(np.max(lm[[65, 66, 67], 1] - lm[[63, 62, 61], 1]))
    if gap > 0.035:
        io = _smooth(inner, 3, closed=True)
        p = cv.px(io)
        x0, y0 = np.floor(p.min(0)).astype(int) - 2
        x1, y1 = np.ceil(p.max(0)).astype(int) + 2
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, cv.r), min(y1, cv.r)
        if x1 > x0 and y1 > y0:
            roi = cv.img[y0:y1, x0:x1]
            dark = np.full_like(roi, _c(skin * 0.16))
            off = np.array([x0, y0]) * _ONE
            # upper teeth under the upper lip, lower teeth above the lower lip when wide open
            up = _smooth(inner[[0, 1, 2, 3, 4]], 3)
            teeth_h = min(0.07, 0.6 * gap)
            tpoly = np.concatenate([up, (up + (0, teeth_h))[::-1]])
            cv2.fillPoly(dark, [cv.fx(tpoly) - off], _c(min(230, skin + 45)), cv2.LINE_AA, _SHIFT)
            if gap > 0.16:
                lo = _smooth(inner[[4, 5, 6, 7, 0]], 3)
                lpoly = np.concatenate([lo, (lo - (0, 0.045))[::-1]])
                cv2.fillPoly(dark, [cv.fx(lpoly) - off], _c(min(220, skin + 30)), cv2.LINE_AA, _SHIFT)
            mask = np.zeros_like(roi)
            cv2.fillPoly(mask, [cv.fx(io) - off], 255, cv2.LINE_AA, _SHIFT)
            a = mask.astype(np.float32) * (1 / 255)
            roi[...] = (roi * (1 - a) + dark * a + 0.5).astype(np.uint8)
    # AU tightening darkens the lip red; AU24 pressing pales it
    s23 = max(m.get(23, (0, 0)))
    s24 = max(m.get(24, (0, 0)))
    lip_u = skin * (0.66 - 0.08 * s23 + 0.06 * s24)
    lip_l = skin * (0.74 - 0.08 * s23 + 0.06 * s24)
    up_outer = _smooth(outer[0:7], 3)
    up_inner = _smooth(inner[[4, 3, 2, 1, 0]], 3)
    cv.poly(np.concatenate([up_outer, up_inner]), lip_u)
    lo_outer = _smooth(np.concatenate([outer[6:12], outer[0:1]]), 3)
    lo_inner = _smooth(inner[[0, 7, 6, 5, 4]], 3)
    cv.poly(np.concatenate([lo_outer, lo_inner]), lip_l)
    if gap <= 0.035:
        line = _smooth(0.5 * (inner[[0, 1, 2, 3, 4]] + inner[[0, 7, 6, 5, 4]]), 3)
        cv.line(line, skin * (0.3 - 0.1 * s24), 0.03 + 0.02 * s24)
    # lower lip highlight
    cv.soft_ellipse(0.5 * (lm[57] + lm[66]) + (0, 0.005), (0.1, 0.025), 10)

    # corners: AU14 dimples, AU15 depressor folds, AU20 stretch lines, AU24 bulges, AU17 chin
    for k, side, corner in ((0, -1, 48), (1, 1, 54)):
        c = lm[corner]
        s14 = m.get(14, (0, 0))[k]
        if s14 > 0:
            pts = [c + (side * 0.06, -0.06), c + (side * 0.085, 0.0), c + (side * 0.06, 0.06)]
            cv.line(_smooth(np.array(pts), 3), skin * (1 - 0.55 * s14), 0.04)
            cv.soft_ellipse(c + (side * 0.1, 0.0), (0.05, 0.07), -35 * s14)
        s15 = m.get(15, (0, 0))[k]
        if s15 > 0:
            pts = np.array([c + (side * 0.03, 0.03), c + (side * 0.07, 0.12), c + (side * 0.09, 0.22)])
            cv.line(_smooth(pts, 3), skin * (1 - 0.4 * s15), 0.035)
            cv.soft_line(pts, -30 * s15, 0.06)
        s20 = m.get(20, (0, 0))[k]
        if s20 > 0:
            for dy in (-0.05, 0.05):
                cv.line([c + (side * 0.05, dy * 0.6), c + (side * 0.17, dy * 1.6)], skin * (1 - 0.35 * s20), 0.028)
    if s24 > 0:
        cv.soft_ellipse((0, lm[51, 1] - 0.06), (0.2, 0.04), 18 * s24)
        cv.soft_ellipse((0, lm[57, 1] + 0.05), (0.18, 0.04), 18 * s24)
    if s23 > 0:
        cv.line(_smooth(outer[0:7], 3), skin * (1 - 0.5 * s23), 0.022)
        cv.line(_smooth(np.concatenate([outer[6:12], outer[0:1]]), 3), skin * (1 - 0.5 * s23), 0.022)
    s17 = max(m.get(17, (0, 0)))
    if s17 > 0:
        ch = lm[8]
        mid = 0.5 * (lm[57] + ch)
        # mentolabial furrow deepened, chin boss bulged with dimpled skin
        xs = np.linspace(-0.17, 0.17, 5)
        cv.line(np.stack([xs, lm[57, 1] + 0.07 + 0.03 * (xs / 0.17) ** 2], 1), skin * (1 - 0.4 * s17), 0.035)
        cv.soft_ellipse(mid + (0, 0.06), (0.17, 0.1), 20 * s17)
        for dx, dy in ((-0.08, 0.02), (0.07, 0.04), (0.0, 0.1), (-0.05, 0.13), (0.09, 0.12)):
            cv.ellipse(mid + (dx, dy), (0.018, 0.014), skin * (1 - 0.3 * s17))


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
    size = int(size)
    if not 24 <= size <= 512:
        raise ValueError(f"size: expected 24-512 px (48-128 is the designed range), got {size}")
    mags = _validate(aus, sides)
    lm = face_landmarks(identity, mags)
    cv = _Canvas(size, identity.background)
    _draw(cv, identity, lm, mags)
    soft = cv2.GaussianBlur(cv.soft, (0, 0), 0.05 * cv.iod)
    img = cv.img.astype(np.float32) * _shade(cv.r, round(identity.face_width, 4)) + soft
    np.clip(img, 0, 255, out=img)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    pts = (cv.px(lm) - (_SS - 1) / 2.0) / _SS
    if nuisance is not None:
        img, pts = _apply_nuisance(img, pts, nuisance, size)
    return (img + 0.5).astype(np.uint8), pts.astype(np.float32)


def _apply_nuisance(img: np.ndarray, pts: np.ndarray, nz: Nuisance, size: int):
    mat = _affine(size, nz)
    if nz.rotation or nz.scale != 1.0 or any(nz.shift):
        img = cv2.warpAffine(img, mat, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        pts = pts @ mat[:, :2].T + mat[:, 2]
    if nz.light:
        a = math.radians(nz.light_angle)
        ramp = (np.arange(size, dtype=np.float32) - (size - 1) / 2) / size
        g = 1.0 + nz.light * (math.cos(a) * ramp[None, :] + math.sin(a) * ramp[:, None])
        img = img * g
    if nz.gamma != 1.0:
        img = 255.0 * (np.clip(img, 0, 255) * (1 / 255.0)) ** (1.0 / nz.gamma)
    if nz.blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), nz.blur * size / 64.0)
    if nz.noise > 0:
        img = img + np.random.default_rng(nz.seed).standard_normal((size, size), dtype=np.float32) * nz.noise
    return np.clip(img, 0, 255), pts
