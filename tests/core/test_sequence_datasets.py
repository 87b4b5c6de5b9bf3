"""Real sequences: CK+ with every frame, folder imports with a sequence group (tiny fixture trees)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fercore.data.datasets import load_ckplus, load_folder
from fercore.data.faceset import PHASE_CODES
from fercore.data.preprocess import PreprocessOptions
from fercore.data.sequences import sequence_index, sequence_labels
from fercore.training.sequence import sequence_rounds

FAST = PreprocessOptions(size=32, detect=False, align=False, normalize="none")
NEUTRAL, ONSET, APEX = PHASE_CODES["neutral"], PHASE_CODES["onset"], PHASE_CODES["apex"]


def _frame(k: int, size: int = 40) -> np.ndarray:
    """A grey image whose mean brightness encodes the frame number (so order can be checked)."""
    rng = np.random.default_rng(k)
    return np.clip(20 * k + rng.integers(0, 8, (size, size)), 0, 255).astype(np.uint8)


def _write_ckplus(root, seqs):
    """seqs: {(subject, seq): (n_frames, emotion code or None, FACS lines)}."""
    for (s, q), (n, emo, facs) in seqs.items():
        d = root / "cohn-kanade-images" / s / q
        d.mkdir(parents=True)
        for k in range(1, n + 1):
            Image.fromarray(_frame(k)).save(d / f"{s}_{q}_{k:08d}.png")
        if emo is not None:
            (root / "Emotion" / s / q).mkdir(parents=True)
            (root / "Emotion" / s / q / f"{s}_{q}_{n:08d}_emotion.txt").write_text(f"   {emo:.7e}\n")
            (root / "FACS" / s / q).mkdir(parents=True)
            (root / "FACS" / s / q / f"{s}_{q}_{n:08d}_facs.txt").write_text("\n".join("   " + x for x in facs) + "\n")
    return root


SEQS = {
    ("S010", "001"): (6, 2, ["14 2"]),
    ("S005", "001"): (5, 5, ["6 3", "12 0"]),
    ("S005", "002"): (7, None, []),
    ("S011", "003"): (8, 7, ["1 2", "2 2", "26 1"]),
}


@pytest.fixture()
def ck(tmp_path):
    return _write_ckplus(tmp_path / "ck", SEQS)


def test_ckplus_all_frames_order_labels_and_phases(ck):
    fs = load_ckplus(ck, frames="all", options=FAST).faceset
    assert len(fs) == 5 + 6 + 8  # the unlabelled S005/002 is not used
    index = sequence_index(fs.sequences, fs.frames)
    assert list(index.ids) == ["S005/001", "S010/001", "S011/003"]
    np.testing.assert_array_equal(index.lengths, [5, 6, 8])
    for s, code in enumerate([5, 2, 7]):  # happy, contempt, surprise in ckplus8 order = CK+ codes
        r = index.frames_of(s)
        np.testing.assert_array_equal(fs.frames[r], np.arange(len(r)))
        assert (np.diff(fs.images[r].mean(axis=(1, 2))) > 0).all()  # frame order from the files
        ph, lab = fs.phases[r], fs.labels[r]
        np.testing.assert_array_equal(ph, [NEUTRAL] + [ONSET] * (len(r) - 4) + [APEX] * 3)
        np.testing.assert_array_equal(lab, [0] + [-1] * (len(r) - 4) + [code] * 3)  # labels only on the apex
        assert (fs.aus[r[0]] == 0).all() and np.isnan(fs.aus[r[1:-3]]).all()
        assert not np.isnan(fs.aus[r[-3:]]).any()
    aus = dict(zip(fs.au_ids.tolist(), fs.aus.T, strict=True))
    np.testing.assert_array_equal(aus[6][[0, 2, 3, 4]], [0, 3, 3, 3])
    assert sequence_labels(index, fs.labels, fs.phases).tolist() == [5, 2, 7]
    assert fs.meta["options"]["frames"] == "all" and "every frame" in fs.meta["protocol"]


def test_ckplus_all_frames_labelled_rows_are_the_khorrami_images(ck):
    k = load_ckplus(ck, options=FAST).faceset
    assert k.frames is None and k.phases is None and "frames" not in k.meta["options"]
    a = load_ckplus(ck, frames="all", options=FAST).faceset
    lab = a.subset(a.labels >= 0)
    np.testing.assert_array_equal(lab.images, k.images)
    np.testing.assert_array_equal(lab.labels, k.labels)
    np.testing.assert_array_equal(lab.aus, k.aus)
    np.testing.assert_array_equal(lab.folds, k.folds)
    assert load_ckplus(ck, frames="khorrami", options=FAST).faceset.content_hash() == k.content_hash()
    with pytest.raises(ValueError, match="frames"):
        load_ckplus(ck, frames="some")


def test_ckplus_all_frames_six_class_and_whole_sequences_per_fold(ck):
    fs = load_ckplus(ck, classes=6, frames="all", options=FAST, n_folds=3).faceset
    index = sequence_index(fs.sequences, fs.frames)
    assert list(index.ids) == ["S005/001", "S011/003"]  # contempt dropped
    assert fs.labels[index.rows[:, 0]].tolist() == [-1, -1]  # no neutral class: the first frame is unlabelled
    assert (fs.phases[index.rows[:, 0]] == NEUTRAL).all()
    folds = index.per_sequence(fs.folds)  # raises if a sequence spanned two folds
    subj = index.per_sequence(fs.subjects)
    assert {s: f for s, f in zip(subj, folds, strict=True)} == {"S005": 0, "S011": 1}  # S010 (contempt only) is gone
    fs = load_ckplus(ck, frames="all", options=FAST, n_folds=3).faceset
    index = sequence_index(fs.sequences, fs.frames)
    subj = index.per_sequence(fs.subjects)
    rounds = sequence_rounds(fs, index, sequence_labels(index, fs.labels, fs.phases))
    assert [r.test.tolist() for r in rounds] == [[0], [1], [2]]
    for r in rounds:  # round t: test fold t, validation (t + 1) mod 3, training the rest; no subject shared
        parts = [set(subj[r.train]), set(subj[r.valid]), set(subj[r.test])]
        assert all(not (a & b) for i, a in enumerate(parts) for b in parts[i + 1:])


def _write_folder(root, names: dict[str, list[str]]):
    for cls, files in names.items():
        (root / cls).mkdir(parents=True)
        for f in files:
            Image.fromarray(_frame(int(f.split("_")[-1].split(".")[0].lstrip("f") or 0) % 12)).save(root / cls / f)
    return root


def test_folder_sequence_and_frame_groups(tmp_path):
    root = _write_folder(tmp_path / "t", {
        "happy": ["S01_001_00000010.png", "S01_001_00000002.png", "S01_001_00000005.png", "S02_001_00000001.png",
                  "S02_001_00000003.png"],
        "sad": ["S01_002_00000004.png", "S01_002_00000001.png"],
    })
    pat = r"^(?P<subject>S\d+)_(?P<sequence>\d+)_(?P<frame>\d+)"
    res = load_folder(root, subject_pattern=pat, options=FAST, n_folds=2)
    fs = res.faceset
    index = sequence_index(fs.sequences, fs.frames)
    assert list(index.ids) == ["S01/001", "S01/002", "S02/001"]
    np.testing.assert_array_equal(index.lengths, [3, 2, 2])
    # S01/001: frame numbers 2, 5, 10 -> positions 0, 1, 2
    r = index.frames_of(0)
    np.testing.assert_array_equal(fs.frames[r], [0, 1, 2])
    assert (np.diff(fs.images[r].mean(axis=(1, 2))) > 0).all()
    assert fs.labels[index.frames_of(1)].tolist() == [1, 1]
    assert index.per_sequence(fs.folds).tolist() == [0, 0, 1]  # whole subjects, so whole sequences
    assert "'sequence' group" in fs.meta["protocol"] and fs.phases is None


def test_folder_sequences_natural_order_and_bad_frames(tmp_path):
    root = _write_folder(tmp_path / "t", {"c": ["a_1_f10.png", "a_1_f2.png", "a_1_f1.png", "b_1_f3.png"]})
    fs = load_folder(root, subject_pattern=r"^(?P<subject>[ab])_(?P<sequence>\d)_", options=FAST).faceset
    index = sequence_index(fs.sequences, fs.frames)
    r = index.frames_of(0)  # a/1: f1, f2, f10 in natural order
    assert [fs.images[i].mean() < fs.images[j].mean() for i, j in zip(r[:-1], r[1:], strict=True)] == [True, True]
    plain = load_folder(root, subject_pattern=r"^(?P<subject>[ab])_", options=FAST).faceset
    assert plain.sequences is None and plain.frames is None  # no sequence group: as before
    with pytest.raises(ValueError, match="'frame' group needs a 'sequence' group"):
        load_folder(root, subject_pattern=r"^(?P<subject>[ab])_\d_f(?P<frame>\d+)", options=FAST)
    (root / "c" / "a_1_f02.png").write_bytes((root / "c" / "a_1_f2.png").read_bytes())
    res = load_folder(root, subject_pattern=r"^(?P<subject>[ab])_(?P<sequence>\d)_f(?P<frame>\d+)", options=FAST)
    assert len(res.faceset) == 4 and any("already has this frame" in why for _, why in res.skipped)
