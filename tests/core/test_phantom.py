"""The phantom face generator: drawing, AU placement, data-set contract, CLI."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fercore.cli import main as cli_main
from fercore.data import facs
from fercore.data import phantom as ph
from fercore.store.faceset_h5 import load_faceset


def _identity(seed: int) -> ph.Identity:
    return ph.random_identity(np.random.default_rng(seed))


# ------------------------------------------------------------------------------------------
# render_face


@pytest.mark.parametrize("size", [48, 64, 128])
def test_render_shapes_and_determinism(size):
    idn = _identity(0)
    nz = ph.random_nuisance(np.random.default_rng(1))
    img, lm = ph.render_face(idn, {12: 3, 6: 2}, size=size, nuisance=nz)
    assert img.shape == (size, size) and img.dtype == np.uint8
    assert lm.shape == (68, 2) and lm.dtype == np.float32
    assert np.all((lm > 0) & (lm < size))
    img2, lm2 = ph.render_face(idn, {12: 3, 6: 2}, size=size, nuisance=nz)
    assert np.array_equal(img, img2) and np.array_equal(lm, lm2)
    assert img.std() > 10  # a face, not a flat image


def test_identity_is_frozen_and_varies():
    a, b = _identity(0), _identity(1)
    assert a != b
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.skin = 10.0
    # glasses appear for some subjects only
    flags = [_identity(s).glasses for s in range(60)]
    assert 0 < sum(flags) < 30


def _au_diff(idn, au_n, *, size=64, nuisance=None, sides=None):
    base, _ = ph.render_face(idn, {}, size=size, nuisance=nuisance)
    img, lm = ph.render_face(idn, {au_n: 3}, size=size, nuisance=nuisance, sides=sides)
    return np.abs(img.astype(np.float64) - base), lm


@pytest.mark.parametrize("au_n", ph.DRAWN_AUS)
def test_each_au_shows_inside_its_region(au_n):
    """With and without the AU at intensity C, >= 80% of the pixel change lies in the AU's region."""
    for seed in (0, 1, 2):
        idn = _identity(seed)
        diff, lm = _au_diff(idn, au_n)
        mask = facs.region_mask(lm, au_n, diff.shape)
        total = diff.sum()
        assert total > 300, f"AU{au_n} barely changes the face (summed |diff| {total:.0f})"
        share = diff[mask].sum() / total
        assert share >= 0.8, f"AU{au_n}, identity {seed}: only {share:.0%} of the change is in its region"


@pytest.mark.parametrize("au_n", [1, 4, 6, 12, 15, 26])
def test_au_region_follows_the_nuisance(au_n):
    """Landmarks are reported after rotation, scale and shift: the regions still hold the change."""
    idn = _identity(3)
    nz = ph.Nuisance(rotation=6.0, scale=1.04, shift=(0.03, -0.02), light=0.2, gamma=1.1, noise=0.0)
    diff, lm = _au_diff(idn, au_n, nuisance=nz)
    share = diff[facs.region_mask(lm, au_n, diff.shape)].sum() / diff.sum()
    assert share >= 0.75


def test_landmarks_transform_with_the_pose():
    idn = _identity(4)
    _, lm0 = ph.render_face(idn, {}, size=64)
    nz = ph.Nuisance(rotation=10.0)
    _, lm1 = ph.render_face(idn, {}, size=64, nuisance=nz)
    # the eye line turns by the rotation (counter-clockwise in the image = negative y slope)
    d0 = lm0[45] - lm0[36]
    d1 = lm1[45] - lm1[36]
    ang = np.degrees(np.arctan2(d1[1], d1[0]) - np.arctan2(d0[1], d0[0]))
    assert ang == pytest.approx(-10.0, abs=0.01)
    # and the face moved with it: dark pupils stay under the eye landmarks
    img, lm = ph.render_face(idn, {}, size=128, nuisance=nz)
    for eye in (slice(36, 42), slice(42, 48)):
        x, y = lm[eye].mean(axis=0)
        patch = img[int(y) - 2 : int(y) + 3, int(x) - 2 : int(x) + 3]
        assert patch.min() < idn.skin * 0.6


def test_aus_visible_at_48_px():
    idn = _identity(5)
    for au_n in ph.DRAWN_AUS:
        diff, _ = _au_diff(idn, au_n, size=48)
        assert diff.max() >= 20, f"AU{au_n} changes no pixel by 20 grey levels at 48 px"


def test_one_sided_au_changes_one_side():
    idn = _identity(6)
    diff, lm = _au_diff(idn, 12, sides={12: "R"})
    mid = int(round(lm[27:31, 0].mean()))
    right, left = diff[:, :mid].sum(), diff[:, mid + 1 :].sum()  # subject's right = image left
    assert right > 5 * left
    diff_l, _ = _au_diff(idn, 12, sides={12: "L"})
    assert diff_l[:, mid + 1 :].sum() > 5 * diff_l[:, :mid].sum()


def test_intensity_orders_the_change():
    idn = _identity(7)
    base, _ = ph.render_face(idn, {}, size=64)
    sums = [np.abs(ph.render_face(idn, {12: k}, size=64)[0].astype(float) - base).sum() for k in (1, 3, 5)]
    assert sums[0] < sums[1] < sums[2]


@pytest.mark.parametrize(
    "aus, sides, size, match",
    [
        ({3: 2}, None, 64, "AU3 is not drawn"),
        ({12: 6}, None, 64, "outside 0-5"),
        ({12: 2}, {12: "X"}, 64, "side 'X'"),
        ({12: 2}, None, 8, "size"),
        ([12], None, 64, "expected a dict"),
    ],
)
def test_render_rejects_bad_input(aus, sides, size, match):
    with pytest.raises(ValueError, match=match):
        ph.render_face(_identity(0), aus, size=size, sides=sides)


# ------------------------------------------------------------------------------------------
# expressions and the data set


def test_determined_expressions_are_the_prototypes():
    rng = np.random.default_rng(0)
    for emo, proto in facs.PROTOTYPES.items():
        aus, sides = ph.sample_expression(emo, rng, au_variation=0.0)
        expected = dict(proto)
        if 26 in expected or 16 in expected:
            expected[25] = max(expected.get(26, 0), expected.get(16, 0))
        assert aus == expected
        assert sides == facs.PROTOTYPE_SIDES.get(emo, {})


def test_variation_keeps_the_core_and_decouples_aus():
    rng = np.random.default_rng(1)
    seen = {}
    for emo in facs.PROTOTYPES:
        sets = set()
        for _ in range(200):
            aus, sides = ph.sample_expression(emo, rng)
            assert set(ph.CORE_AUS[emo]) <= set(aus)
            assert all(1 <= v <= 5 for v in aus.values())
            if emo == "contempt":
                assert sides and set(sides.values()) <= {"R", "L"}
            sets.add(frozenset(aus))
        seen[emo] = sets
    # the same emotion comes with different AU sets, and AUs outside the prototype appear
    assert all(len(s) > 3 for e, s in seen.items() if e != "neutral")
    assert len(seen["neutral"]) > 1


def _extra_intensities(extra_max, n=600):
    """Intensities of the AUs that are not in the prototype, over ``n`` faces of every emotion."""
    rng = np.random.default_rng(3)
    out = []
    for emo, proto in facs.PROTOTYPES.items():
        for _ in range(n):
            aus, _ = ph.sample_expression(emo, rng, p_extra=0.5, extra_max=extra_max)
            out += [v for a, v in aus.items() if a not in proto and a != 25]  # 25 follows its opener
    return np.array(out)


def test_extra_aus_reach_extra_max():
    low, high = _extra_intensities(3), _extra_intensities(5)
    assert low.min() == 1 and low.max() == 3  # the default: weaker than the prototypes' 3 +- 1
    assert high.max() == 5 and (high >= 4).mean() > 0.25
    with pytest.raises(ValueError, match="extra_max"):
        ph.generate_faceset(10, extra_max=6)


@pytest.fixture(scope="module")
def small_set():
    return ph.generate_faceset(240, size=48, seed=11, n_subjects=24)


def test_faceset_contract(small_set):
    fs = small_set
    ls = facs.LABEL_SETS["ckplus8"]
    assert fs.class_names == ls.classes and fs.label_set == "ckplus8"
    assert fs.images.shape == (240, 48, 48) and fs.images.dtype == np.uint8
    assert tuple(fs.au_ids) == ph.DRAWN_AUS and fs.aus.shape == (240, 18)
    assert np.isfinite(fs.aus).all() and fs.aus.min() >= 0 and fs.aus.max() <= 5
    assert fs.landmarks.shape == (240, 68, 2)
    assert fs.sequences is None
    meta = fs.meta
    assert meta["source"] == "phantom"
    assert meta["preprocess"] == {"normalize": "standardize", "size": 48, "detect": False}
    for key in ("n", "size", "seed", "n_subjects", "n_folds", "au_variation", "nuisance"):
        assert key in meta["options"]
    assert "240 images, 24 subjects, 8 classes, 10 subject-independent folds" in meta["protocol"]


def test_folds_are_subject_independent_and_classes_balanced(small_set):
    fs = small_set
    subjects = sorted(set(fs.subjects))
    for i, s in enumerate(subjects):
        folds = set(fs.folds[fs.subjects == s])
        assert folds == {i % 10}, f"subject {s} in folds {folds}"
    counts = np.bincount(fs.labels, minlength=8)
    assert counts.max() - counts.min() <= 1
    # every subject shows several emotions
    assert all(len(set(fs.labels[fs.subjects == s])) >= 8 for s in subjects)


def test_generation_is_deterministic_and_identity_stable():
    a = ph.generate_faceset(40, size=48, seed=5, n_subjects=4)
    b = ph.generate_faceset(40, size=48, seed=5, n_subjects=4)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.aus, b.aus)
    assert a.content_hash() == b.content_hash()
    c = ph.generate_faceset(40, size=48, seed=6, n_subjects=4)
    assert not np.array_equal(a.images, c.images)


def test_determined_faceset_has_prototype_aus():
    fs = ph.generate_faceset(48, size=48, seed=2, n_subjects=6, au_variation=0.0)
    col = {a: j for j, a in enumerate(fs.au_ids)}
    for i in range(len(fs)):
        emo = fs.class_names[fs.labels[i]]
        expected = np.zeros(len(fs.au_ids), np.float32)
        aus, _ = ph.sample_expression(emo, np.random.default_rng(0), au_variation=0.0)
        for a, k in aus.items():
            expected[col[a]] = k
        assert np.array_equal(fs.aus[i], expected)


def test_tiny_sets_have_one_subject_per_image():
    fs = ph.generate_faceset(3, size=48, seed=0)
    assert len(set(fs.subjects)) == 3 and sorted(fs.folds) == [0, 1, 2]


def test_generate_rejects_bad_options():
    with pytest.raises(ValueError, match="n_subjects"):
        ph.generate_faceset(10, n_subjects=20)
    with pytest.raises(ValueError, match="size"):
        ph.generate_faceset(10, size=4)
    with pytest.raises(ValueError, match="au_variation"):
        ph.generate_faceset(10, au_variation=-1)


def test_progress_is_reported():
    calls = []
    ph.generate_faceset(30, size=48, seed=0, n_subjects=3, progress=lambda d, t, s: calls.append((d, t, s)))
    assert calls[0] == (0, 30, "phantom") and calls[-1] == (30, 30, "phantom")


def test_montage_has_one_row_per_class(small_set):
    m = ph.montage(small_set, per_class=5)
    assert m.dtype == np.uint8 and m.ndim == 2
    assert m.shape[0] == 8 * 48
    width_label = m.shape[1] - 5 * 48
    assert width_label > 20
    # the label column carries dark text in every row
    for c in range(8):
        assert m[c * 48 : (c + 1) * 48, :width_label].min() < 128


def test_cli_writes_faceset_and_montage(tmp_path, capsys):
    out, png = tmp_path / "p.h5", tmp_path / "p.png"
    rc = cli_main(["phantom", "--n", "32", "--size", "48", "--seed", "3", "--subjects", "4",
                   "--out", str(out), "--montage", str(png), "--quiet"])
    assert rc == 0 and out.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fs = load_faceset(out)
    ref = ph.generate_faceset(32, size=48, seed=3, n_subjects=4)
    assert np.array_equal(fs.images, ref.images) and fs.meta["source"] == "phantom"
    rc = cli_main(["phantom", "--n", "32", "--size", "48", "--seed", "3", "--subjects", "4", "--p-extra", "0.6",
                   "--extra-max", "5", "--out", str(tmp_path / "strong.h5"), "--quiet"])
    strong = ph.generate_faceset(32, size=48, seed=3, n_subjects=4, p_extra=0.6, extra_max=5)
    assert rc == 0 and np.array_equal(load_faceset(tmp_path / "strong.h5").aus, strong.aus)
    assert not np.array_equal(strong.aus, ref.aus)
    rc = cli_main(["phantom", "--n", "8", "--out", str(tmp_path / "x.txt")])
    assert rc == 2 and "expected a .h5" in capsys.readouterr().err
