"""FACS facts as data: the action-unit catalogue, face regions, label sets, EMFACS prototypes.

Everything here is plain data and small pure functions; the phantom generator, the loaders, the
analysis and the dashboard read it from this one place.

Sources: the FACS manual (Ekman & Friesen 2002), the CK+ paper (Lucey et al. 2010) and the label
codes of each data set's own release (see ``docs/faceset.md``).

Landmarks use the iBUG 68-point layout: jaw 0-16, right brow 17-21, left brow 22-26, nose bridge
27-30, nostrils 31-35, right eye 36-41, left eye 42-47, outer lips 48-59, inner lips 60-67
("right" is the subject's right, the image's left).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "AU",
    "AUS",
    "AU_IDS",
    "Box",
    "CANONICAL_EMOTIONS",
    "EMOTION_SPELLINGS",
    "LABEL_SETS",
    "LabelSet",
    "PROTOTYPES",
    "au",
    "au_name",
    "face_frame",
    "label_set",
    "region_mask",
    "region_polygons",
    "in_region",
    "presence",
]


@dataclass(frozen=True)
class Box:
    """A rectangle around some landmarks, padded in units of the inter-ocular distance (IOD).

    The box is axis-aligned in the *face frame* (x along the line from the right eye to the left
    eye, y towards the chin), so it turns with an in-plane rotated face.
    """

    landmarks: tuple[int, ...]
    left: float = 0.1  # image-left side (the subject's right)
    top: float = 0.1
    right: float = 0.1
    bottom: float = 0.1


@dataclass(frozen=True)
class AU:
    """One action unit: number, FACS name, muscle, and where on the face it shows."""

    number: int
    name: str
    muscle: str
    appearance: str
    region: tuple[Box, ...]
    group: str  # upper face / lower face, for ordering in tables

    @property
    def label(self) -> str:
        return f"AU{self.number}"


_BROWS_R = (17, 18, 19, 20, 21)
_BROWS_L = (22, 23, 24, 25, 26)
_EYE_R = (36, 37, 38, 39, 40, 41)
_EYE_L = (42, 43, 44, 45, 46, 47)
_MOUTH = tuple(range(48, 68))
_NOSE = tuple(range(27, 36))

# fmt: off
_CATALOGUE = (
    AU(1, "inner brow raiser", "frontalis, pars medialis",
       "inner ends of the brows rise; horizontal wrinkles mid-forehead",
       (Box((19, 20, 21, 22, 23, 24), 0.15, 0.6, 0.15, 0.25),), "upper"),
    AU(2, "outer brow raiser", "frontalis, pars lateralis",
       "outer ends of the brows rise; arched brows",
       (Box((17, 18, 19), 0.2, 0.55, 0.1, 0.25), Box((24, 25, 26), 0.1, 0.55, 0.2, 0.25)), "upper"),
    AU(4, "brow lowerer", "corrugator / depressor supercilii",
       "brows lowered and drawn together; vertical furrows between brows",
       (Box(_BROWS_R + _BROWS_L + (27,), 0.15, 0.35, 0.15, 0.2),), "upper"),
    AU(5, "upper lid raiser", "levator palpebrae superioris",
       "eyes widen, white above the iris",
       (Box(_EYE_R, 0.15, 0.25, 0.15, 0.15), Box(_EYE_L, 0.15, 0.25, 0.15, 0.15)), "upper"),
    AU(6, "cheek raiser", "orbicularis oculi, pars orbitalis",
       "cheeks lifted, crow's feet at outer eye corners, lower lid bulge",
       (Box(_EYE_R, 0.35, 0.1, 0.1, 0.55), Box(_EYE_L, 0.1, 0.1, 0.35, 0.55)), "upper"),
    AU(7, "lid tightener", "orbicularis oculi, pars palpebralis",
       "lids tensed, eye aperture narrowed from below",
       (Box(_EYE_R, 0.15, 0.2, 0.15, 0.2), Box(_EYE_L, 0.15, 0.2, 0.15, 0.2)), "upper"),
    AU(9, "nose wrinkler", "levator labii superioris alaeque nasi",
       "wrinkles on the nose bridge, nostrils raised",
       (Box(_NOSE + (39, 42), 0.15, 0.1, 0.15, 0.15),), "lower"),
    AU(10, "upper lip raiser", "levator labii superioris",
       "upper lip raised, nasolabial furrow deepened",
       (Box((31, 32, 33, 34, 35, 48, 49, 50, 51, 52, 53, 54, 61, 62, 63), 0.25, 0.15, 0.25, 0.1),), "lower"),
    AU(11, "nasolabial deepener", "zygomaticus minor",
       "nasolabial furrow deepened",
       (Box((31, 35, 48, 54), 0.3, 0.15, 0.3, 0.1),), "lower"),
    AU(12, "lip corner puller", "zygomaticus major",
       "mouth corners pulled up and back (smile)",
       (Box(_MOUTH + (31, 35), 0.35, 0.15, 0.35, 0.15),), "lower"),
    AU(13, "sharp lip puller", "levator anguli oris",
       "cheeks puffed, corners pulled sharply up",
       (Box(_MOUTH + (31, 35), 0.35, 0.2, 0.35, 0.15),), "lower"),
    AU(14, "dimpler", "buccinator",
       "mouth corners tightened inward, dimples",
       (Box(_MOUTH, 0.35, 0.2, 0.35, 0.2),), "lower"),
    AU(15, "lip corner depressor", "depressor anguli oris",
       "mouth corners pulled down",
       (Box(_MOUTH, 0.3, 0.15, 0.3, 0.4),), "lower"),
    AU(16, "lower lip depressor", "depressor labii inferioris",
       "lower lip pulled down",
       (Box((48, 54, 55, 56, 57, 58, 59, 64, 65, 66, 67), 0.15, 0.1, 0.15, 0.35),), "lower"),
    AU(17, "chin raiser", "mentalis",
       "chin boss pushed up, lower lip pushed up",
       (Box((6, 7, 8, 9, 10, 55, 56, 57, 58, 59), 0.15, 0.15, 0.15, 0.1),), "lower"),
    AU(18, "lip puckerer", "incisivii labii",
       "lips pushed forward",
       (Box(_MOUTH, 0.25, 0.15, 0.25, 0.15),), "lower"),
    AU(20, "lip stretcher", "risorius",
       "lips stretched horizontally",
       (Box(_MOUTH, 0.4, 0.15, 0.4, 0.2),), "lower"),
    AU(22, "lip funneler", "orbicularis oris",
       "lips funnel outward",
       (Box(_MOUTH, 0.25, 0.15, 0.25, 0.15),), "lower"),
    AU(23, "lip tightener", "orbicularis oris",
       "lips tightened, red of the lips narrows",
       (Box(_MOUTH, 0.2, 0.15, 0.2, 0.15),), "lower"),
    AU(24, "lip pressor", "orbicularis oris",
       "lips pressed together",
       (Box(_MOUTH, 0.2, 0.15, 0.2, 0.15),), "lower"),
    AU(25, "lips part", "depressor labii / relaxed mentalis",
       "lips parted",
       (Box(_MOUTH, 0.15, 0.15, 0.15, 0.2),), "lower"),
    AU(26, "jaw drop", "masseter relaxed",
       "jaw lowered, mouth open",
       (Box(_MOUTH + (4, 5, 6, 7, 8, 9, 10, 11, 12), 0.1, 0.15, 0.1, 0.15),), "lower"),
    AU(27, "mouth stretch", "pterygoids, digastric",
       "mouth stretched wide open",
       (Box(_MOUTH + (4, 5, 6, 7, 8, 9, 10, 11, 12), 0.1, 0.15, 0.1, 0.15),), "lower"),
    AU(43, "eyes closed", "relaxed levator palpebrae",
       "eyes closed",
       (Box(_EYE_R, 0.15, 0.2, 0.15, 0.2), Box(_EYE_L, 0.15, 0.2, 0.15, 0.2)), "upper"),
)
# fmt: on

AUS: dict[int, AU] = {a.number: a for a in _CATALOGUE}
AU_IDS: tuple[int, ...] = tuple(AUS)

def presence(aus: np.ndarray) -> np.ndarray:
    """AU presence from intensities: 1 where the intensity is > 0, 0 where it is 0, NaN where the
    AU is not coded (NaN intensity). Same shape, float32."""
    aus = np.asarray(aus, dtype=np.float32)
    out = (aus > 0).astype(np.float32)
    out[np.isnan(aus)] = np.nan
    return out


def au(number: int) -> AU:
    """The catalogue entry of one AU; ValueError naming the known AUs otherwise."""
    try:
        return AUS[int(number)]
    except (KeyError, ValueError, TypeError):
        raise ValueError(
            f"unknown action unit {number!r}; known AUs are {', '.join(map(str, AU_IDS))}"
        ) from None


def au_name(number: int) -> str:
    """``'AU12 lip corner puller'``; AUs outside the catalogue get ``'AU<n>'``."""
    a = AUS.get(int(number))
    return f"AU{number} {a.name}" if a else f"AU{number}"


# --------------------------------------------------------------------------------------------
# Face regions on the 68 landmarks


def face_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The face frame of one face.

    Parameters
    ----------
    landmarks : (68, 2) float
        x then y in pixels.

    Returns
    -------
    origin : (2,) float
        Midpoint between the eye centres.
    axes : (2, 2) float
        Rows are the unit x axis (towards the image-right eye) and y axis (towards the chin).
    iod : float
        Inter-ocular distance (between the eye centres) in pixels.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    right_eye = lm[36:42].mean(axis=0)
    left_eye = lm[42:48].mean(axis=0)
    d = left_eye - right_eye
    iod = float(np.hypot(*d))
    if not np.isfinite(iod) or iod <= 0:
        raise ValueError("landmarks: the eye centres coincide or are not finite; cannot place regions")
    ex = d / iod
    ey = np.array([-ex[1], ex[0]])
    return (right_eye + left_eye) / 2, np.stack([ex, ey]), iod


def region_polygons(landmarks: np.ndarray, au_number: int) -> list[np.ndarray]:
    """Corner points of each box of an AU's region, in image pixels: a list of (4, 2) float."""
    origin, axes, iod = face_frame(landmarks)
    lm = np.asarray(landmarks, dtype=np.float64)
    out = []
    for box in au(au_number).region:
        local = (lm[list(box.landmarks)] - origin) @ axes.T  # (k, 2) face-frame coordinates
        x0 = local[:, 0].min() - box.left * iod
        x1 = local[:, 0].max() + box.right * iod
        y0 = local[:, 1].min() - box.top * iod
        y1 = local[:, 1].max() + box.bottom * iod
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        out.append(corners @ axes + origin)
    return out


def in_region(landmarks: np.ndarray, au_number: int, points: np.ndarray) -> np.ndarray:
    """Whether each point lies in the AU's region.

    Parameters
    ----------
    landmarks : (68, 2) float
    au_number : int
    points : (P, 2) float
        x then y in pixels.

    Returns
    -------
    (P,) bool
    """
    origin, axes, iod = face_frame(landmarks)
    lm = np.asarray(landmarks, dtype=np.float64)
    pts = (np.asarray(points, dtype=np.float64).reshape(-1, 2) - origin) @ axes.T
    inside = np.zeros(len(pts), dtype=bool)
    for box in au(au_number).region:
        local = (lm[list(box.landmarks)] - origin) @ axes.T
        inside |= (
            (pts[:, 0] >= local[:, 0].min() - box.left * iod)
            & (pts[:, 0] <= local[:, 0].max() + box.right * iod)
            & (pts[:, 1] >= local[:, 1].min() - box.top * iod)
            & (pts[:, 1] <= local[:, 1].max() + box.bottom * iod)
        )
    return inside


def region_mask(landmarks: np.ndarray, au_number: int, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) mask of the pixels whose centres lie in the AU's region."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    pts = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float64)
    return in_region(landmarks, au_number, pts).reshape(h, w)


# --------------------------------------------------------------------------------------------
# Label sets

#: The emotion vocabulary that every label set maps into (for cross-data-set transfer).
CANONICAL_EMOTIONS = ("neutral", "anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")


@dataclass(frozen=True)
class LabelSet:
    """The classes of one data set and how its files code them.

    ``classes`` are the names in class-index order; ``codes`` maps the on-disk code (an int or a
    string such as JAFFE's ``"HA"``) to the class index; ``canonical`` gives each class's name in
    :data:`CANONICAL_EMOTIONS`.
    """

    name: str
    classes: tuple[str, ...]
    codes: dict
    canonical: tuple[str, ...]
    description: str

    def index(self, code) -> int:
        """Class index of an on-disk code; ValueError naming the valid codes otherwise."""
        if code in self.codes:
            return self.codes[code]
        raise ValueError(
            f"label set {self.name!r}: code {code!r} is not one of {sorted(self.codes, key=str)}"
        )


def _ls(name, classes, codes, canonical, description):
    return LabelSet(name, tuple(classes), dict(codes), tuple(canonical), description)


_CK8 = ("neutral", "anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
_SIX = ("anger", "disgust", "fear", "happy", "sadness", "surprise")

LABEL_SETS: dict[str, LabelSet] = {
    s.name: s
    for s in (
        _ls("ckplus8", _CK8, {i: i for i in range(8)}, _CK8,
            "CK+ Emotion/*_emotion.txt codes 0-7 (0 neutral ... 7 surprise)"),
        _ls("ckplus6", _SIX, {1: 0, 3: 1, 4: 2, 5: 3, 6: 4, 7: 5}, _SIX,
            "CK+ six-class: neutral (0) and contempt (2) dropped"),
        _ls("fer2013", ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"),
            {i: i for i in range(7)},
            ("anger", "disgust", "fear", "happy", "sadness", "surprise", "neutral"),
            "fer2013.csv column 'emotion', codes 0-6"),
        _ls("ferplus", ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"),
            {i: i for i in range(8)},
            ("neutral", "happy", "surprise", "sadness", "anger", "disgust", "fear", "contempt"),
            "fer2013new.csv vote columns, in file order (unknown and NF are not classes)"),
        _ls("tfd", ("anger", "disgust", "fear", "happy", "sad", "surprise", "neutral"),
            {i + 1: i for i in range(7)},
            ("anger", "disgust", "fear", "happy", "sadness", "surprise", "neutral"),
            "TFD labs_ex codes 1-7; 0 and -1 are unlabelled"),
        _ls("jaffe", ("AN", "DI", "FE", "HA", "NE", "SA", "SU"),
            {c: i for i, c in enumerate(("AN", "DI", "FE", "HA", "NE", "SA", "SU"))},
            ("anger", "disgust", "fear", "happy", "neutral", "sadness", "surprise"),
            "JAFFE file-name codes"),
    )
}


def label_set(name: str) -> LabelSet:
    """A label set by name; ValueError listing the known ones otherwise."""
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise ValueError(f"unknown label set {name!r}; known: {', '.join(LABEL_SETS)}") from None


#: Spellings other projects use for the canonical emotions (adjectives, nouns, FER+/AffectNet/RAF-DB
#: and Keras tutorials' names), lower case.
EMOTION_SPELLINGS: dict[str, str] = {
    "angry": "anger", "anger": "anger", "mad": "anger", "an": "anger",
    "contemptuous": "contempt",
    "disgusted": "disgust", "disgust": "disgust", "di": "disgust",
    "fearful": "fear", "afraid": "fear", "scared": "fear", "fe": "fear",
    "happiness": "happy", "happy": "happy", "joy": "happy", "joyful": "happy", "ha": "happy",
    "sad": "sadness", "sadness": "sadness", "unhappy": "sadness", "sa": "sadness",
    "surprised": "surprise", "surprise": "surprise", "su": "surprise",
    "neutral": "neutral", "neutrality": "neutral", "calm": "neutral", "ne": "neutral",
}


def canonical_emotion(name: str) -> str | None:
    """Map a class name of any known label set, a canonical name or a common spelling
    (:data:`EMOTION_SPELLINGS`: angry, sad, surprised, happiness, ...) to the canonical
    vocabulary; None when it names no emotion fercore knows."""
    key = name.strip().lower()
    if key in CANONICAL_EMOTIONS:
        return key
    if key in EMOTION_SPELLINGS:
        return EMOTION_SPELLINGS[key]
    for s in LABEL_SETS.values():
        for cls, can in zip(s.classes, s.canonical, strict=True):
            if cls.lower() == key:
                return can
    return None


# --------------------------------------------------------------------------------------------
# EMFACS prototypes: emotion -> {AU: intensity 1-5}; None sides mean both sides.
# Intensities not given by the prototype are set to C (3); 5B of surprise is B (2).
# Contempt is unilateral (R12A + R14A): its AUs carry side "R".

PROTOTYPES: dict[str, dict[int, int]] = {
    "neutral": {},
    "happy": {6: 3, 12: 3},
    "sadness": {1: 3, 4: 3, 15: 3},
    "surprise": {1: 3, 2: 3, 5: 2, 26: 3},
    "fear": {1: 3, 2: 3, 4: 3, 5: 3, 7: 3, 20: 3, 26: 3},
    "anger": {4: 3, 5: 3, 7: 3, 23: 3},
    "disgust": {9: 3, 15: 3, 16: 3},
    "contempt": {12: 1, 14: 1},
}

#: Which side a prototype AU shows on, where it is one-sided ("R" = subject's right).
PROTOTYPE_SIDES: dict[str, dict[int, str]] = {"contempt": {12: "R", 14: "R"}}
