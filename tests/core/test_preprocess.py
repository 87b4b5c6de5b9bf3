"""Decoding of real image formats, Haar detection and eye alignment on a real photograph."""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from fercore.data.preprocess import (
    FaceCrop,
    ImageDecodeError,
    NoFaceError,
    PreprocessOptions,
    decode_image,
    detect_eyes,
    detect_faces,
    options_from_meta,
    preprocess_face,
)


@pytest.fixture(scope="module")
def astronaut_grey():
    return cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2GRAY)


def _rotate(img, deg):
    h, w = img.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)


def _png(img: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _ramp():
    return (np.arange(40 * 60).reshape(40, 60) % 256).astype(np.uint8)


# ---------------------------------------------------------------------------- decoding
def test_decode_grey_png_roundtrip_and_path(tmp_path):
    a = _ramp()
    p = tmp_path / "g.png"
    Image.fromarray(a).save(p)
    np.testing.assert_array_equal(decode_image(p), a)
    np.testing.assert_array_equal(decode_image(str(p)), a)
    np.testing.assert_array_equal(decode_image(p.read_bytes()), a)


def test_decode_16bit_png_scales_to_8bit():
    a16 = (np.arange(32 * 32).reshape(32, 32) * 64).astype(np.uint16)
    out = decode_image(_png(Image.fromarray(a16)))
    assert out.dtype == np.uint8 and out.shape == (32, 32)
    np.testing.assert_allclose(out, np.rint(a16 / 257.0), atol=1)
    assert out.max() > 200  # full 16-bit range maps onto full 8-bit range


def test_decode_rgb_matches_luma():
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[..., 0] = 200
    out = decode_image(_png(Image.fromarray(rgb)))
    assert abs(int(out[0, 0]) - round(0.299 * 200)) <= 1


def test_decode_rgba_composites_over_white():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:4, :, 3] = 255  # top half opaque black, bottom half transparent
    out = decode_image(_png(Image.fromarray(rgba, "RGBA")))
    assert (out[:4] == 0).all() and (out[4:] == 255).all()


def test_decode_cmyk_jpeg():
    img = Image.new("CMYK", (16, 16), (0, 0, 0, 255))  # full black ink
    out = decode_image(_png(img, "JPEG"))
    assert out.shape == (16, 16) and out.mean() < 30
    white = decode_image(_png(Image.new("CMYK", (16, 16), (0, 0, 0, 0)), "TIFF"))
    assert white.mean() > 225


def test_decode_palette_image():
    img = Image.new("P", (12, 12))
    img.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    px = np.zeros((12, 12), np.uint8)
    px[:, 6:] = 1
    img.putdata(px.ravel().tolist())
    out = decode_image(_png(img))
    assert (out[:, :6] == 0).all() and (out[:, 6:] == 255).all()


def test_decode_exif_rotation_is_applied():
    a = np.zeros((20, 40), np.uint8)
    a[:, :10] = 255  # bright strip on the left of a landscape image
    img = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = decode_image(_png(img, "JPEG", exif=exif.tobytes(), quality=95))
    assert out.shape == (40, 20)  # now portrait
    assert out[:10].mean() > 200 and out[-10:].mean() < 50  # the strip is on top


def test_decode_not_an_image():
    with pytest.raises(ImageDecodeError, match="not an image"):
        decode_image(b"hello, this is text")


def test_decode_truncated_png():
    raw = _png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)))
    with pytest.raises(ImageDecodeError, match="truncated or corrupt"):
        decode_image(raw[: len(raw) // 2])


def test_decode_too_large_refused_before_decoding():
    raw = _png(Image.new("L", (300, 200)))
    with pytest.raises(ImageDecodeError, match=r"300x200.*limit"):
        decode_image(raw, max_pixels=50_000)


def test_decode_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        decode_image(tmp_path / "nope.png")


# ---------------------------------------------------------------------------- detection, alignment
def _eye_angle(crop: np.ndarray) -> float:
    eyes = detect_eyes(crop, (0, 0, crop.shape[1], crop.shape[0]))
    assert eyes is not None, "eyes not found in the aligned crop"
    d = eyes[1] - eyes[0]
    return math.degrees(math.atan2(d[1], d[0]))


def test_detects_astronaut_face(astronaut_grey):
    faces = detect_faces(astronaut_grey)
    assert len(faces) >= 1
    x, y, w, h = faces[0]
    # Her face (eyes ~ (200-250, 110), mouth ~ (225, 145)) lies inside the box.
    for px, py in [(205, 108), (245, 108), (225, 145)]:
        assert x <= px <= x + w and y <= py <= y + h
    assert 60 <= w <= 160


#: The papers' crop: Haar detection, the box rotated to level the eyes (eye cascade), no landmarks.
BOX = dict(geometry="box", detector="haar", landmarks=False)


def test_alignment_levels_eyes(astronaut_grey):
    crop = preprocess_face(astronaut_grey, PreprocessOptions(size=96, **BOX))
    assert isinstance(crop, FaceCrop)
    assert crop.image.shape == (96, 96) and crop.image.dtype == np.uint8
    assert crop.eyes_found and crop.n_faces == 1 and not crop.centre_crop
    assert abs(_eye_angle(crop.image)) < 4.0


@pytest.mark.parametrize("deg", [10.0, -10.0])
def test_alignment_undoes_rotation(astronaut_grey, deg):
    base = preprocess_face(astronaut_grey, PreprocessOptions(size=96, **BOX))
    rotated = preprocess_face(_rotate(astronaut_grey, deg), PreprocessOptions(size=96, **BOX))
    assert rotated.eyes_found
    # The photo turned by +deg (counter-clockwise) needs deg less rotation to be levelled.
    assert abs((base.angle - rotated.angle) - deg) < 4.0
    assert abs(_eye_angle(rotated.image)) < 4.0


def test_big_image_is_downscaled_for_detection(astronaut_grey):
    big = cv2.resize(astronaut_grey, (8000, 8000), interpolation=cv2.INTER_LINEAR)
    crop = preprocess_face(big, PreprocessOptions(size=64, **BOX))
    assert crop.image.shape == (64, 64) and crop.eyes_found
    x, y, w, h = crop.box
    k = 8000 / 512
    assert x <= 205 * k <= x + w and y <= 108 * k <= y + h
    # the same face as from the small photo, up to resampling
    small = preprocess_face(astronaut_grey, PreprocessOptions(size=64, **BOX))
    assert np.corrcoef(crop.image.ravel(), small.image.ravel())[0, 1] > 0.9
    # the canonical crop of the 8000-px photo: the same face, the same geometry
    canon = preprocess_face(big, PreprocessOptions(size=64))
    small = preprocess_face(astronaut_grey, PreprocessOptions(size=64))
    assert canon.geometry == small.geometry == "canonical"
    assert np.abs(canon.landmarks[36:48] - small.landmarks[36:48]).max() < 2.0


def test_several_faces_use_largest_and_report(astronaut_grey):
    face = astronaut_grey[40:200, 140:300]
    canvas = np.full((400, 700), 128, np.uint8)
    canvas[20:180, 20:180] = face
    canvas[100:340, 300:540] = cv2.resize(face, (240, 240))
    crop = preprocess_face(canvas, PreprocessOptions(size=48, align=False))
    assert crop.n_faces == 2
    assert crop.box[0] >= 290
    assert any("2 faces found; the largest was used" in m for m in crop.messages)


def test_no_face_skip_raises_and_center_crops():
    flat = np.full((120, 160), 90, np.uint8)
    with pytest.raises(NoFaceError, match="no face"):
        preprocess_face(flat, PreprocessOptions(size=32, on_no_face="skip"))
    crop = preprocess_face(flat, PreprocessOptions(size=32, on_no_face="center"))
    assert crop.centre_crop and crop.box is None and crop.image.shape == (32, 32)
    assert any("centre crop" in m for m in crop.messages)


@pytest.mark.parametrize("size", [64, 32])  # 32: the face is area-shrunk before the warp
def test_landmarks_align_and_are_transformed(size):
    # A tilted synthetic face given by landmarks: eyes 20 degrees off level.
    img = np.full((200, 200), 100, np.uint8)
    lm = np.zeros((68, 2))
    ang = math.radians(20)
    centre = np.array([100.0, 100.0])
    rng = np.random.default_rng(1)
    lm[:] = centre + rng.normal(0, 25, (68, 2))
    for idx, dx in ((range(36, 42), -30.0), (range(42, 48), 30.0)):
        lm[list(idx)] = centre + np.array([dx * math.cos(ang), dx * math.sin(ang)])
    crop = preprocess_face(img, PreprocessOptions(size=size, detect=False, **BOX), landmarks=lm)
    assert crop.angle == pytest.approx(20.0, abs=1e-6)
    le, re = crop.landmarks[36:42].mean(0), crop.landmarks[42:48].mean(0)
    assert abs(le[1] - re[1]) < 1e-2  # level after alignment
    # 200-px image -> size px: the eye distance scales by size/200, the eyes stay centred.
    assert np.hypot(*(re - le)) == pytest.approx(60 * size / 200, rel=1e-2)
    assert (le + re)[0] / 2 == pytest.approx(size / 2, abs=0.05 * size)


def test_no_detection_resizes_whole_image():
    a = _ramp()[:40, :40]
    crop = preprocess_face(a, PreprocessOptions(size=40, detect=False, align=False))
    np.testing.assert_array_equal(crop.image, a)


def test_options_roundtrip_through_meta():
    o = PreprocessOptions(size=48, detect=False, align=False, face_margin=0.1, on_no_face="center",
                          normalize="standardize")
    assert options_from_meta({"preprocess": o.to_dict()}) == o
    with pytest.raises(ValueError, match="unknown option"):
        options_from_meta({"preprocess": {**o.to_dict(), "blur": 3}})
    with pytest.raises(ValueError, match="no 'preprocess'"):
        options_from_meta({})


@pytest.mark.parametrize("kw, msg", [({"size": 2}, "size"), ({"on_no_face": "drop"}, "on_no_face"),
                                     ({"normalize": "zca"}, "normalize"), ({"face_margin": -1}, "face_margin")])
def test_options_validate(kw, msg):
    with pytest.raises(ValueError, match=msg):
        PreprocessOptions(**kw)


# ------------------------------------------------------------------- the canonical face geometry
def _centres(lm):
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[48:68].mean(0)])


@pytest.mark.parametrize("deg", [0.0, 12.0])
def test_canonical_crop_puts_eyes_and_mouth_on_the_template(astronaut_grey, deg):
    from fercore.data.preprocess import CANONICAL

    crop = preprocess_face(_rotate(astronaut_grey, deg), PreprocessOptions(size=96))
    assert crop.geometry == "canonical" and crop.fit == "fitted" and crop.n_faces == 1
    want = np.asarray(CANONICAL) * 96 - 0.5
    got = _centres(crop.landmarks)
    assert np.abs(got[:2] - want[:2]).max() < 2.0  # the eye centres within 2 px
    assert np.abs(got[2] - want[2]).max() < 3.0
    base = preprocess_face(astronaut_grey, PreprocessOptions(size=96))
    assert abs((base.angle - crop.angle) - deg) < 3.0  # the photo turned by deg is turned back


def test_a_precropped_face_is_kept_and_gets_its_points(astronaut_grey):
    """A 48-px pre-cropped face (as in FER2013) is kept as it is, with the 68 points fitted on it;
    the same face cropped canonically from the full photo lands on nearly the same geometry."""
    canon = preprocess_face(astronaut_grey, PreprocessOptions(size=48))
    pre = preprocess_face(canon.image, PreprocessOptions(size=48, detect=False, align=False, geometry="box"))
    np.testing.assert_array_equal(pre.image, canon.image)
    assert pre.fit == "fitted" and pre.box == (0, 0, 48, 48)
    assert np.abs(_centres(pre.landmarks) - _centres(canon.landmarks)).max() < 3.0


def test_an_implausible_fit_keeps_no_points_and_falls_back_to_the_box():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    crop = preprocess_face(noise, PreprocessOptions(size=48, detect=False))
    assert crop.landmarks is None and crop.fit.startswith("implausible") and crop.geometry == "box"
    assert any("not plausible" in m for m in crop.messages)


def test_options_of_older_facesets_keep_the_crop_they_made():
    from fercore.data.preprocess import options_from_meta

    old = options_from_meta({"preprocess": {"size": 96, "detect": True, "align": True, "normalize": "local_mean"}})
    assert (old.detector, old.geometry, old.landmarks) == ("haar", "box", False)
    assert PreprocessOptions().geometry == "canonical" and PreprocessOptions().detector == "dlib"
    with pytest.raises(ValueError, match="geometry"):
        PreprocessOptions(geometry="square")
