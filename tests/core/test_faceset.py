import h5py
import numpy as np
import pytest

from fercore.data.faceset import FaceSet
from fercore.store import FaceSetFileError, load_faceset, save_faceset


def _tiny(n=6):
    rng = np.random.default_rng(0)
    return FaceSet(
        images=rng.integers(0, 255, (n, 16, 16), dtype=np.uint8),
        labels=np.arange(n) % 3,
        class_names=("a", "b", "c"),
        aus=np.where(np.arange(n * 2).reshape(n, 2) % 4 == 0, np.nan, 1.0),
        au_ids=[12, 6],
        subjects=[f"S{i // 2}" for i in range(n)],
        folds=np.arange(n) // 2,
        sequences=[f"S{i // 2}/1" for i in range(n)],
        landmarks=rng.normal(size=(n, 68, 2)),
        label_dist=np.full((n, 3), 1 / 3),
        targets={"majority": np.eye(3)[np.arange(n) % 3]},
        meta={"source": "test", "preprocess": {"normalize": "none"}},
    )


def test_round_trip_keeps_every_field(tmp_path):
    fs = _tiny()
    digest = save_faceset(fs, tmp_path / "a.h5")
    back = load_faceset(tmp_path / "a.h5")
    assert back.content_hash() == digest == fs.content_hash()
    np.testing.assert_array_equal(back.images, fs.images)
    np.testing.assert_array_equal(np.isnan(back.aus), np.isnan(fs.aus))
    assert back.subjects.tolist() == fs.subjects.tolist()
    assert back.sequences.tolist() == fs.sequences.tolist()
    assert back.class_names == ("a", "b", "c") and back.meta["source"] == "test"
    np.testing.assert_array_equal(back.targets["majority"], fs.targets["majority"])


def test_wrong_row_count_names_the_field():
    with pytest.raises(ValueError, match="FaceSet.subjects: expected 6 rows"):
        FaceSet(images=np.zeros((6, 8, 8), np.uint8), labels=np.zeros(6), class_names=("a",),
                aus=np.zeros((6, 0)), au_ids=[], subjects=["x"] * 5, folds=np.zeros(6))


def test_missing_and_foreign_files_are_reported(tmp_path):
    with pytest.raises(FaceSetFileError, match="no such FaceSet file"):
        load_faceset(tmp_path / "nope.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(FaceSetFileError, match="not a readable HDF5"):
        load_faceset(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(FaceSetFileError, match="not a fercore FaceSet"):
        load_faceset(tmp_path / "other.h5")


def test_subset_keeps_alignment():
    fs = _tiny()
    sub = fs.subset(fs.folds == 1)
    assert len(sub) == 2 and set(sub.subjects) == {"S1"}
    assert sub.targets["majority"].shape == (2, 3)


def test_an_edited_faceset_saved_again_carries_its_new_hash(tmp_path):
    """load -> change -> save must not keep the old content hash anywhere (records made from the
    changed file would carry it and be refused)."""
    from fercore.store.faceset_h5 import load_faceset, read_faceset_info, save_faceset

    fs = _tiny()
    path = tmp_path / "a.h5"
    first = save_faceset(fs, path)
    loaded = load_faceset(path)
    loaded.labels = (loaded.labels + 1) % len(loaded.class_names)
    second = save_faceset(loaded, path)
    assert second != first
    assert read_faceset_info(path)["content_hash"] == second == loaded.content_hash()
    assert "content_hash" not in read_faceset_info(path)["meta"]
    assert load_faceset(path).content_hash() == second


def test_frames_round_trip_and_leave_older_hashes_alone(tmp_path):
    from fercore.store.faceset_h5 import load_faceset, save_faceset

    fs = _tiny()
    before = fs.content_hash()
    fs.frames = None
    assert fs.content_hash() == before
    with_frames = FaceSet(**{**{f: getattr(fs, f) for f in fs.__dataclass_fields__}, "frames": np.arange(len(fs))})
    assert with_frames.content_hash() != before
    save_faceset(with_frames, tmp_path / "f.h5")
    np.testing.assert_array_equal(load_faceset(tmp_path / "f.h5").frames, np.arange(len(fs)))
    with pytest.raises(ValueError, match="frames"):
        FaceSet(**{**{f: getattr(fs, f) for f in fs.__dataclass_fields__}, "frames": np.arange(len(fs) + 1)})
