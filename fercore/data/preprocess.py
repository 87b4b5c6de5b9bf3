"""Face preprocessing shared by every data-set loader and by the dashboard's upload.

Steps, in order: decode any common image file to grey uint8 (:func:`decode_image`), find the face
(dlib's HOG detector, with OpenCV's Haar cascade as the fallback and for the papers' protocol:
scaleFactor 1.3, minNeighbors 5 then 3, as Khorrami et al. 2015 did), fit the 68 iBUG points
(:mod:`fercore.data.landmarks`), and crop: by default a similarity transform puts the eye centres
and the mouth at the positions of one canonical face geometry (:data:`CANONICAL`), the same for
every data set and for an upload; the papers' crop (the detector's box, rotated to level the eyes)
stays available (``geometry="box"``). Pre-cropped faces (FER2013, TFD, CK+48-style folders) are
kept as they are and get their points from a fit on the whole (upscaled) image. The options are a
frozen :class:`PreprocessOptions` recorded in a FaceSet's ``meta["preprocess"]``, so
:func:`options_from_meta` gives back exactly what an uploaded photo must go through to match the
training data. The pixel normalisation named in the options is applied at train time
(:func:`fercore.training.inputs.normalize`).
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import threading
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fercore.data import landmarks as lmk
from fercore.data.landmarks import CANONICAL

__all__ = [
    "CANONICAL",
    "DEFAULT_MAX_PIXELS",
    "DETECTORS",
    "GEOMETRIES",
    "NORMALIZE_METHODS",
    "check_method",
    "face_geometry",
    "FaceCrop",
    "ImageDecodeError",
    "NoFaceError",
    "PreprocessOptions",
    "decode_image",
    "detect_faces",
    "detect_eyes",
    "options_from_meta",
    "preprocess_face",
    "upload_options",
]

#: Images with more pixels than this are refused by :func:`decode_image` (40 megapixels).
DEFAULT_MAX_PIXELS = 40_000_000
#: Face detection runs on a copy whose longer side is at most this many pixels.
DETECT_MAX_SIDE = 1024
ON_NO_FACE = ("skip", "center")
#: Face detectors: dlib's HOG detector (falls back to the Haar cascade) or the Haar cascade alone.
DETECTORS = ("dlib", "haar")
#: Crops: ``canonical`` (similarity on the 68 points to a template geometry) or ``box`` (the face
#: box, or the whole image of a pre-cropped face, rotated to level the eyes when ``align``).
GEOMETRIES = ("canonical", "box")
#: Pixel normalisations a FaceSet can ask for (applied at train time).
NORMALIZE_METHODS = ("none", "standardize", "local_mean")
#: What a FaceSet recorded before these options existed did (its ``meta["preprocess"]`` lacks them).
LEGACY_OPTIONS = {"detector": "haar", "geometry": "box", "landmarks": False}


def check_method(method: str) -> str:
    """``method`` if it is one of :data:`NORMALIZE_METHODS`; ValueError naming them otherwise."""
    if method not in NORMALIZE_METHODS:
        raise ValueError(f"normalize: expected one of {', '.join(NORMALIZE_METHODS)}, got {method!r}")
    return method


class ImageDecodeError(ValueError):
    """A file or byte string is not a decodable image, is truncated, or is too large."""


class NoFaceError(ValueError):
    """No face was found and the options say to skip such images (``on_no_face="skip"``)."""


@dataclass(frozen=True)
class PreprocessOptions:
    """How a photo becomes a network input face. Saved in ``FaceSet.meta["preprocess"]``.

    Attributes
    ----------
    size : int
        Side of the square output face in pixels (96 for Khorrami's CNN, 48 or 64 for FER+).
    detect : bool
        Find the face in the photo; False for faces that are already cropped (FER2013, TFD,
        CK+48-style folders): the whole image is then the face.
    align : bool
        Align the face: to the canonical geometry (``geometry="canonical"``), or rotate the box so
        that the eyes are level (``geometry="box"``; on the 68 points when there are, else on the
        eyes the Haar eye cascade finds). False keeps the box (or the pre-cropped image) as it is.
    face_margin : float
        ``geometry="box"``: extra border around the face box on each side, as a fraction of the
        box side (0 = the detector's box). The canonical geometry fixes its own framing.
    on_no_face : {"skip", "center"}
        When no face is found: ``"skip"`` raises :class:`NoFaceError` (loaders count and skip the
        image), ``"center"`` uses the largest centred square of the image.
    normalize : str
        Pixel normalisation applied at train time (:data:`fercore.normalize.METHODS`).
    max_pixels : int
        Larger images are refused by :func:`decode_image`.
    detector : {"dlib", "haar"}
        ``dlib``: dlib's HOG frontal face detector, the Haar cascade when it finds none; ``haar``:
        the Haar cascade only (Khorrami et al.'s protocol).
    geometry : {"canonical", "box"}
        ``canonical``: a similarity transform (rotation, scale, shift) puts the eye centres and the
        mouth centre at :data:`CANONICAL` (or a data set's own template, see
        :func:`face_geometry`): one face geometry for every source; a face without a plausible
        68-point fit falls back to ``box``. ``box``: the detector's box (or the pre-cropped
        image), rotated to level the eyes when ``align``: the papers' crop.
    landmarks : bool
        Fit the 68 iBUG points (dlib's shape predictor; on pre-cropped faces after upscaling) and
        keep them, in crop pixels, with the face (NaN where the fit is not plausible).
    """

    size: int = 96
    detect: bool = True
    align: bool = True
    face_margin: float = 0.0
    on_no_face: str = "skip"
    normalize: str = "local_mean"
    max_pixels: int = DEFAULT_MAX_PIXELS
    detector: str = "dlib"
    geometry: str = "canonical"
    landmarks: bool = True

    def __post_init__(self):
        if not isinstance(self.size, int | np.integer) or not 8 <= int(self.size) <= 1024:
            raise ValueError(f"PreprocessOptions.size: expected an integer 8..1024, got {self.size!r}")
        if not 0.0 <= float(self.face_margin) <= 1.0:
            raise ValueError(f"PreprocessOptions.face_margin: expected 0..1, got {self.face_margin!r}")
        if self.on_no_face not in ON_NO_FACE:
            raise ValueError(
                f"PreprocessOptions.on_no_face: expected one of {', '.join(ON_NO_FACE)}, got {self.on_no_face!r}"
            )
        check_method(self.normalize)
        if self.detector not in DETECTORS:
            raise ValueError(f"PreprocessOptions.detector: expected one of {', '.join(DETECTORS)}, got {self.detector!r}")
        if self.geometry not in GEOMETRIES:
            raise ValueError(f"PreprocessOptions.geometry: expected one of {', '.join(GEOMETRIES)}, got {self.geometry!r}")
        if int(self.max_pixels) < 1:
            raise ValueError(f"PreprocessOptions.max_pixels: expected a positive integer, got {self.max_pixels!r}")

    def to_dict(self) -> dict:
        """JSON-able dict of the options (what ``meta["preprocess"]`` holds)."""
        return dataclasses.asdict(self)


def options_from_meta(meta: dict) -> PreprocessOptions:
    """The :class:`PreprocessOptions` recorded in a FaceSet's ``meta`` (its ``"preprocess"`` key).

    Unknown keys are refused so that a photo is never processed differently from the training
    data without notice; keys added after a FaceSet was made take what that FaceSet's import did
    then (:data:`LEGACY_OPTIONS`: Haar detection, the box crop, no landmarks), other missing keys
    the defaults.
    """
    rec = meta.get("preprocess") if isinstance(meta, dict) else None
    if not isinstance(rec, dict):
        raise ValueError("FaceSet meta has no 'preprocess' record; re-import the data set with `python -m fercore import`")
    names = {f.name for f in dataclasses.fields(PreprocessOptions)}
    unknown = sorted(set(rec) - names)
    if unknown:
        raise ValueError(
            f"meta['preprocess'] has unknown option(s) {unknown}; this fercore knows {sorted(names)}"
        )
    return PreprocessOptions(**{**LEGACY_OPTIONS, **rec})


def face_geometry(meta: dict, landmarks: np.ndarray | None, size: int) -> np.ndarray | None:
    """The face geometry of a FaceSet's crops: where its eye centres and mouth centre sit, as
    fractions of the side ((3, 2) float64, the convention of :data:`CANONICAL`), or None.

    The template recorded by the import (``meta["geometry"]["template"]``) when there is one; else
    the mean geometry of the FaceSet's landmarks (:func:`fercore.data.landmarks.estimate_geometry`;
    the phantom, older imports with landmarks); None without either.
    """
    rec = meta.get("geometry") if isinstance(meta, dict) else None
    if isinstance(rec, dict) and rec.get("template") is not None:
        return np.asarray(rec["template"], dtype=np.float64)
    if landmarks is None:
        return None
    ok = np.isfinite(landmarks).all(axis=(1, 2))
    if not ok.any():
        return None
    return lmk.estimate_geometry(landmarks, size=int(size), plausible=ok)["template"]


def upload_options(recorded: dict | None, *, size: int, centre_crop: bool = False,
                   template: np.ndarray | None = None) -> PreprocessOptions:
    """How a photo uploaded to a run is preprocessed: as the run's training faces were.

    Parameters
    ----------
    recorded : dict or None
        The run's ``config.json`` ``preprocess`` entry (the FaceSet's ``meta["preprocess"]``);
        None uses the defaults.
    size : int
        The model's input side (the crop is made at this size).
    centre_crop : bool
        When no face is found, use the largest centred square instead of refusing the photo.

    template : (3, 2) float, optional
        The training faces' geometry (:func:`face_geometry`). When given, the photo is cropped to
        it (canonical geometry with that template), also for a data set imported pre-cropped:
        the upload then lands where its faces sit.

    Returns
    -------
    PreprocessOptions
        The recorded options with detection switched on (a photo is not a pre-cropped face).
    """
    options = options_from_meta({"preprocess": recorded}) if isinstance(recorded, dict) else PreprocessOptions()
    extra = {"geometry": "canonical", "align": True, "landmarks": True, "detector": "dlib"} if template is not None else {}
    return dataclasses.replace(options, size=int(size), detect=True, on_no_face="center" if centre_crop else "skip",
                               **extra)


# --------------------------------------------------------------------------------------------
# Decoding


def _to_grey(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> (H, W) uint8 grey (ITU-R 601 luma; transparency over white)."""
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
        mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(img).astype(np.float64)
        hi = 65535.0 if (mode.startswith("I;16") or a.max(initial=0) > 255) else 255.0
        return np.clip(np.rint(a * (255.0 / hi)), 0, 255).astype(np.uint8)
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        scale = 255.0 if a.max(initial=0) <= 1.0 else 1.0
        return np.clip(np.rint(a * scale), 0, 255).astype(np.uint8)
    if mode != "L":
        img = img.convert("RGB").convert("L") if mode not in ("RGB", "1") else img.convert("L")
    return np.array(img, dtype=np.uint8)


def decode_image(data: bytes | str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file (or its bytes) to grey.

    Handles every format Pillow reads (PNG, JPEG, TIFF, BMP, GIF, WebP, ...), 8- and 16-bit,
    grey, RGB, RGBA (composited over white), palette, CMYK, and turns the picture upright
    according to its EXIF orientation. Multi-frame files give their first frame.

    Parameters
    ----------
    data : bytes or str or path
        The encoded file's bytes, or its path.
    max_pixels : int, keyword-only
        Refuse images with more pixels than this (checked from the header, before decoding).

    Returns
    -------
    (H, W) uint8
        The grey image.

    Raises
    ------
    ImageDecodeError
        Not an image, truncated or corrupt, or larger than ``max_pixels``.
    FileNotFoundError
        ``data`` is a path that does not exist.
    """
    name = "uploaded bytes" if isinstance(data, bytes | bytearray) else str(data)
    if not isinstance(data, bytes | bytearray) and not Path(data).is_file():
        raise FileNotFoundError(f"{name}: no such image file")
    src = io.BytesIO(data) if isinstance(data, bytes | bytearray) else Path(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(src)
            w, h = img.size
            if w * h > max_pixels:
                raise ImageDecodeError(
                    f"{name}: image is {w}x{h} = {w * h / 1e6:.1f} megapixels, more than the limit of "
                    f"{max_pixels / 1e6:.1f}; downscale it first or raise max_pixels"
                )
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_grey(img)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError(
            f"{name}: not an image file Pillow can read; expected PNG, JPEG, TIFF, BMP, GIF or WebP"
        ) from None
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(f"{name}: image too large for the decoder ({e}); downscale it first") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageDecodeError(f"{name}: the image data is truncated or corrupt ({e}); re-export the file") from None


# --------------------------------------------------------------------------------------------
# Detection

_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _cascade(name: str) -> cv2.CascadeClassifier:
    path = os.path.join(cv2.data.haarcascades, name)
    c = cv2.CascadeClassifier(path)
    if c.empty():
        raise FileNotFoundError(f"{path}: OpenCV Haar cascade not found; install opencv-python-headless<5")
    return c


def _check_grey(grey: np.ndarray, name: str = "grey") -> np.ndarray:
    grey = np.asarray(grey)
    if grey.ndim != 2 or grey.dtype != np.uint8 or min(grey.shape) < 1:
        raise ValueError(f"{name}: expected an (H, W) uint8 grey image, got {grey.shape} {grey.dtype}")
    return np.ascontiguousarray(grey)


def detect_faces(grey: np.ndarray, *, scale_factor: float = 1.3,
                 min_neighbors: tuple[int, ...] = (5, 3)) -> list[tuple[int, int, int, int]]:
    """Frontal faces found by OpenCV's Haar cascade, largest first.

    Parameters
    ----------
    grey : (H, W) uint8
        The image. Images with a side above 1024 px are searched on a downscaled copy (the boxes
        are given in the input's pixels).
    scale_factor : float, keyword-only
        Cascade pyramid step (1.3 as in Khorrami et al.).
    min_neighbors : tuple of int, keyword-only
        Tried in order until a face is found (5, then 3).

    Returns
    -------
    list of (x, y, w, h) int tuples
        Face boxes in pixels of ``grey``, by decreasing area; empty when none is found.
    """
    grey = _check_grey(grey)
    h, w = grey.shape
    scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
    small = grey if scale == 1.0 else cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                 interpolation=cv2.INTER_AREA)
    cascade = _cascade("haarcascade_frontalface_default.xml")
    found = ()
    for mn in min_neighbors:
        with _LOCK:
            found = cascade.detectMultiScale(small, scaleFactor=scale_factor, minNeighbors=mn)
        if len(found):
            break
    boxes = [tuple(int(round(v / scale)) for v in b) for b in found]
    return sorted(boxes, key=lambda b: (-b[2] * b[3], b[0], b[1]))


def detect_eyes(grey: np.ndarray, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray] | None:
    """The two eye centres inside a face box, by the Haar eye cascade.

    Returns
    -------
    (left, right) : two (2,) float64 arrays or None
        Eye centres (x, y) in pixels of ``grey``, ``left`` being the one with the smaller x (the
        subject's right eye); None unless one plausible eye is found in each upper quarter.
    """
    grey = _check_grey(grey)
    x, y, w, h = box
    x0, y0 = max(0, x), max(0, y)
    roi = grey[y0:y + int(h * 0.6), x0:x + w]
    if roi.size == 0 or min(roi.shape) < 12:
        return None
    side = max(1, int(w * 0.12))
    with _LOCK:
        eyes = _cascade("haarcascade_eye.xml").detectMultiScale(roi, scaleFactor=1.1, minNeighbors=5,
                                                                 minSize=(side, side))
    cx = x + w / 2.0
    left, right = [], []
    for ex, ey, ew, eh in eyes:
        c = np.array([x0 + ex + ew / 2.0, y0 + ey + eh / 2.0])
        if c[1] > y + h * 0.55 or ew > w * 0.5:
            continue
        (left if c[0] < cx else right).append((ew * eh, c))
    if not left or not right:
        return None
    le = max(left, key=lambda t: t[0])[1]
    re = max(right, key=lambda t: t[0])[1]
    d = re - le
    if not (0.2 * w <= np.hypot(*d) <= 0.75 * w) or abs(math.degrees(math.atan2(d[1], d[0]))) > 30:
        return None
    return le, re


# --------------------------------------------------------------------------------------------
# Crop


@dataclass
class FaceCrop:
    """One preprocessed face and what happened to it.

    Attributes
    ----------
    image : (S, S) uint8
        The aligned, cropped, resized grey face.
    box : (x, y, w, h) int tuple or None
        The face box in the input image (None when the centre crop was used, or for a
        pre-cropped face).
    n_faces : int
        How many faces the detector found (0 when detection was off or found none).
    eyes_found : bool
        ``geometry="box"``: the eye cascade found both eyes (alignment used them).
    angle : float
        Degrees the face was rotated (counter-clockwise as seen on screen).
    centre_crop : bool
        No face was found; the largest centred square was used.
    landmarks : (68, 2) float32 or None
        The 68 points in pixels of ``image`` (given, or fitted and plausible); None otherwise.
    messages : list of str
        Human-readable notes (several faces, no plausible fit, centre crop used, ...).
    geometry : str
        The crop made: ``"canonical"`` or ``"box"``.
    fit : str
        Where the points came from: ``"given"``, ``"fitted"``, ``"implausible: <reason>"``,
        ``"none"``.
    matrix : (2, 3) float64
        Input pixels -> crop pixels.
    """

    image: np.ndarray
    box: tuple[int, int, int, int] | None
    n_faces: int
    eyes_found: bool
    angle: float
    centre_crop: bool
    landmarks: np.ndarray | None = None
    messages: list[str] = field(default_factory=list)
    geometry: str = "box"
    fit: str = "none"
    matrix: np.ndarray | None = None


def _eye_centres_from_landmarks(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return lm[36:42].mean(axis=0).astype(np.float64), lm[42:48].mean(axis=0).astype(np.float64)


def _find_faces(grey: np.ndarray, detector: str) -> list[tuple[int, int, int, int]]:
    """Face boxes, largest first: dlib's HOG detector (the Haar cascade when it finds none), or
    the Haar cascade."""
    if detector == "dlib":
        faces = lmk.detect_faces(grey)
        if faces:
            return faces
    return detect_faces(grey)


def preprocess_face(grey: np.ndarray, options: PreprocessOptions, *,
                    landmarks: np.ndarray | None = None, template: np.ndarray | None = None) -> FaceCrop:
    """Detect, fit, align, crop and resize one face.

    Parameters
    ----------
    grey : (H, W) uint8
        The decoded image (:func:`decode_image`).
    options : PreprocessOptions
        What to do (size, detection, geometry, landmarks, what to do without a face).
    landmarks : (68, 2) float, keyword-only, optional
        iBUG-68 landmarks of the face in pixels of ``grey`` (CK+ ``Landmarks/``). When given they
        are used instead of a fit (and stand in for the face box when detection finds none).
    template : (3, 2) float, keyword-only, optional
        The geometry of ``geometry="canonical"`` crops (fractions of the side, as
        :data:`CANONICAL`, the default).

    Returns
    -------
    FaceCrop

    Raises
    ------
    NoFaceError
        No face found and ``options.on_no_face == "skip"``.
    """
    grey = _check_grey(grey)
    if not isinstance(options, PreprocessOptions):
        raise ValueError(f"options: expected PreprocessOptions, got {type(options).__name__}")
    h, w = grey.shape
    lm = None
    if landmarks is not None:
        lm = np.asarray(landmarks, dtype=np.float64)
        if lm.shape != (68, 2) or not np.isfinite(lm).all():
            raise ValueError(f"landmarks: expected (68, 2) finite coordinates, got {lm.shape}")
    messages: list[str] = []
    box = None
    n_faces = 0
    centre = False
    if options.detect:
        faces = _find_faces(grey, options.detector)
        n_faces = len(faces)
        if n_faces:
            box = faces[0]
            if n_faces > 1:
                messages.append(f"{n_faces} faces found; the largest was used")
        elif lm is not None:
            x0, y0 = lm.min(axis=0)
            x1, y1 = lm.max(axis=0)
            side = max(x1 - x0, y1 - y0)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            box = (int(round(cx - side / 2)), int(round(cy - side / 2)), int(round(side)), int(round(side)))
            messages.append("no face found by the detector; the landmarks' bounding box was used")
        elif options.on_no_face == "skip":
            raise NoFaceError("no face found (dlib HOG and Haar cascades); skipped" if options.detector == "dlib"
                              else "no face found (Haar cascade, minNeighbors 5 and 3); skipped")
        else:
            centre = True
            messages.append("no face found; the centre crop was used")

    # the 68 points, in pixels of grey
    fit = "given" if lm is not None else "none"
    if lm is None and options.landmarks and not centre:
        if options.detect:
            pts = lmk.fit_landmarks(grey, box)
            ok, why = lmk.plausibility(pts, box, grey=grey)
        else:
            pts, ok, why = lmk.fit_precropped(grey)
        if ok:
            lm, fit = pts.astype(np.float64), "fitted"
        else:
            fit = f"implausible: {why}"
            messages.append(f"the 68-point fit is not plausible ({why}); no landmarks kept")

    size = int(options.size)
    if options.align and options.geometry == "canonical" and lm is not None:
        crop, out_lm, m = lmk.align_face(grey, lm, size, template=template)
        return FaceCrop(image=np.ascontiguousarray(crop, dtype=np.uint8),
                        box=None if (centre or box is None) else tuple(int(v) for v in box), n_faces=n_faces,
                        eyes_found=False, angle=float(-np.degrees(np.arctan2(m[1, 0], m[0, 0]))),
                        centre_crop=centre, landmarks=out_lm, messages=messages, geometry="canonical", fit=fit,
                        matrix=m)
    if options.align and options.geometry == "canonical" and not centre:
        messages.append("cropped by the face box (no plausible 68 points for the canonical geometry)")
    return _box_crop(grey, options, box=box, centre=centre, lm=lm, n_faces=n_faces, messages=messages, fit=fit)


def _box_crop(grey, options, *, box, centre, lm, n_faces, messages, fit) -> FaceCrop:
    """The papers' crop: the face box (or the whole image), rotated to level the eyes."""
    h, w = grey.shape
    if box is None:
        side = min(h, w)
        box = ((w - side) // 2, (h - side) // 2, side, side)
    bx, by, bw, bh = box
    cx, cy = bx + bw / 2.0, by + bh / 2.0
    side = max(bw, bh) * (1.0 + 2.0 * float(options.face_margin))

    angle = 0.0
    eyes_found = False
    if options.align:
        eyes = None
        if lm is not None:
            eyes = _eye_centres_from_landmarks(lm)
        elif not centre and options.detect:
            eyes = detect_eyes(grey, box)
            eyes_found = eyes is not None
            if not eyes_found:
                messages.append("eyes not found; the face was not rotated")
        if eyes is not None:
            d = eyes[1] - eyes[0]
            angle = math.degrees(math.atan2(d[1], d[0]))

    size = int(options.size)
    src = grey
    pre = np.eye(3)  # grey pixels -> src pixels
    if side > 4 * size:
        # A large face: area-shrink the region the crop can reach (a square of side*sqrt(2)
        # about the centre) to 4x the output first, so that the warp does not alias.
        half = side * 0.75
        x0, y0 = max(0, int(math.floor(cx - half))), max(0, int(math.floor(cy - half)))
        x1, y1 = min(w, int(math.ceil(cx + half))), min(h, int(math.ceil(cy + half)))
        f = 4.0 * size / side
        nw, nh = max(1, round((x1 - x0) * f)), max(1, round((y1 - y0) * f))
        src = cv2.resize(grey[y0:y1, x0:x1], (nw, nh), interpolation=cv2.INTER_AREA)
        fx, fy = nw / (x1 - x0), nh / (y1 - y0)
        cx, cy, side = (cx - x0) * fx, (cy - y0) * fy, side * fx
        pre = np.array([[fx, 0, -x0 * fx], [0, fy, -y0 * fy], [0, 0, 1]])
    # Warp to an intermediate square (at most 4x the output), then area-resize.
    inter = int(min(max(size, round(side)), 4 * size))
    m = cv2.getRotationMatrix2D((cx, cy), angle, inter / side)
    m[0, 2] += inter / 2.0 - cx
    m[1, 2] += inter / 2.0 - cy
    crop = cv2.warpAffine(src, m, (inter, inter), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if inter != size:
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    full = (np.diag([size / inter, size / inter, 1.0]) @ np.vstack([m, [0, 0, 1]]) @ pre)[:2]
    out_lm = None
    if lm is not None:
        out_lm = (lm @ full[:, :2].T + full[:, 2]).astype(np.float32)
    return FaceCrop(
        image=np.ascontiguousarray(crop, dtype=np.uint8),
        box=None if centre else (int(bx), int(by), int(bw), int(bh)),
        n_faces=n_faces,
        eyes_found=eyes_found,
        angle=float(angle),
        centre_crop=centre,
        landmarks=out_lm,
        messages=messages,
        geometry="box",
        fit=fit,
        matrix=full,
    )
