import numpy as np
import pytest

from fercore.data import facs


def test_catalogue_has_the_aus_the_project_draws():
    for n in (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 16, 17, 20, 23, 24, 25, 26):
        a = facs.au(n)
        assert a.number == n and a.name and a.muscle and a.region


def test_unknown_au_names_the_known_ones():
    with pytest.raises(ValueError, match="known AUs are 1, 2"):
        facs.au(3)


def test_label_sets_codes():
    ck6 = facs.label_set("ckplus6")
    assert ck6.classes[ck6.index(5)] == "happy"
    with pytest.raises(ValueError, match="code 0"):
        ck6.index(0)  # neutral is dropped in the six-class variant
    assert facs.label_set("tfd").classes[facs.label_set("tfd").index(4)] == "happy"
    assert facs.canonical_emotion("happiness") == "happy"
    assert facs.canonical_emotion("sad") == "sadness"


def test_regions_turn_with_the_face():
    rng = np.random.default_rng(0)
    lm = rng.uniform(20, 40, size=(68, 2))
    lm[36:42] = [18, 30]
    lm[42:48] = [42, 30]
    lm[48:68] = [30, 50]
    pts = np.array([[30.0, 50.0], [30.0, 10.0]])
    assert facs.in_region(lm, 12, pts).tolist() == [True, False]
    # rotate everything by 30 degrees about (30, 30): membership is unchanged
    t = np.deg2rad(30)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    c = np.array([30.0, 30.0])
    assert facs.in_region((lm - c) @ rot.T + c, 12, (pts - c) @ rot.T + c).tolist() == [True, False]
    mask = facs.region_mask(lm, 12, (64, 64))
    assert mask[50, 30] and not mask[10, 30]
