"""Phantom sequences: determinism, AU curves, micro-expressions, labels, folds; the phases field;
sequence grouping; the phantom-seq command."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from fercore.data.faceset import PHASE_CODES, FaceSet
from fercore.data.phantom import render_face
from fercore.data.phantom.identity import random_identity, random_nuisance
from fercore.data.phantom.render import DRAWN_AUS, magnitude
from fercore.data.phantom.sequences import (
    expression_curves,
    generate_sequences,
    micro_curves,
    render_strengths,
    sequence_montage,
    strength,
)
from fercore.data.sequences import apex_rows, natural_key, sequence_index, sequence_labels
from fercore.store.faceset_h5 import load_faceset, save_faceset

NEUTRAL, ONSET, APEX, OFFSET, MICRO = (PHASE_CODES[k] for k in ("neutral", "onset", "apex", "offset", "micro"))


@pytest.fixture(scope="module")
def expr():
    return generate_sequences(3, per_subject=8, n_frames=12, size=32, seed=5)


@pytest.fixture(scope="module")
def micro():
    return generate_sequences(4, per_subject=4, n_frames=14, size=32, seed=2, kind="micro")


def test_deterministic_for_a_seed(expr):
    again = generate_sequences(3, per_subject=8, n_frames=12, size=32, seed=5)
    assert again.content_hash() == expr.content_hash()
    np.testing.assert_array_equal(again.images, expr.images)
    other = generate_sequences(1, per_subject=1, n_frames=12, size=32, seed=6)
    assert not np.array_equal(other.images, expr.images[:12])


def test_layout_labels_and_folds(expr):
    fs = expr
    assert len(fs) == 3 * 8 * 12 and fs.label_set == "ckplus8"
    index = sequence_index(fs.sequences, fs.frames)
    assert len(index) == 24 and (index.lengths == 12).all()
    np.testing.assert_array_equal(fs.frames[index.rows], np.tile(np.arange(12), (24, 1)))
    assert fs.sequences[0] == "PS000/neutral/00" and set(fs.subjects) == {"PS000", "PS001", "PS002"}
    # every subject shows every class once; folds hold whole subjects, so whole sequences
    labels = sequence_labels(index, fs.labels, fs.phases)
    for s in ("PS000", "PS001", "PS002"):
        mine = index.per_sequence(fs.subjects) == s
        assert sorted(labels[mine]) == list(range(8))
    assert (index.per_sequence(fs.folds) == [int(i[2:5]) % 10 for i in index.ids]).all()
    # labels: neutral frames neutral, apex frames the emotion, onset frames unlabelled
    for s in range(len(index)):
        r = index.frames_of(s)
        ph, lab = fs.phases[r], fs.labels[r]
        emo = fs.sequences[r[0]].split("/")[1]
        assert ph[0] == NEUTRAL and (ph[-3:] == APEX).all()
        if emo == "neutral":
            assert (lab == 0).all()
        else:
            assert (lab[ph == NEUTRAL] == 0).all() and (lab[ph == ONSET] == -1).all()
            assert (lab[ph == APEX] == fs.class_names.index(emo)).all()
            assert (fs.aus[r][ph == NEUTRAL] == 0).all()
    assert (fs.phases[apex_rows(index, fs.labels, fs.phases)] == APEX).all()


def test_au_curves_monotone_from_onset_to_apex(expr):
    fs = expr
    index = sequence_index(fs.sequences, fs.frames)
    rising = 0
    for s in range(len(index)):
        k = fs.aus[index.frames_of(s)]  # (T, 18)
        assert (np.diff(k, axis=0) >= -1e-6).all()  # never falls without an offset
        apex = k[-1]
        on = np.flatnonzero(apex > 0)
        assert (k[0] == 0).all() and np.allclose(k[-3:], apex)  # neutral start, apex hold
        rising += len(on)
        assert ((k[:, on] > 0) & (k[:, on] < apex[on])).any(axis=0).all()  # fractional on the way
    assert rising > 20


def test_jittered_onsets_and_offsets():
    rng = np.random.default_rng(0)
    k, ph = expression_curves({1: 3, 2: 3, 26: 4}, rng, n_frames=16)
    starts = [int(np.flatnonzero(k[:, DRAWN_AUS.index(a)] > 0)[0]) for a in (1, 2, 26)]
    ends = [int(np.flatnonzero(np.isclose(k[:, DRAWN_AUS.index(a)], v))[0]) for a, v in ((1, 3), (2, 3), (26, 4))]
    assert len(set(zip(starts, ends, strict=True))) > 1  # each AU has its own timing
    k, ph = expression_curves({12: 3, 6: 2}, np.random.default_rng(3), n_frames=16, offset=True)
    assert list(ph[:1]) == [NEUTRAL] and (ph == APEX).sum() >= 3 and ph[-1] == OFFSET
    col = k[:, DRAWN_AUS.index(12)]
    peak = int(np.argmax(col))
    assert (np.diff(col[: peak + 1]) >= 0).all() and (np.diff(col[peak:]) <= 1e-6).all() and col[-1] < 3
    with pytest.raises(ValueError, match="n_frames"):
        expression_curves({12: 3}, rng, n_frames=5)


def test_micro_expressions_brief_low_and_labelled(micro):
    fs = micro
    index = sequence_index(fs.sequences, fs.frames)
    n_micro = 0
    for s in range(len(index)):
        r = index.frames_of(s)
        ph, lab, k = fs.phases[r], fs.labels[r], fs.aus[r]
        sid = fs.sequences[r[0]]
        if "/micro-" in sid:
            n_micro += 1
            on = np.flatnonzero(ph == MICRO)
            assert 2 <= len(on) <= 5 and (np.diff(on) == 1).all()  # brief, contiguous
            assert on[0] >= 2 and on[-1] <= len(r) - 3  # embedded in neutral frames
            assert (k[ph != MICRO] == 0).all() and (k[ph == MICRO].max(axis=0) > 0).any()
            assert 1.0 <= k.max() <= 2.0  # low intensity (A-B)
            assert 1 <= (k.max(axis=0) > 0).sum() <= 4  # partial: a few AUs (+25 with 26)
            emo = sid.split("/")[1][len("micro-"):]
            assert (lab[ph == MICRO] == fs.class_names.index(emo)).all() and (lab[ph != MICRO] == 0).all()
        else:
            assert sid.split("/")[1] == "none" and (ph == NEUTRAL).all() and (k == 0).all() and (lab == 0).all()
    assert n_micro == len(index) // 2
    k, ph = micro_curves({12: 2}, np.random.default_rng(0), n_frames=10, frames=(3, 3))
    assert (ph == MICRO).sum() == 3 and k.max() == pytest.approx(2.0)


def test_strength_continuous_and_renderer_matches_still_one():
    assert strength(0) == 0 and strength(0.5) == pytest.approx(0.25) and strength(1) == magnitude(1)
    assert strength(3.5) == magnitude(3.5)
    idn = random_identity(np.random.default_rng(11))
    nz = random_nuisance(np.random.default_rng(4))
    for aus in ({}, {12: 3, 6: 2}, {1: 1, 2: 5, 26: 4}):
        mags = {a: (magnitude(v), magnitude(v)) for a, v in aus.items()}
        a, la = render_strengths(idn, mags, size=48, nuisance=nz)
        b, lb = render_face(idn, aus, size=48, nuisance=nz)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)


def test_phases_field_validated_saved_and_hashed(tmp_path, expr):
    fs = expr
    path = tmp_path / "s.h5"
    save_faceset(fs, path)
    back = load_faceset(path)
    np.testing.assert_array_equal(back.phases, fs.phases)
    assert back.phases.dtype == np.int8 and back.content_hash() == fs.content_hash()
    sub = fs.subset(np.arange(10))
    assert len(sub.phases) == 10
    plain = dict(images=np.zeros((2, 4, 4), np.uint8), labels=[0, 0], class_names=("a",), aus=np.zeros((2, 0)),
                 au_ids=[], subjects=["s", "s"], folds=[0, 0])
    assert FaceSet(**plain).content_hash() != FaceSet(**plain, phases=[0, 2]).content_hash()
    with pytest.raises(ValueError, match="FaceSet.phases"):
        FaceSet(**plain, phases=[0, 7])
    with pytest.raises(ValueError, match="FaceSet.phases"):
        FaceSet(**plain, phases=[0])


def test_sequence_index_orders_frames_and_refuses_duplicates():
    idx = sequence_index(np.array(["b", "a", "b", "a", "b"]), np.array([2, 1, 0, 0, 1]))
    assert list(idx.ids) == ["a", "b"]
    np.testing.assert_array_equal(idx.rows, [[3, 1, -1], [2, 4, 0]])
    with pytest.raises(ValueError, match="frame index 1"):
        sequence_index(np.array(["a", "a"]), np.array([1, 1]))
    with pytest.raises(ValueError, match="sequences"):
        sequence_index(None)
    assert sorted(["f10", "f2", "f1"], key=natural_key) == ["f1", "f2", "f10"]


def test_montage_and_cli(tmp_path, capsys):
    from fercore.cli import phantom_seq

    p = argparse.ArgumentParser()
    phantom_seq.add_arguments(p)
    out, png = tmp_path / "m.h5", tmp_path / "m.png"
    args = p.parse_args(["--out", str(out), "--subjects", "2", "--per-subject", "2", "--frames", "10", "--size", "24",
                         "--micro", "--montage", str(png), "--rows", "3", "--quiet"])
    assert phantom_seq.run(args) == 0
    fs = load_faceset(out)
    assert len(fs) == 40 and fs.meta["options"]["kind"] == "micro" and png.stat().st_size > 0
    assert "4 sequences of 10 frames" in capsys.readouterr().out
    grid = sequence_montage(fs, max_rows=3)
    assert grid.dtype == np.uint8 and grid.shape[0] == 3 * (24 + 3)
    with pytest.raises(ValueError, match="--out"):
        phantom_seq.run(p.parse_args(["--out", str(tmp_path / "x.txt"), "--quiet"]))
    with pytest.raises(ValueError, match="offset"):
        generate_sequences(1, kind="micro", offset=True)
