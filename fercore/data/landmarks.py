"""68-point facial landmarks offline: dlib's HOG face detector and shape predictor.

The 68 points follow the iBUG 300-W layout (jaw 0-16, right brow 17-21, left brow 22-26, nose
bridge 27-30, nostrils 31-35, right eye 36-41, left eye 42-47, outer lips 48-59, inner lips
60-67; "right" is the subject's right, on the image left). Coordinates are ``(x, y)`` in pixels of
the image they were fitted on, pixel centres at integers.

- :func:`detect_faces` — dlib's HOG frontal face detector, boxes ``(x, y, w, h)``, largest first;
- :func:`fit_landmarks` — the 68 points for one face box;
- :func:`plausibility` — is a fit a face? (geometry of the points, and the detector's evidence
  in the image where the points say the face is);
- :data:`CANONICAL`, :func:`canonical_transform`, :func:`align_face` — one canonical face
  geometry (eye centres and mouth centre) for every data set, and the similarity warp to it;
- :func:`fit_precropped` — landmarks for small, already cropped faces (48 px FER2013, CK+48-style
  folders);
- :func:`estimate_geometry` — the mean face geometry of such a pre-cropped data set and the
  similarity from it to :data:`CANONICAL`.

Models and licence
------------------
Nothing is downloaded at run time. The detector is built into dlib (``dlib-bin`` wheel, Boost
Software License). The shape predictor is ``shape_predictor_68_face_landmarks.dat`` (99.7 MB) from
the ``face-recognition-models`` package (MIT-licensed package; the model file is Davis King's
dlib model). That model was trained on the iBUG 300-W data set, whose licence excludes commercial
use: use the landmarks for research; a commercial product needs a predictor trained on data it may
use. The file is located without importing ``face_recognition_models`` (its ``__init__`` imports
``pkg_resources``, which setuptools >= 81 no longer ships).

Thread safety
-------------
The detector and predictor are loaded once (:func:`functools.lru_cache`) and shared by every
thread; every call into dlib holds one module lock, so concurrent callers (e.g. Streamlit
sessions) are serialised rather than racing. dlib runs single-threaded. Loading them takes about a
second (the predictor is a 100 MB file): :func:`preload` starts it in a background thread, so that
a server can load them while a user is still choosing a photo.

This module imports only numpy, OpenCV, dlib and the standard library.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from functools import lru_cache
from pathlib import Path

import cv2
import dlib
import numpy as np

__all__ = [
    "CANONICAL",
    "DETECT_MAX_SIDE",
    "MIN_FACE_SCORE",
    "PRECROPPED_BOX",
    "align_face",
    "canonical_transform",
    "detect_faces",
    "estimate_geometry",
    "face_score",
    "fit_landmarks",
    "fit_precropped",
    "plausibility",
    "predictor_path",
    "preload",
]

#: Face detection runs on a copy whose longer side is at most this many pixels.
DETECT_MAX_SIDE = 1024

#: Canonical face geometry, as fractions of the side of a square crop measured from its top-left
#: corner: rows are the subject's right eye centre (mean of points 36-41, on the image left), the
#: left eye centre (42-47) and the mouth centre (48-67); columns are (x, y). Chosen from data: over
#: the 33,474 of 35,887 FER2013 faces with a plausible :func:`fit_precropped` fit, the mean right
#: eye is at (0.316, 0.389), the left eye at (0.673, 0.385), the mouth at (0.499, 0.778) of the
#: 48 px side (the three Usage splits agree to 0.002; ``bench/bench_landmarks_fer2013.py``). This
#: template rounds that to a level, symmetric face (eyes 0.36 apart, mouth 0.39 below them), so
#: FER2013's own mean geometry maps onto it by a similarity of scale 1.001, rotation 0.66 degrees
#: and shift under 0.01 of the side (0.4 px at 48 px), leaving an RMS residual of 0.0013. In
#: pixels of an ``S`` x ``S`` crop a fraction ``f`` is at ``f * S - 0.5``.
CANONICAL = np.array([[0.32, 0.39],
                      [0.68, 0.39],
                      [0.50, 0.78]])
CANONICAL.flags.writeable = False

#: Face box used by :func:`fit_precropped` when the detector finds no face in a pre-cropped image,
#: as fractions ``(x, y, w, h)`` of the image side: the median of the detector's boxes on FER2013
#: faces where it fired (1,367 of a sample of 2,000: (0.078, 0.151, 0.781, 0.781);
#: ``bench/bench_landmarks_fer2013.py``).
PRECROPPED_BOX = (0.08, 0.15, 0.78, 0.78)

#: Lowest detector score (dlib HOG, SVM margin) at the fitted landmarks for :func:`plausibility`
#: to call the image region a face; see :func:`face_score`. With :func:`fit_precropped` on the
#: 25 px crops of ``skimage.data.lfw_subset()``: faces score -0.76 to 2.24 (median 1.22), the 100
#: non-faces at most -1.21, so all faces are accepted and all non-faces rejected; on FER2013 93.3 %
#: of the faces pass, and 80.7 % of the 176 images FER+ calls not a face are rejected.
MIN_FACE_SCORE = -0.8

_RIGHT_EYE = slice(36, 42)
_LEFT_EYE = slice(42, 48)
_MOUTH = slice(48, 68)
_PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
_LOCK = threading.Lock()
_PRELOAD_LOCK = threading.Lock()

# the detector's box relative to the landmarks, measured on the 100 LFW faces of
# skimage.data.lfw_subset(): centre 0.45 IOD below the eye midpoint, side 2.3 IOD
_BOX_BELOW_EYES = 0.45
_BOX_SIDE_IOD = 2.3
# the crop in which face_score runs the detector: IOD of 40 px, so the face box is ~92 px
_SCORE_IOD_PX = 40.0
_SCORE_CROP = 160


# Models


def predictor_path() -> Path:
    """Path of ``shape_predictor_68_face_landmarks.dat`` inside the installed ``face_recognition_models``.

    Returns
    -------
    pathlib.Path
        The model file (99.7 MB), shipped by the package; nothing is downloaded.

    Raises
    ------
    FileNotFoundError
        When the package or the file is missing.
    """
    spec = importlib.util.find_spec("face_recognition_models")  # finds, does not import
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / "models" / _PREDICTOR_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{_PREDICTOR_FILE}: not found (searched {folders or 'no face_recognition_models package'}); "
        "install it with `pip install face-recognition-models==0.3.0` (see requirements.txt)")


@lru_cache(maxsize=1)
def _load_models() -> tuple[dlib.fhog_object_detector, dlib.shape_predictor]:
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(predictor_path()))


def _models() -> tuple[dlib.fhog_object_detector, dlib.shape_predictor]:
    with _LOCK:  # load once even when several threads ask at the same time
        return _load_models()


_PRELOAD: threading.Thread | None = None


def preload() -> threading.Thread:
    """Load the detector and the shape predictor in a background (daemon) thread, once per process;
    returns that thread. A detection that starts before the load has finished waits for it (the
    module lock) instead of loading a second copy. An error (e.g. the predictor file missing) is
    left for that detection to raise, with its message."""
    global _PRELOAD
    with _PRELOAD_LOCK:
        if _PRELOAD is None:

            def load() -> None:
                try:
                    _models()
                except (OSError, RuntimeError):  # raised again, with its message, by the first real call
                    pass

            _PRELOAD = threading.Thread(target=load, name="fercore-landmark-models", daemon=True)
            _PRELOAD.start()
        return _PRELOAD


# Validation


def _check_grey(grey: np.ndarray, name: str = "grey") -> np.ndarray:
    if not isinstance(grey, np.ndarray):
        raise ValueError(f"{name}: expected an (H, W) uint8 numpy array, got {type(grey).__name__}; "
                         "decode the image first (e.g. cv2.imread(path, cv2.IMREAD_GRAYSCALE))")
    if grey.ndim != 2:
        hint = ("; convert colour with cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)"
                if grey.ndim == 3 and grey.shape[2] in (3, 4) else "")
        raise ValueError(f"{name}: expected an (H, W) uint8 grey image, got shape {grey.shape}{hint}")
    if grey.dtype != np.uint8:
        raise ValueError(f"{name}: expected dtype uint8 (0..255), got {grey.dtype}; "
                         "scale and convert, e.g. (img * 255).round().astype(np.uint8) for 0..1 floats")
    if min(grey.shape) < 8:
        raise ValueError(f"{name}: expected an image of at least 8 x 8 pixels, got {grey.shape}")
    return np.ascontiguousarray(grey)


def _check_box(box, shape: tuple[int, int], name: str = "box") -> tuple[int, int, int, int]:
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected 4 numbers (x, y, w, h) in pixels, got {box!r}") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name}: expected 4 finite numbers (x, y, w, h) in pixels, got {box!r}")
    x, y, w, h = (int(round(v)) for v in values)
    if w < 1 or h < 1:
        raise ValueError(f"{name}: expected a width and height of at least 1 pixel, got w={w}, h={h}; "
                         "boxes are (x, y, w, h), not (x0, y0, x1, y1)")
    H, W = shape
    if x >= W or y >= H or x + w <= 0 or y + h <= 0:
        raise ValueError(f"{name}: (x={x}, y={y}, w={w}, h={h}) lies outside the {W} x {H} image; "
                         "give the box in pixels of the image passed")
    return x, y, w, h


def _check_landmarks(landmarks, name: str = "landmarks") -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"{name}: expected (68, 2) iBUG points (x, y), got shape {lm.shape}")
    if not np.isfinite(lm).all():
        raise ValueError(f"{name}: expected finite coordinates, got NaN or infinity")
    return lm


def _check_size(size, name: str = "size") -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 8 <= size <= 4096:
        raise ValueError(f"{name}: expected an integer side of 8..4096 pixels, got {size!r}")
    return int(size)


def _check_template(template, name: str = "template") -> np.ndarray:
    t = np.asarray(CANONICAL if template is None else template, dtype=np.float64)
    if t.shape != (3, 2) or not np.isfinite(t).all():
        raise ValueError(f"{name}: expected (3, 2) fractions (right eye, left eye, mouth) x (x, y), "
                         f"got shape {t.shape}")
    if not t[0, 0] < t[1, 0]:
        raise ValueError(f"{name}: the subject's right eye (row 0) must have the smaller x, got {t.tolist()}")
    return t


# Detection and fitting


def detect_faces(grey: np.ndarray, *, upsample: int = 1) -> list[tuple[int, int, int, int]]:
    """Frontal faces found by dlib's HOG detector, largest first.

    Parameters
    ----------
    grey : (H, W) uint8
        The image. One whose longer side exceeds :data:`DETECT_MAX_SIDE` (1024 px) is searched on
        an area-downscaled copy; the boxes are given in pixels of ``grey``.
    upsample : int, keyword-only
        Times the (possibly downscaled) image is doubled before the search: 0 finds faces of about
        80 px and more, 1 (default) of 40 px and more, 2 of 20 px; each step costs about 4x.

    Returns
    -------
    list of (x, y, w, h) int tuples
        Face boxes in pixels of ``grey``, by decreasing area; empty when none is found. A box may
        reach a few pixels past the image border.
    """
    grey = _check_grey(grey)
    if isinstance(upsample, bool) or not isinstance(upsample, (int, np.integer)) or not 0 <= upsample <= 3:
        raise ValueError(f"upsample: expected an integer 0..3, got {upsample!r}")
    h, w = grey.shape
    scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
    small = grey if scale == 1.0 else cv2.resize(
        grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    detector, _ = _models()
    with _LOCK:
        rects = detector(small, int(upsample))
    boxes = []
    for r in rects:
        # a pixel-centre coordinate u in `small` is (u + 0.5) / scale - 0.5 in `grey`
        x0, y0 = (r.left() + 0.5) / scale - 0.5, (r.top() + 0.5) / scale - 0.5
        boxes.append((int(round(x0)), int(round(y0)), int(round(r.width() / scale)),
                      int(round(r.height() / scale))))
    return sorted(boxes, key=lambda b: (-b[2] * b[3], b[0], b[1]))


def _fit(grey: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = box
    _, predictor = _models()
    with _LOCK:
        shape = predictor(grey, dlib.rectangle(x, y, x + w - 1, y + h - 1))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def fit_landmarks(grey: np.ndarray, box) -> np.ndarray:
    """The 68 iBUG landmarks of the face in a box.

    Parameters
    ----------
    grey : (H, W) uint8
        The image.
    box : (x, y, w, h) numbers
        The face box in pixels of ``grey``, as :func:`detect_faces` gives it (the predictor was
        trained on boxes of dlib's detector; other boxes give worse fits).

    Returns
    -------
    (68, 2) float32
        ``(x, y)`` of each point in pixels of ``grey`` (whole pixels: dlib rounds; fit on an
        upscaled copy for sub-pixel points, as :func:`fit_precropped` does).
    """
    grey = _check_grey(grey)
    return _fit(grey, _check_box(box, grey.shape))


# Plausibility


def _frame(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray]:
    """Right eye centre, left eye centre, inter-ocular distance, unit eye axis u, unit 'down' v."""
    right, left = lm[_RIGHT_EYE].mean(axis=0), lm[_LEFT_EYE].mean(axis=0)
    d = left - right
    iod = float(np.hypot(*d))
    u = d / iod if iod > 0 else np.array([1.0, 0.0])
    v = np.array([-u[1], u[0]])  # u turned 90 degrees clockwise on screen: down the face
    return right, left, iod, u, v


def face_score(grey: np.ndarray, landmarks) -> float:
    """The face detector's evidence for a face where the landmarks put it.

    The image is warped (similarity) so that the eyes are level and 40 px apart in a 160 px crop,
    dlib's HOG detector is run on that crop with a very low threshold, and the best score of the
    detections that overlap the box the landmarks imply (intersection over union > 0.3) is
    returned. Faces score above about -0.8, non-faces below (see :data:`MIN_FACE_SCORE`).

    Parameters
    ----------
    grey : (H, W) uint8
        The image the landmarks were fitted on.
    landmarks : (68, 2) float
        The fit, in pixels of ``grey``.

    Returns
    -------
    float
        The SVM margin of the best matching detection (> 0: the detector's own default accepts
        it); ``-inf`` when nothing is detected there.
    """
    grey = _check_grey(grey)
    lm = _check_landmarks(landmarks)
    right, left, iod, u, v = _frame(lm)
    if iod < 1.0:
        return -math.inf
    s = _SCORE_IOD_PX / iod
    centre = (right + left) / 2 + _BOX_BELOW_EYES * iod * v
    a = s * np.stack([u, v])  # rows: image -> crop, eye axis to +x
    t = np.full(2, _SCORE_CROP / 2) - a @ centre
    crop = _warp(grey, np.hstack([a, t[:, None]]), _SCORE_CROP)
    detector, _ = _models()
    with _LOCK:
        rects, scores, _ = detector.run(crop, 0, -3.0)
    side = _BOX_SIDE_IOD * _SCORE_IOD_PX
    e0, e1 = _SCORE_CROP / 2 - side / 2, _SCORE_CROP / 2 + side / 2
    best = -math.inf
    for r, score in zip(rects, scores, strict=True):
        iw = max(0.0, min(e1, r.right() + 1) - max(e0, r.left()))
        ih = max(0.0, min(e1, r.bottom() + 1) - max(e0, r.top()))
        inter = iw * ih
        if inter / (side * side + r.width() * r.height() - inter) > 0.3:
            best = max(best, float(score))
    return best


def plausibility(landmarks, box=None, *, grey: np.ndarray | None = None,
                 min_score: float = MIN_FACE_SCORE) -> tuple[bool, str]:
    """Is a 68-point fit a face? Geometry of the points, and (given the image) the detector's evidence.

    The shape predictor always returns a face-shaped set of points, also on a wall or on noise, so
    geometry alone catches broken fits (eyes swapped, upside down, collapsed, out of the box) but
    rarely a non-face (the geometric checks alone accept the fits on all 100 LFW non-face crops of
    ``skimage.data.lfw_subset()``; the detector score rejects all of them): give ``grey`` to also
    require :func:`face_score` >= ``min_score``. All
    lengths are relative to the inter-ocular distance (IOD, between the eye centres); the ranges
    hold the 100 LFW faces of ``skimage.data.lfw_subset()`` with a wide margin.

    Checks, in order: finite points; eyes not coincident (IOD >= 1 px); the subject's right eye
    (36-41) left of the left eye (42-47) in the image; eye line within 45 degrees of level; mouth
    centre below the eyes (0.6-2.0 IOD along the face's vertical); nose tip (30) between eyes and
    mouth and within 0.75 IOD of the face's midline; jaw width (0 to 16) 1.5-3.5 IOD; eye widths
    0.15-0.7 IOD; mouth width 0.3-2.0 IOD; with ``box``: IOD 0.15-0.8 of the box width and at least
    90 % of the points inside the box grown by a quarter of its size on every side; with ``grey``:
    the detector score.

    Parameters
    ----------
    landmarks : (68, 2) float
        The fit, ``(x, y)`` pixels.
    box : (x, y, w, h) numbers, optional
        The box the fit was made in.
    grey : (H, W) uint8, keyword-only, optional
        The image the landmarks were fitted on; enables the appearance check.
    min_score : float, keyword-only
        Lowest accepted :func:`face_score` (default :data:`MIN_FACE_SCORE`).

    Returns
    -------
    (bool, str)
        Whether the fit is plausible, and ``"ok"`` or the first failed check in words.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks: expected (68, 2) iBUG points (x, y), got shape {lm.shape}")
    if not np.isfinite(lm).all():
        return False, "landmarks are not finite"
    right, left, iod, u, v = _frame(lm)
    if iod < 1.0:
        return False, f"eyes coincident (inter-ocular distance {iod:.2f} px < 1 px)"
    if right[0] >= left[0]:
        return False, ("eyes in the wrong order: the subject's right eye (points 36-41) must be on the "
                       "image left of the left eye (42-47)")
    angle = math.degrees(math.atan2(left[1] - right[1], left[0] - right[0]))
    if abs(angle) >= 45.0:
        return False, f"eye line tilted {angle:.0f} degrees (more than 45 from level)"
    mid = (right + left) / 2
    mouth = lm[_MOUTH].mean(axis=0)
    down = float((mouth - mid) @ v) / iod
    if not 0.6 <= down <= 2.0:
        return False, f"mouth {down:.2f} IOD below the eyes (expected 0.6-2.0)"
    nose_down = float((lm[30] - mid) @ v) / iod
    nose_side = float((lm[30] - mid) @ u) / iod
    if not 0.05 * down <= nose_down <= down or abs(nose_side) > 0.75:
        return False, (f"nose tip not between eyes and mouth ({nose_down:.2f} IOD down, "
                       f"{nose_side:.2f} IOD aside; mouth {down:.2f} IOD down)")

    def span(i: int, j: int) -> float:
        return float(np.hypot(*(lm[j] - lm[i]))) / iod

    jaw = span(0, 16)
    if not 1.5 <= jaw <= 3.5:
        return False, f"jaw width {jaw:.2f} IOD (expected 1.5-3.5)"
    eyes = (span(36, 39), span(42, 45))
    if not all(0.15 <= e <= 0.7 for e in eyes):
        return False, f"eye widths {eyes[0]:.2f}, {eyes[1]:.2f} IOD (expected 0.15-0.7)"
    mouth_w = span(48, 54)
    if not 0.3 <= mouth_w <= 2.0:
        return False, f"mouth width {mouth_w:.2f} IOD (expected 0.3-2.0)"
    if box is not None:
        try:
            x, y, w, h = (float(b) for b in box)
        except (TypeError, ValueError):
            raise ValueError(f"box: expected 4 numbers (x, y, w, h) in pixels, got {box!r}") from None
        if not (w > 0 and h > 0):
            raise ValueError(f"box: expected a positive width and height, got w={w}, h={h}")
        if not 0.15 <= iod / w <= 0.8:
            return False, f"inter-ocular distance {iod / w:.2f} of the box width (expected 0.15-0.8)"
        inside = ((lm[:, 0] >= x - w / 4) & (lm[:, 0] <= x + w * 1.25)
                  & (lm[:, 1] >= y - h / 4) & (lm[:, 1] <= y + h * 1.25)).mean()
        if inside < 0.9:
            return False, f"only {inside:.0%} of the points inside the grown box (expected >= 90 %)"
    if grey is not None:
        score = face_score(grey, lm)
        if not score >= min_score:
            return False, f"no face where the points are (detector score {score:.2f} < {min_score:.2f})"
    return True, "ok"


# Canonical geometry


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) src -> dst.

    Closed form in complex numbers: minimise sum |a z + b - w|^2 over complex a, b (Umeyama 1991
    restricted to 2-D). ``src``, ``dst``: (K, 2). Returns the (2, 3) float64 matrix.
    """
    z = src[:, 0] + 1j * src[:, 1]
    w = dst[:, 0] + 1j * dst[:, 1]
    zc, wc = z - z.mean(), w - w.mean()
    denom = float(np.sum(np.abs(zc) ** 2))
    if denom <= 1e-12:
        raise ValueError("landmarks: the eye and mouth centres coincide; no transform exists")
    a = np.sum(np.conj(zc) * wc) / denom
    b = w.mean() - a * z.mean()
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


def _anchor_points(lm: np.ndarray) -> np.ndarray:
    """(3, 2): right eye centre, left eye centre, mouth centre."""
    return np.stack([lm[_RIGHT_EYE].mean(axis=0), lm[_LEFT_EYE].mean(axis=0), lm[_MOUTH].mean(axis=0)])


def canonical_transform(landmarks, size: int, *, template=None) -> np.ndarray:
    """The similarity that maps a face onto the canonical geometry of a ``size`` x ``size`` crop.

    Least squares over three points: the two eye centres (means of 36-41 and 42-47) and the mouth
    centre (mean of 48-67), sent to ``template`` (default :data:`CANONICAL`) scaled to the crop.

    Parameters
    ----------
    landmarks : (68, 2) float
        The face's points in pixels of its image.
    size : int
        Side of the output crop in pixels.
    template : (3, 2) float, keyword-only, optional
        Target fractions of the crop side (right eye, left eye, mouth); e.g. the ``"template"`` of
        :func:`estimate_geometry` to crop like a pre-cropped data set.

    Returns
    -------
    (2, 3) float64
        Affine matrix ``[[s cos t, -s sin t, tx], [s sin t, s cos t, ty]]`` from image pixels to crop
        pixels (as ``cv2.warpAffine`` takes it).
    """
    lm = _check_landmarks(landmarks)
    size = _check_size(size)
    dst = _check_template(template) * size - 0.5
    return _similarity(_anchor_points(lm), dst)


def _warp(grey: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """warpAffine to a size x size crop without aliasing: when the warp shrinks, cut out the source
    region and shrink it with INTER_AREA first, so that the remaining warp is about 1:1."""
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    m = matrix.astype(np.float64)
    src = grey
    if scale < 0.8:
        inv = cv2.invertAffineTransform(m)
        corners = np.array([[-1, -1], [size, -1], [-1, size], [size, size]], dtype=np.float64)
        pts = corners @ inv[:, :2].T + inv[:, 2]
        pad = 2.0 / scale
        H, W = grey.shape
        x0 = int(max(0, math.floor(pts[:, 0].min() - pad)))
        y0 = int(max(0, math.floor(pts[:, 1].min() - pad)))
        x1 = int(min(W, math.ceil(pts[:, 0].max() + pad)))
        y1 = int(min(H, math.ceil(pts[:, 1].max() + pad)))
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            region = grey[y0:y1, x0:x1]
            nw, nh = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
            src = cv2.resize(region, (nw, nh), interpolation=cv2.INTER_AREA)
            sx, sy = nw / (x1 - x0), nh / (y1 - y0)
            # shrunk pixel u' = (u - x0 + 0.5) * sx - 0.5; compose: crop = m @ original = m @ S^-1 @ shrunk
            s_inv = np.array([[1 / sx, 0, x0 + 0.5 / sx - 0.5],
                              [0, 1 / sy, y0 + 0.5 / sy - 0.5],
                              [0, 0, 1]])
            m = m @ s_inv
    return cv2.warpAffine(src, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def align_face(grey: np.ndarray, landmarks, size: int, *,
               template=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop a face to the canonical geometry.

    Parameters
    ----------
    grey : (H, W) uint8
        The image.
    landmarks : (68, 2) float
        The face's points in pixels of ``grey``.
    size : int
        Side of the output crop in pixels.
    template : (3, 2) float, keyword-only, optional
        Target geometry (default :data:`CANONICAL`), see :func:`canonical_transform`.

    Returns
    -------
    crop : (size, size) uint8
        The aligned face. A shrinking warp is area-prefiltered (a 500 px face going to 48 px does
        not alias); the image border is replicated where the crop reaches past it.
    landmarks : (68, 2) float32
        The points in pixels of ``crop``.
    matrix : (2, 3) float64
        The transform used, image pixels -> crop pixels.
    """
    grey = _check_grey(grey)
    matrix = canonical_transform(landmarks, size, template=template)
    lm = _check_landmarks(landmarks)
    crop = _warp(grey, matrix, int(size))
    moved = lm @ matrix[:, :2].T + matrix[:, 2]
    return crop, moved.astype(np.float32), matrix


# Pre-cropped faces


def fit_precropped(face: np.ndarray, *, upscale: int = 4) -> tuple[np.ndarray, bool, str]:
    """Landmarks of a small face that is already cropped (FER2013's 48 px, CK+48-style folders).

    The image is upscaled (cubic) ``upscale`` times, the HOG detector is tried on it (the largest
    face whose centre lies in the middle half of the image is used); when it finds none, the box is
    :data:`PRECROPPED_BOX` of the image. The 68 points are fitted there, mapped back to the input's
    pixels and judged by :func:`plausibility` with the box and the image (appearance check).

    Parameters
    ----------
    face : (H, W) uint8
        The cropped face, at least 8 px on a side.
    upscale : int, keyword-only
        Upscaling factor 1..8 (default 4: 48 px -> 192 px, where the detector finds faces of
        about 80 px and more without upsampling, and the points get 1/4 px resolution). Images
        still under 160 px after it are searched with the detector's upsampling (x2).

    Returns
    -------
    landmarks : (68, 2) float32
        The points in pixels of ``face``.
    plausible : bool
        Whether :func:`plausibility` accepts the fit.
    reason : str
        ``"ok"``, or why not; prefixed by ``"detected: "`` or ``"whole image: "`` for the box used.
    """
    face = _check_grey(face, "face")
    if isinstance(upscale, bool) or not isinstance(upscale, (int, np.integer)) or not 1 <= upscale <= 8:
        raise ValueError(f"upscale: expected an integer 1..8, got {upscale!r}")
    h, w = face.shape
    big = face if upscale == 1 else cv2.resize(face, (w * upscale, h * upscale),
                                               interpolation=cv2.INTER_CUBIC)
    H, W = big.shape
    upsample = 0 if min(H, W) >= 160 else 1  # the detector's window is 80 px; faces fill ~80 % of a crop
    central = [b for b in detect_faces(big, upsample=upsample)
               if W / 4 <= b[0] + b[2] / 2 <= 3 * W / 4 and H / 4 <= b[1] + b[3] / 2 <= 3 * H / 4]
    if central:
        box, how = central[0], "detected"
    else:
        fx, fy, fw, fh = PRECROPPED_BOX
        box, how = (round(fx * W), round(fy * H), max(1, round(fw * W)), max(1, round(fh * H))), "whole image"
    pts = _fit(big, box)
    ok, reason = plausibility(pts, box, grey=big)
    lm = ((pts.astype(np.float64) + 0.5) / upscale - 0.5).astype(np.float32)
    return lm, ok, f"{how}: {reason}"


def estimate_geometry(landmarks, *, size: int, plausible=None) -> dict:
    """The mean face geometry of a pre-cropped data set, and its similarity to :data:`CANONICAL`.

    For a data set imported as it was cropped (FER2013), an uploaded photo is cropped like its
    faces by aligning to the returned ``"template"``: ``align_face(grey, lm, size,
    template=geometry["template"])`` -- the same as the canonical crop followed by the inverse of
    ``"matrix"``, in one warp.

    Parameters
    ----------
    landmarks : (N, 68, 2) float
        Points of the data set's faces in pixels of their (square, ``size`` px) images, e.g. from
        :func:`fit_precropped`.
    size : int, keyword-only
        Side of the data set's images in pixels (48 for FER2013).
    plausible : (N,) bool, keyword-only, optional
        Which fits to use (the ``plausible`` flags of :func:`fit_precropped`); default all.

    Returns
    -------
    dict
        ``"n"`` (int, faces used); ``"template"`` ((3, 2) float64: mean right eye, left eye and mouth
        centres as fractions of the side, the same convention as :data:`CANONICAL`); ``"std"``
        ((3, 2) float64, their standard deviations); ``"matrix"`` ((2, 3) float64: the least-squares
        similarity from ``"template"`` to :data:`CANONICAL` in fractions of the side, i.e. of a
        1 x 1 crop: the mean geometry's transform, not a mean of per-face transforms);
        ``"scale"`` (float) and ``"angle"`` (float, degrees) of that matrix; ``"residual"`` (float,
        RMS distance in fractions left after it).
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise ValueError(f"landmarks: expected (N, 68, 2) iBUG points, got shape {lm.shape}")
    size = _check_size(size)
    if plausible is None:
        keep = np.ones(len(lm), dtype=bool)
    else:
        keep = np.asarray(plausible, dtype=bool)
        if keep.shape != (len(lm),):
            raise ValueError(f"plausible: expected ({len(lm)},) booleans, one per face, got shape {keep.shape}")
    keep &= np.isfinite(lm).all(axis=(1, 2))
    if not keep.any():
        raise ValueError("landmarks: no (plausible, finite) fit to average; check the fits first")
    sel = lm[keep]
    anchors = np.stack([sel[:, _RIGHT_EYE].mean(axis=1), sel[:, _LEFT_EYE].mean(axis=1),
                        sel[:, _MOUTH].mean(axis=1)], axis=1)  # (n, 3, 2)
    fractions = (anchors + 0.5) / size
    template = fractions.mean(axis=0)
    matrix = _similarity(template, np.asarray(CANONICAL, dtype=np.float64))
    moved = template @ matrix[:, :2].T + matrix[:, 2]
    return {
        "n": int(keep.sum()),
        "template": template,
        "std": fractions.std(axis=0),
        "matrix": matrix,
        "scale": float(np.hypot(matrix[0, 0], matrix[1, 0])),
        "angle": float(math.degrees(math.atan2(matrix[1, 0], matrix[0, 0]))),
        "residual": float(np.sqrt(np.mean(np.sum((moved - CANONICAL) ** 2, axis=1)))),
    }
