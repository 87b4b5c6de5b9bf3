import numpy as np
import pytest

from fercore.recording.streaming import RunningDistinctTopK, RunningTopK


def _brute_topk(x, k):
    order = np.argsort(-x, axis=0, kind="stable")[:k]  # (k, F)
    return np.take_along_axis(x, order, 0).T, order.T


def _brute_distinct(x, groups, k):
    vals, idx = [], []
    for f in range(x.shape[1]):
        best = {}
        for i in np.argsort(-x[:, f], kind="stable"):
            best.setdefault(groups[i], i)
        chosen = sorted(best.values(), key=lambda i: (-x[i, f], i))[:k]
        idx.append(chosen + [-1] * (k - len(chosen)))
        vals.append([x[i, f] for i in chosen] + [-np.inf] * (k - len(chosen)))
    return np.array(vals), np.array(idx)


@pytest.mark.parametrize("batch", [1, 7, 50])
def test_topk_equals_brute_force(batch):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(203, 5)).astype(np.float32)
    x[10:20, 0] = 3.0  # ties: the earlier sample wins
    st = RunningTopK(k=12)
    for s in range(0, len(x), batch):
        st.add(x[s:s + batch], payload=np.arange(s, min(s + batch, len(x)))[:, None].repeat(5, 1) * 10)
    vals, idx = st.result()
    bv, bi = _brute_topk(x, 12)
    np.testing.assert_array_equal(idx, bi)
    np.testing.assert_array_equal(vals, bv)
    np.testing.assert_array_equal(st.payload, bi * 10)  # payload follows its sample


def test_topk_save_restore_midway():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 4))
    st = RunningTopK(k=9)
    for s in range(0, 140, 20):
        st.add(x[s:s + 20])
    state = st.state_dict()
    restored = RunningTopK(k=1)
    restored.load_state_dict({k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in state.items()})
    for s in range(140, 300, 20):
        restored.add(x[s:s + 20])
    bv, bi = _brute_topk(x, 9)
    np.testing.assert_array_equal(restored.result()[1], bi)
    np.testing.assert_allclose(restored.result()[0], bv)


def test_topk_fewer_samples_than_k():
    st = RunningTopK(k=10)
    st.add(np.array([[1.0], [3.0], [2.0]]))
    vals, idx = st.result()
    assert idx.tolist() == [[1, 2, 0]]


@pytest.mark.parametrize("batch", [3, 16, 64])
def test_distinct_topk_equals_brute_force_and_never_repeats_a_group(batch):
    rng = np.random.default_rng(2)
    n, nf = 180, 6
    x = rng.normal(size=(n, nf)).astype(np.float32)
    groups = rng.integers(0, 13, size=n)
    st = RunningDistinctTopK(k=8)
    for s in range(0, n, batch):
        st.add(x[s:s + batch], groups[s:s + batch])
    vals, idx = st.result()
    bv, bi = _brute_distinct(x, groups, 8)
    np.testing.assert_array_equal(idx, bi)
    np.testing.assert_array_equal(vals, bv)
    for f in range(nf):
        g = groups[idx[f][idx[f] >= 0]]
        assert len(set(g.tolist())) == len(g)


def test_distinct_topk_pads_when_few_groups_and_restores():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 3))
    groups = np.repeat([0, 1, 2], 20)
    st = RunningDistinctTopK(k=5)
    st.add(x[:30], groups[:30])
    other = RunningDistinctTopK(k=5)
    other.load_state_dict(st.state_dict())
    other.add(x[30:], groups[30:])
    vals, idx = other.result()
    assert (idx[:, 3:] == -1).all() and np.isneginf(vals[:, 3:]).all()
    bv, bi = _brute_distinct(x, groups, 5)
    np.testing.assert_array_equal(idx, bi)


def test_bad_batch_shape_is_named():
    with pytest.raises(ValueError, match=r"\(B, F\)"):
        RunningTopK(k=3).add(np.zeros(5))
    with pytest.raises(ValueError, match="groups"):
        RunningDistinctTopK(k=3).add(np.zeros((5, 2)), np.zeros(4))


@pytest.mark.parametrize("order", ["descending", "ascending", "ties"])
def test_only_entries_above_the_threshold_are_read(order):
    """After the lists fill, a batch is merged only where it beats the K-th kept score; the
    payload elsewhere may be left unfilled (-1) and never shows up."""
    rng = np.random.default_rng(4)
    n, nf, k = 120, 4, 6
    x = {"descending": -np.arange(n, dtype=np.float32)[:, None].repeat(nf, 1),
         "ascending": np.arange(n, dtype=np.float32)[:, None].repeat(nf, 1),
         "ties": rng.integers(0, 4, (n, nf)).astype(np.float32)}[order]
    groups = rng.integers(0, 15, n)
    raw, dis = RunningTopK(k), RunningDistinctTopK(k)
    for s in range(0, n, 10):
        b = x[s:s + 10]
        thr = dis.threshold()
        assert thr is None or (raw.threshold() is None or (thr <= raw.threshold()).all())
        pay = np.where(b > (-np.inf if thr is None else thr[None, :]), np.arange(s, s + len(b))[:, None], -1)
        raw.add(b, payload=pay)
        dis.add(b, groups[s:s + 10], payload=pay)
    bv, bi = _brute_topk(x, k)
    np.testing.assert_array_equal(raw.result()[1], bi)
    np.testing.assert_array_equal(raw.payload, bi)
    dv, di = _brute_distinct(x, groups, k)
    np.testing.assert_array_equal(dis.result()[1], di)
    np.testing.assert_array_equal(dis.payload[di >= 0], di[di >= 0])


def test_threshold_is_minus_inf_until_full():
    st = RunningTopK(k=3)
    assert st.threshold() is None
    st.add(np.array([[1.0, 5.0], [2.0, 4.0]]))
    assert np.isneginf(st.threshold()).all()
    st.add(np.array([[3.0, 0.0]]))
    np.testing.assert_array_equal(st.threshold(), [1.0, 0.0])
