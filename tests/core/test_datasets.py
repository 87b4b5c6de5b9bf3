"""Loaders on tiny fixtures written in each data set's real on-disk format."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
import scipy.io
from PIL import Image
from skimage import data as skdata

from fercore.cli import main as cli_main
from fercore.data.datasets import (
    ferplus_target,
    load_ckplus,
    load_fer2013,
    load_folder,
    load_tfd,
    subject_folds,
)
from fercore.data.facs import label_set
from fercore.data.preprocess import CANONICAL, PreprocessOptions, options_from_meta
from fercore.pipeline import import_dataset
from fercore.store.faceset_h5 import load_faceset

FAST = PreprocessOptions(size=48, detect=False, align=False, normalize="none")


@pytest.fixture(scope="module")
def face_photo():
    """(220, 220) uint8: the astronaut's face with shoulders, a real detectable face."""
    g = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(g[10:230, 110:330])


# ============================================================================ FER2013 / FER+
# Vote rows: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
# and the targets worked out by hand from the rules in PROTOCOLS.md / the authors' code.
Z = [0.0] * 8


def _t(**kw):
    out = list(Z)
    names = label_set("ferplus").classes
    for k, v in kw.items():
        out[names.index(k)] = v
    return out


FERPLUS_CASES = [
    # votes, majority, multilabel, probability (= crossentropy)
    ([10, 0, 0, 0, 0, 0, 0, 0, 0, 0], _t(neutral=1), _t(neutral=1), _t(neutral=1)),
    ([6, 4, 0, 0, 0, 0, 0, 0, 0, 0], _t(neutral=1), _t(neutral=.6, happiness=.4), _t(neutral=.6, happiness=.4)),
    # single stray votes removed first: only the 5 neutral votes count
    ([5, 1, 1, 1, 1, 1, 0, 0, 0, 0], _t(neutral=1), _t(neutral=1), _t(neutral=1)),
    # a tie: no majority (dropped by MV); PLD takes both tied emotions at once
    ([4, 4, 2, 0, 0, 0, 0, 0, 0, 0], Z, _t(neutral=.5, happiness=.5), _t(neutral=.5, happiness=.5)),
    # a tie at the third step makes 4 emotions: PLD/CEL drop it; ML keeps the two >= 30 %
    ([3, 3, 2, 2, 0, 0, 0, 0, 0, 0], Z, _t(neutral=.5, happiness=.5), Z),
    # 75 % reached after two emotions; exactly half is not a majority
    ([5, 3, 2, 0, 0, 0, 0, 0, 0, 0], Z, _t(neutral=5 / 8, happiness=3 / 8), _t(neutral=5 / 8, happiness=3 / 8)),
    # unknown wins: dropped by every scheme
    ([2, 0, 0, 0, 0, 0, 0, 0, 8, 0], Z, Z, Z),
    # not-a-face after an emotion: PLD stops there and leaves it out; ML drops it when renormalising
    ([6, 0, 0, 0, 0, 0, 0, 0, 0, 4], _t(neutral=1), _t(neutral=1), _t(neutral=1)),
    # 75 % reached after two emotions (7 of 9 votes)
    ([0, 0, 4, 3, 2, 0, 0, 0, 0, 0], Z, _t(surprise=4 / 7, sadness=3 / 7), _t(surprise=4 / 7, sadness=3 / 7)),
    # three emotions taken (11 of 15 votes is under 75 %); ML keeps those with >= 4.5 votes
    ([0, 0, 6, 5, 4, 0, 0, 0, 0, 0], Z, _t(surprise=6 / 11, sadness=5 / 11), _t(surprise=6 / 15, sadness=5 / 15, anger=4 / 15)),
    # not-a-face ties the last emotion taken: PLD takes the emotion and leaves not-a-face out;
    # of 11 votes only surprise reaches 30 % (3.3), which is not more than half: ML drops it
    ([0, 0, 4, 3, 2, 0, 0, 0, 0, 2], Z, Z, _t(surprise=4 / 9, sadness=3 / 9, anger=2 / 9)),
]


@pytest.mark.parametrize("votes, mv, ml, pld", FERPLUS_CASES)
def test_ferplus_target_rules(votes, mv, ml, pld):
    np.testing.assert_allclose(ferplus_target(votes, "majority"), mv, atol=1e-12)
    np.testing.assert_allclose(ferplus_target(votes, "multilabel"), ml, atol=1e-12)
    np.testing.assert_allclose(ferplus_target(votes, "probability"), pld, atol=1e-12)
    np.testing.assert_allclose(ferplus_target(votes, "crossentropy"), pld, atol=1e-12)


def _usage(i):
    return "Training" if i < 20 else ("PublicTest" if i < 25 else "PrivateTest")


def _write_fer(tmp_path, n=30, bad_line=None):
    rng = np.random.default_rng(0)
    pix = rng.integers(0, 256, (n, 48 * 48))
    p = tmp_path / "fer2013.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        for i in range(n):
            px = pix[i] if i != bad_line else pix[i][:-5]
            w.writerow([i % 7, " ".join(map(str, px)), _usage(i)])
    return p, pix


def _ferplus_votes(n=30):
    """Rows: the hand cases first (training), then plain rows; row 12 has no image name."""
    votes = [c[0] for c in FERPLUS_CASES]
    while len(votes) < n:
        v = [0] * 10
        v[len(votes) % 8] = 10
        votes.append(v)
    votes[21] = [4, 4, 2, 0, 0, 0, 0, 0, 0, 0]  # valid row without a majority: dropped
    votes[22] = [6, 4, 0, 0, 0, 0, 0, 0, 0, 0]  # valid row: majority target in every scheme
    return votes


def _write_ferplus(tmp_path, votes, no_name=(12,)):
    p = tmp_path / "fer2013new.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Usage", "Image name", "neutral", "happiness", "surprise", "sadness", "anger",
                    "disgust", "fear", "contempt", "unknown", "NF"])
        for i, v in enumerate(votes):
            w.writerow([_usage(i), "" if i in no_name else f"fer{i:07d}.png", *v])
    return p


def test_fer2013_labels_splits_subjects(tmp_path):
    p, pix = _write_fer(tmp_path)
    res = load_fer2013(p, options=FAST)
    fs = res.faceset
    assert len(fs) == 30 and fs.class_names == label_set("fer2013").classes
    np.testing.assert_array_equal(fs.labels, np.arange(30) % 7)
    np.testing.assert_array_equal(fs.images[3].ravel(), pix[3])
    assert fs.splits.shape == (30, 1)
    np.testing.assert_array_equal(fs.splits[:, 0], [1] * 20 + [2] * 5 + [3] * 5)
    np.testing.assert_array_equal(fs.subjects, [str(i) for i in range(30)])
    np.testing.assert_array_equal(fs.folds, np.arange(30) % 10)
    assert "NOT subject-independent" in fs.meta["protocol"]
    assert fs.meta["preprocess"]["detect"] is False


def test_ferplus_targets_labels_and_dropped_rows(tmp_path):
    p, pix = _write_fer(tmp_path)
    votes = _ferplus_votes()
    res = load_fer2013(p, ferplus=_write_ferplus(tmp_path, votes), options=FAST)
    fs = res.faceset
    # dropped: row 6 (unknown wins everywhere), row 12 (no image name), row 21 (valid, no majority)
    kept = [i for i in range(30) if i not in (6, 12, 21)]
    assert len(fs) == len(kept)
    np.testing.assert_array_equal(fs.subjects, [str(i) for i in kept])
    np.testing.assert_array_equal(fs.images[kept.index(13)].ravel(), pix[13])
    assert fs.class_names == label_set("ferplus").classes
    for r, i in enumerate(kept):
        v = np.array(votes[i], float)
        np.testing.assert_allclose(fs.label_dist[r], v[:8] / v[:8].sum(), atol=1e-6)
        if i < len(FERPLUS_CASES):  # training rows with hand-computed targets
            _, mv, ml, pld = FERPLUS_CASES[i]
            np.testing.assert_allclose(fs.targets["majority"][r], mv, atol=1e-6)
            np.testing.assert_allclose(fs.targets["multilabel"][r], ml, atol=1e-6)
            np.testing.assert_allclose(fs.targets["probability"][r], pld, atol=1e-6)
            np.testing.assert_allclose(fs.targets["crossentropy"][r], pld, atol=1e-6)
            assert fs.labels[r] == (int(np.argmax(mv)) if any(mv) else -1)
    # the valid row with votes 6/4 gets the majority one-hot in every scheme
    r22 = kept.index(22)
    for s in ("majority", "multilabel", "probability", "crossentropy"):
        np.testing.assert_allclose(fs.targets[s][r22], _t(neutral=1))
    assert (fs.labels[fs.splits[:, 0] > 1] >= 0).all()
    assert "dropped by every scheme" in res.summary() and "no image name" in res.summary()


def test_ferplus_row_count_mismatch_is_refused(tmp_path):
    p, _ = _write_fer(tmp_path)
    plus = _write_ferplus(tmp_path, _ferplus_votes()[:29])
    with pytest.raises(ValueError, match="29 data rows.*30"):
        load_fer2013(p, ferplus=plus, options=FAST)


def test_fer2013_wrong_pixel_count_row_is_skipped_and_named(tmp_path):
    p, _ = _write_fer(tmp_path, bad_line=4)
    res = load_fer2013(p, options=FAST)
    assert len(res.faceset) == 29
    (where, why), = res.skipped
    assert where == f"{p}:6" and "expected 2304 (48x48), got 2299" in why
    assert "skipped: 1" in res.summary()


def test_fer2013_missing_file_and_bad_header(tmp_path):
    with pytest.raises(FileNotFoundError, match="fer2013.csv"):
        load_fer2013(tmp_path / "fer2013.csv")
    bad = tmp_path / "x.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match=r"x.csv:1: header"):
        load_fer2013(bad)


# ============================================================================ CK+
def _lm_for(frame_shift):
    """68 landmarks around the astronaut's face in the 220-px fixture frames."""
    rng = np.random.default_rng(3)
    lm = np.array([110.0, 110.0]) + rng.normal(0, 20, (68, 2))
    lm[36:42] = np.array([92.0, 90.0]) + rng.normal(0, 1, (6, 2))
    lm[42:48] = np.array([136.0, 94.0]) + rng.normal(0, 1, (6, 2))
    lm[36:42] -= lm[36:42].mean(0) - [92.0, 90.0]
    lm[42:48] -= lm[42:48].mean(0) - [136.0, 94.0]
    return lm + [frame_shift, 0]


def _write_ckplus(root, face, *, landmarks=True):
    seqs = {  # subject/seq: (emotion code or None, FACS lines)
        ("S010", "001"): (2, ["1.4000000e+01   2.0000000e+00"]),
        ("S005", "001"): (5, ["6.0000000e+00   3.0000000e+00", "1.2000000e+01   0.0000000e+00"]),
        ("S005", "002"): (None, []),
        ("S011", "003"): (7, ["1 2", "2 2", "5 1", "26 0"]),
    }
    for (s, q), (emo, facs) in seqs.items():
        d = root / "cohn-kanade-images" / s / q
        d.mkdir(parents=True)
        for k in range(1, 6):
            frame = np.roll(face, k - 1, axis=1)
            Image.fromarray(frame).save(d / f"{s}_{q}_{k:08d}.png")
            if landmarks and (s, q) == ("S005", "001"):
                ld = root / "Landmarks" / s / q
                ld.mkdir(parents=True, exist_ok=True)
                np.savetxt(ld / f"{s}_{q}_{k:08d}_landmarks.txt", _lm_for(k - 1), fmt="%.7e")
        if emo is not None:
            ed = root / "Emotion" / s / q
            ed.mkdir(parents=True)
            (ed / f"{s}_{q}_00000005_emotion.txt").write_text(f"   {emo:.7e}\n")
            fd = root / "FACS" / s / q
            fd.mkdir(parents=True)
            (fd / f"{s}_{q}_00000005_facs.txt").write_text("\n".join("   " + x for x in facs) + "\n")
    return root


def test_ckplus_eight_class_protocol(tmp_path, face_photo):
    root = _write_ckplus(tmp_path / "ck", face_photo)
    res = load_ckplus(root, options=PreprocessOptions(size=64))
    fs = res.faceset
    ck8 = label_set("ckplus8").classes
    assert fs.class_names == ck8 and len(fs) == 12
    # sequences sorted S005/001, S010/001, S011/003; first frame neutral then 3 emotion frames
    np.testing.assert_array_equal(fs.sequences, ["S005/001"] * 4 + ["S010/001"] * 4 + ["S011/003"] * 4)
    np.testing.assert_array_equal(fs.labels, [0, 5, 5, 5, 0, 2, 2, 2, 0, 7, 7, 7])
    np.testing.assert_array_equal(fs.au_ids, [1, 2, 5, 6, 12, 14, 26])
    aus = dict(zip(fs.au_ids.tolist(), fs.aus.T, strict=True))
    np.testing.assert_array_equal(aus[6], [0, 3, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(aus[12], [0, 1, 1, 1] + [0] * 8)  # intensity 0 = present, uncoded
    np.testing.assert_array_equal(aus[26], [0] * 8 + [0, 1, 1, 1])
    np.testing.assert_array_equal(aus[14], [0] * 4 + [0, 2, 2, 2] + [0] * 4)
    assert not np.isnan(fs.aus).any() and (fs.aus[[0, 4, 8]] == 0).all()
    # subjects sorted S005, S010, S011 -> folds 0, 1, 2
    np.testing.assert_array_equal(fs.folds, [0] * 4 + [1] * 4 + [2] * 4)
    np.testing.assert_array_equal(fs.subjects, ["S005"] * 4 + ["S010"] * 4 + ["S011"] * 4)
    assert res.no_face == 0 and "sequences without an emotion label (not used): 1" in res.summary()
    # landmarks: given for S005/001, fitted on the other frames, all in the 64-px canonical crop
    assert fs.landmarks.shape == (12, 68, 2) and np.isfinite(fs.landmarks).all()
    assert res.landmarks_fitted == 8 and fs.meta["geometry"]["crop"] == "canonical"
    lm = fs.landmarks[1]
    assert (lm[36:48] > 0).all() and (lm[36:48] < 64).all()
    assert abs(lm[36:42, 1].mean() - lm[42:48, 1].mean()) < 1.0


def test_ckplus_six_class(tmp_path, face_photo):
    root = _write_ckplus(tmp_path / "ck", face_photo, landmarks=False)
    fs = load_ckplus(root, classes=6, options=PreprocessOptions(size=48)).faceset
    assert fs.class_names == label_set("ckplus6").classes and len(fs) == 6
    np.testing.assert_array_equal(fs.labels, [3, 3, 3, 5, 5, 5])  # happy, surprise; contempt gone
    assert "contempt" not in fs.class_names and np.isfinite(fs.landmarks).all()  # fitted: no Landmarks/


def test_ckplus_missing_emotion_folder(tmp_path, face_photo):
    root = _write_ckplus(tmp_path / "ck", face_photo, landmarks=False)
    import shutil

    shutil.rmtree(root / "Emotion")
    with pytest.raises(FileNotFoundError, match="Emotion"):
        load_ckplus(root)


def test_ckplus_malformed_emotion_file_is_skipped_and_named(tmp_path, face_photo):
    root = _write_ckplus(tmp_path / "ck", face_photo, landmarks=False)
    bad = root / "Emotion" / "S010" / "001" / "S010_001_00000005_emotion.txt"
    bad.write_text("happy\n")
    res = load_ckplus(root, options=PreprocessOptions(size=48))
    assert len(res.faceset) == 8 and "S010" not in res.faceset.subjects
    assert any(str(bad) in w and "malformed emotion file" in r for w, r in res.skipped)


def test_ckplus_malformed_facs_file_is_skipped_and_named(tmp_path, face_photo):
    root = _write_ckplus(tmp_path / "ck", face_photo, landmarks=False)
    bad = root / "FACS" / "S011" / "003" / "S011_003_00000005_facs.txt"
    bad.write_text("1 2 3\n")
    res = load_ckplus(root, options=PreprocessOptions(size=48))
    assert len(res.faceset) == 8
    assert any(str(bad) in w and ":1:" in r for w, r in res.skipped)


# ============================================================================ TFD
def _write_tfd(path, n=12, **override):
    rng = np.random.default_rng(1)
    folds = np.zeros((n, 5), np.int32)
    for i in range(n):
        folds[i] = [(1 + (i + r) % 3) for r in range(5)]
    folds[0] = 0
    data = {
        "images": rng.integers(0, 256, (n, 48, 48)).astype(np.uint8),
        "labs_ex": np.array([[(i % 7) + 1] for i in range(n)], np.int32),
        "labs_id": np.array([[100 + i // 3] for i in range(n)], np.int32),
        "folds": folds,
    }
    data["labs_ex"][5] = -1
    data.update(override)
    scipy.io.savemat(path, data)
    return data


def test_tfd_labels_and_official_folds(tmp_path):
    p = tmp_path / "TFD_48x48.mat"
    d = _write_tfd(p)
    fs = load_tfd(p, options=FAST).faceset
    keep = [i for i in range(12) if i != 5]
    assert len(fs) == 11 and fs.class_names == label_set("tfd").classes
    np.testing.assert_array_equal(fs.labels, [i % 7 for i in keep])
    np.testing.assert_array_equal(fs.splits, d["folds"][keep])
    np.testing.assert_array_equal(fs.images[2], d["images"][2])
    np.testing.assert_array_equal(fs.subjects, [str(100 + i // 3) for i in keep])
    expect_fold = [int(np.argmax(d["folds"][i] == 3)) if (d["folds"][i] == 3).any() else -1 for i in keep]
    np.testing.assert_array_equal(fs.folds, expect_fold)
    fs_all = load_tfd(p, options=FAST, include_unlabelled=True).faceset
    assert len(fs_all) == 12 and fs_all.labels[5] == -1


def test_tfd_missing_variable(tmp_path):
    p = tmp_path / "t.mat"
    scipy.io.savemat(p, {"images": np.zeros((2, 8, 8), np.uint8)})
    with pytest.raises(ValueError, match=r"missing variable\(s\) \['labs_ex', 'labs_id', 'folds'\]"):
        load_tfd(p)


def test_tfd_bad_fold_codes(tmp_path):
    p = tmp_path / "t.mat"
    _write_tfd(p, folds=np.full((12, 5), 7, np.int32))
    with pytest.raises(ValueError, match="'folds' holds codes"):
        load_tfd(p)


def test_tfd_v73_is_refused_with_advice(tmp_path):
    p = tmp_path / "v73.mat"
    p.write_bytes(b"MATLAB 7.3 MAT-file, Platform: GLNXA64" + b"\0" * 200)
    with pytest.raises(ValueError, match="v7.3"):
        load_tfd(p)


# ============================================================================ class folders
def _write_folder(root, face):
    for c, subj in (("happy", ("s01", "s02")), ("sad", ("s01", "s03"))):
        (root / c).mkdir(parents=True)
        for s in subj:
            Image.fromarray(face).save(root / c / f"{s}_{c}.png")
    (root / "happy" / "notes.txt").write_text("not an image")
    return root


def test_folder_subjects_folds_and_au_csv(tmp_path, face_photo):
    root = _write_folder(tmp_path / "tree", face_photo)
    au = tmp_path / "aus.csv"
    au.write_text("file,AU12,AU4\ns01_happy.png,3,0\nsad/s03_sad.png,0,\nghost.png,1,1\n")
    res = load_folder(root, subject_pattern=r"^(?P<subject>s\d+)_", au_csv=au, n_folds=2,
                      options=PreprocessOptions(size=48))
    fs = res.faceset
    assert fs.class_names == ("happy", "sad")
    np.testing.assert_array_equal(fs.labels, [0, 0, 1, 1])
    np.testing.assert_array_equal(fs.subjects, ["s01", "s02", "s01", "s03"])
    np.testing.assert_array_equal(fs.folds, [0, 1, 0, 0])  # s01 -> 0, s02 -> 1, s03 -> 0
    np.testing.assert_array_equal(fs.au_ids, [4, 12])
    np.testing.assert_array_equal(fs.aus[0], [0, 3])
    assert np.isnan(fs.aus[1]).all()
    assert fs.aus[3, 1] == 0 and np.isnan(fs.aus[3, 0])
    assert any("notes.txt" in w for w, _ in res.skipped)
    assert "AU CSV rows with no imported image: 1" in res.summary()
    assert res.no_face == 0


def test_folder_subject_pattern_mismatch_is_skipped(tmp_path, face_photo):
    root = _write_folder(tmp_path / "tree", face_photo)
    res = load_folder(root, subject_pattern=r"^s0[12]_", options=FAST)
    assert len(res.faceset) == 3
    assert any("s03_sad.png" in w and "does not match subject_pattern" in r for w, r in res.skipped)


def test_folder_unreadable_image_is_skipped_and_named(tmp_path, face_photo):
    root = _write_folder(tmp_path / "tree", face_photo)
    (root / "sad" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    res = load_folder(root, options=FAST)
    assert len(res.faceset) == 4
    assert any(w.endswith("broken.png") and r.startswith("unreadable image") for w, r in res.skipped)


def test_folder_image_without_face_skip_or_centre(tmp_path, face_photo):
    root = _write_folder(tmp_path / "tree", face_photo)
    Image.fromarray(np.full((100, 100), 77, np.uint8)).save(root / "sad" / "s09_wall.png")
    res = load_folder(root, options=PreprocessOptions(size=48, on_no_face="skip"))
    assert len(res.faceset) == 4 and res.no_face == 1
    assert any(w.endswith("s09_wall.png") and "no face" in r for w, r in res.skipped)
    assert "faces not found: 1 (skipped, on_no_face='skip')" in res.summary()
    res = load_folder(root, options=PreprocessOptions(size=48, on_no_face="center"))
    assert len(res.faceset) == 5 and res.centre_cropped == 1
    assert "faces not found: 1 (centre-cropped, on_no_face='center')" in res.summary()


def test_folder_malformed_au_csv(tmp_path, face_photo):
    root = _write_folder(tmp_path / "tree", face_photo)
    au = tmp_path / "aus.csv"
    au.write_text("file,AU12\ns01_happy.png,lots\n")
    with pytest.raises(ValueError, match=r"aus.csv:2: AU value 'lots'"):
        load_folder(root, au_csv=au, options=FAST)


def test_subject_folds_sorted_mod_k():
    np.testing.assert_array_equal(subject_folds(np.array(["b", "a", "c", "a"]), 2), [1, 0, 0, 0])


# ============================================================================ cache and CLI
def test_import_is_cached_and_roundtrips(tmp_path, monkeypatch):
    monkeypatch.setenv("FERCORE_CACHE", str(tmp_path / "cache"))
    p, _ = _write_fer(tmp_path)
    a = import_dataset("fer2013", p, options=FAST)
    b = import_dataset("fer2013", p, options=FAST)
    assert not a.cached and b.cached and a.path == b.path and a.content_hash == b.content_hash
    assert a.path.parent == tmp_path / "cache" / "datasets" and a.path.name.startswith("fer2013-")
    fs = load_faceset(a.path)
    assert len(fs) == 30 and fs.meta["preprocess"] == FAST.to_dict()
    assert options_from_meta(fs.meta) == FAST  # an upload can be processed the same way
    c = import_dataset("fer2013", p, options=PreprocessOptions(size=32, detect=False, align=False))
    assert not c.cached and c.path != a.path


def test_cli_import_prints_summary_and_hits_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FERCORE_CACHE", str(tmp_path / "cache"))
    p, _ = _write_fer(tmp_path)
    plus = _write_ferplus(tmp_path, _ferplus_votes())
    assert cli_main(["import", "fer2013", str(p), "--ferplus", str(plus), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "per class" in out and "round 0: train" in out
    assert cli_main(["import", "fer2013", str(p), "--ferplus", str(plus), "--quiet"]) == 0
    assert "cache hit" in capsys.readouterr().out


def test_cli_import_bad_input_is_one_line_error(tmp_path, capsys):
    assert cli_main(["import", "tfd", str(tmp_path / "none.mat"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "none.mat" in err and "Traceback" not in err


def test_ckplus_missing_facs_file_gives_unknown_aus(tmp_path, face_photo):
    root = _write_ckplus(tmp_path / "ck", face_photo, landmarks=False)
    (root / "FACS" / "S011" / "003" / "S011_003_00000005_facs.txt").unlink()
    res = load_ckplus(root, options=PreprocessOptions(size=48))
    fs = res.faceset
    s011 = fs.subjects == "S011"
    assert np.isnan(fs.aus[s011 & (fs.labels > 0)]).all()  # emotion frames: unknown
    assert (fs.aus[s011 & (fs.labels == 0)] == 0).all()  # neutral frame: absent by protocol
    assert 26 not in fs.au_ids  # only AUs that occur in the FACS files
    assert "0 FACS files, expected 1" in res.summary()


def test_cli_import_folder_with_preprocessing_flags(tmp_path, face_photo, capsys):
    root = _write_folder(tmp_path / "tree", face_photo)
    out = tmp_path / "faces.h5"
    argv = ["import", "folder", str(root), "--out", str(out), "--size", "32", "--no-detect",
            "--no-align", "--no-landmarks", "--subject-pattern", r"^(s\d+)_", "--folds", "2", "--quiet"]
    assert cli_main(argv) == 0
    fs = load_faceset(out)
    assert fs.images.shape == (4, 32, 32) and sorted(set(fs.subjects)) == ["s01", "s02", "s03"]
    assert options_from_meta(fs.meta) == PreprocessOptions(size=32, detect=False, align=False, landmarks=False)
    assert "notes.txt" in capsys.readouterr().out  # the skipped file is listed


def test_a_tree_of_small_face_crops_is_taken_for_precropped_faces(tmp_path, face_photo):
    """CK+48-style folders: 48-px crops are kept as they are (no detection), with 68 points fitted
    on each and their mean geometry recorded; --precropped asks for it on larger crops."""
    from fercore.data.preprocess import preprocess_face

    crop = preprocess_face(face_photo, PreprocessOptions(size=48)).image  # a real 48-px face crop
    root = tmp_path / "ck48"
    for c in ("happy", "sad"):
        (root / c).mkdir(parents=True)
        for s in ("s01", "s02"):
            Image.fromarray(np.roll(crop, 1 if c == "sad" else 0, axis=1)).save(root / c / f"{s}_{c}.png")
    res = load_folder(root, subject_pattern=r"^(?P<subject>s\d+)_")
    fs = res.faceset
    assert fs.images.shape == (4, 48, 48) and res.no_face == 0
    np.testing.assert_array_equal(fs.images[0], crop)  # kept as it is
    assert np.isfinite(fs.landmarks).all() and res.landmarks_fitted == 4
    assert fs.meta["preprocess"]["detect"] is False and fs.meta["geometry"]["crop"] == "box"
    template = np.asarray(fs.meta["geometry"]["template"])
    assert np.abs(template - np.asarray(CANONICAL)).max() < 0.05  # the crops were canonical
    assert "pre-cropped faces (recognised" in res.summary()
    big = load_folder(_write_folder(tmp_path / "tree", face_photo), precropped=True, keep_size=True).faceset
    assert big.images.shape[1:] == face_photo.shape and big.meta["preprocess"]["detect"] is False


def test_a_folder_import_with_landmarks_gets_a_spatial_score(tmp_path, face_photo):
    """Photos imported with the default options carry their 68 points, so the analysis can say
    where a filter fires: the share of its maxima in each AU's region is a number, not NaN."""
    import json

    import torch

    from fercore.analysis.analyze import analyze
    from fercore.recording.record import record
    from fercore.store.faceset_h5 import save_faceset
    from fercore.store.reader import open_run
    from fercore.training.models import ModelSpec, build_model

    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    rows = ["file,AU12,AU25"]
    for c in ("happy", "neutral"):
        (root / c).mkdir(parents=True)
        for s in range(6):
            shifted = np.roll(face_photo, int(rng.integers(-6, 7)), axis=int(rng.integers(0, 2)))
            name = f"s{s:02d}_{c}.png"
            Image.fromarray(shifted).save(root / c / name)
            rows.append(f"{name},{3 if c == 'happy' else 0},{int(rng.integers(0, 2))}")
    (tmp_path / "aus.csv").write_text("\n".join(rows) + "\n")
    fs = load_folder(root, subject_pattern=r"^(?P<subject>s\d+)_", au_csv=tmp_path / "aus.csv", n_folds=3,
                     options=PreprocessOptions(size=32)).faceset
    assert np.isfinite(fs.landmarks).all()
    path = tmp_path / "photos.h5"
    digest = save_faceset(fs, path)
    run = tmp_path / "runs" / "photos-run-00000000"
    (run / "weights").mkdir(parents=True)
    model = build_model(ModelSpec(arch="zero_bias", in_size=32, n_classes=2, width=0.1))
    torch.save(model.state_dict(), run / "weights" / "fold0.pt")
    (run / "config.json").write_text(json.dumps({
        "run_hash": "0" * 64, "name": run.name, "class_names": list(fs.class_names),
        "faceset": {"path": str(path), "content_hash": digest}, "model": model.spec.to_dict(), "train": {},
        "normalize": "standardize"}))
    record(run, k=4)
    analyze(run, null=None)
    ev = open_run(run).evidence("features.conv3")
    assert np.isfinite(ev["spatial_distinct"]).all() and np.isfinite(ev["spatial_raw"]).all()
