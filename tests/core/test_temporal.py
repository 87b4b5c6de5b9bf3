"""Filters in time (fercore.analysis.temporal): curves in frame order, planted filters found."""

from __future__ import annotations

import numpy as np
import pytest

from fercore.analysis.temporal import filter_au_correlation, sequence_correlations, sequence_curves


def _ramp(t_n, start, stop, peak):
    t = np.arange(t_n, dtype=np.float64)
    x = np.clip((t - start) / (stop - start), 0, 1)
    return peak * x * x * (3 - 2 * x)


def _planted(n_seq=30, t_n=12, seed=0):
    """Sequences whose rows are shuffled; AU 12 shown in even sequences, AU 4 in odd ones; filter 0
    = AU12's curve + noise, filter 1 = AU4's curve + noise, filter 2 = pure noise, filter 3 = any
    expression (both curves) with less noise: it follows every AU but is specific to none."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_seq):
        a12 = _ramp(t_n, rng.uniform(1, 3), rng.uniform(6, 9), 3) if s % 2 == 0 else np.zeros(t_n)
        a4 = _ramp(t_n, rng.uniform(1, 3), rng.uniform(6, 9), 2) if s % 2 == 1 else np.zeros(t_n)
        for t in range(t_n):
            rows.append((f"S{s:02d}", t, a12[t], a4[t]))
    perm = rng.permutation(len(rows))
    seq = np.array([rows[i][0] for i in perm])
    frames = np.array([rows[i][1] for i in perm])
    aus = np.array([[rows[i][2], rows[i][3]] for i in perm], np.float32)
    noise = rng.normal(0, 0.3, (len(rows), 4))
    act = np.stack([aus[:, 0] + noise[:, 0], 2 * aus[:, 1] + noise[:, 1], noise[:, 2],
                    aus.sum(axis=1) + 0.3 * noise[:, 3]], axis=1)
    return act.astype(np.float16), seq, frames, aus, np.array([12, 4])


def test_curves_are_in_frame_order():
    act, seq, frames, aus, ids = _planted()
    c = sequence_curves(act, seq, frames, aus, ids)
    assert c.activation.shape == (30, 12, 4) and c.intensity.shape == (30, 12, 2)
    assert list(c.ids[:2]) == ["S00", "S01"]
    np.testing.assert_array_equal(c.frames, np.tile(np.arange(12), (30, 1)))
    assert (np.diff(c.intensity[0, :, 0]) >= 0).all()  # AU12 of S00 ramps up in frame order
    np.testing.assert_array_equal(seq[c.rows], np.repeat(c.ids[:, None], 12, axis=1))


def test_planted_filter_recovered_and_noise_filter_not():
    c = sequence_curves(*_planted())
    res = filter_au_correlation(c)
    np.testing.assert_array_equal(res.au_ids, [12, 4])
    np.testing.assert_array_equal(res.n_sequences, [15, 15])
    assert (res.r_median[[0, 1], [0, 1]] > 0.9).all()
    assert abs(res.r_median[2]).max() < 0.4  # the noise filter
    assert (res.r_median[3] > 0.9).all()  # the generic filter follows both ...
    assert (res.r_absent[3] > 0.9).all() and (np.abs(res.r_absent[[0, 1], [0, 1]]) < 0.3).all()  # ... everywhere
    np.testing.assert_array_equal(res.specific_filter, [0, 1])
    np.testing.assert_array_equal(res.n_absent, [15, 15])
    assert res.r_median.shape == (4, 2) and res.r_median.dtype == np.float32
    r = sequence_correlations(c)
    assert r.shape == (30, 4, 2)
    assert np.isnan(r[1::2, :, 0]).all() and np.isnan(r[0::2, :, 1]).all()  # AU not shown: NaN


def test_apex_coded_sequences_interpolate_or_leave_out():
    """CK+-style codes: 0 on the first frame, the apex code on the last 3, NaN between."""
    t_n, n_seq = 10, 8
    rng = np.random.default_rng(1)
    seq, frames, aus, act = [], [], [], []
    for s in range(n_seq):
        truth = _ramp(t_n, 0, t_n - 3, 3)
        coded = np.full(t_n, np.nan)
        coded[0], coded[-3:] = 0.0, 3.0
        for t in range(t_n):
            seq.append(f"S{s}")
            frames.append(t)
            aus.append([coded[t]])
            act.append([truth[t] + rng.normal(0, 0.2), rng.normal()])
    c = sequence_curves(np.array(act), np.array(seq), np.array(frames), np.array(aus), [12])
    lin = filter_au_correlation(c, interpolate="linear")
    none = filter_au_correlation(c, interpolate="none")
    assert lin.best_filter[0] == 0 and none.best_filter[0] == 0
    assert lin.best_r[0] > 0.9 and none.best_r[0] > 0.9
    assert lin.n_sequences[0] == none.n_sequences[0] == n_seq
    with pytest.raises(ValueError, match="interpolate"):
        filter_au_correlation(c, interpolate="cubic")


def test_au_no_sequence_shows_gives_minus_one():
    act, seq, frames, aus, ids = _planted()
    aus = np.concatenate([aus, np.zeros((len(aus), 1), np.float32)], axis=1)
    res = filter_au_correlation(sequence_curves(act, seq, frames, aus, [12, 4, 9]))
    assert res.best_filter[2] == -1 and np.isnan(res.best_r[2]) and res.n_sequences[2] == 0


def test_bad_inputs_name_the_argument():
    act, seq, frames, aus, ids = _planted()
    with pytest.raises(ValueError, match="aus"):
        sequence_curves(act, seq, frames, aus[:-1], ids)
    with pytest.raises(ValueError, match="au_ids"):
        sequence_curves(act, seq, frames, aus, [12])
    with pytest.raises(ValueError, match="sequences"):
        sequence_curves(act, None, frames, aus, ids)
    with pytest.raises(ValueError, match="min_frames"):
        sequence_correlations(sequence_curves(act, seq, frames, aus, ids), min_frames=1)


def test_analyze_stores_filters_in_time_for_a_faceset_of_sequences(tmp_path):
    """A recorded run whose FaceSet keeps the frames of its sequences gets the temporal figures
    stored beside the other statistics; one without frames gets none."""
    from test_record import make_faceset, make_run

    from fercore.analysis.analyze import analyze
    from fercore.recording.record import record
    from fercore.store.reader import open_run

    fs = make_faceset(n=36)
    fs.frames = np.array([list(fs.sequences[:i]).count(s) for i, s in enumerate(fs.sequences)])
    run = make_run(tmp_path, fs)
    record(run, k=4, batch_size=16)
    analyze(run, null=None)
    ev = open_run(run).evidence("features.conv2")
    t = ev["temporal"]
    assert t["r_median"].shape == ev["share_raw"].shape and t["best_filter"].shape == (3,)
    plain = make_run(tmp_path / "plain", make_faceset(n=36))
    record(plain, k=4, batch_size=16)
    analyze(plain, null=None)
    assert open_run(plain).evidence("features.conv2")["temporal"] == {}


def test_sequence_frames_reads_one_sequence_in_frame_order_with_predictions(tmp_path):
    import pytest
    from test_record import make_faceset, make_run

    from fercore.recording.face import sequence_frames
    from fercore.recording.record import record
    from fercore.store.reader import open_run

    fs = make_faceset(n=36)
    fs.frames = np.array([list(fs.sequences[:i]).count(s) for i, s in enumerate(fs.sequences)])
    run = make_run(tmp_path, fs)
    record(run, k=4, batch_size=16)
    r = open_run(run)
    seq = sequence_frames(r, "q3")
    rows = np.flatnonzero(fs.sequences == "q3")
    np.testing.assert_array_equal(seq.rows, rows[np.argsort(fs.frames[rows])])
    assert seq.images.shape == (len(rows), 16, 16) and seq.probs.shape == (len(rows), 3)
    np.testing.assert_allclose(seq.probs.sum(1), 1, atol=1e-5)
    assert seq.activation["features.conv1"].shape[0] == len(rows)
    with pytest.raises(ValueError, match="not in"):
        sequence_frames(r, "nope")
