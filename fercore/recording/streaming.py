"""Streaming statistics: one small class per statistic, fed batch by batch.

Every class has ``add(batch, ...)`` (axis 0 = samples), ``result()``, ``state_dict()`` and
``load_state_dict()``; buffers are allocated on the first ``add`` so their shape and dtype come
from the data, and sample indices are *global* (counted over every ``add`` since the start), so
a statistic saved part-way and restored continues exactly. The statistics know nothing of models;
:mod:`fercore.record` runs the loop that feeds them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RunningDistinctTopK", "RunningTopK"]


def _check_batch(batch: np.ndarray, name: str) -> np.ndarray:
    batch = np.asarray(batch)
    if batch.ndim != 2:
        raise ValueError(f"{name}.add: expected a (B, F) array of scores, got shape {batch.shape}")
    return batch


class RunningTopK:
    """The K largest scores per column, with their global sample indices and a payload.

    Parameters
    ----------
    k : int
        How many to keep per column (fewer while fewer samples were seen).
    start : int
        Global index of the first sample added (a process's share of the data starts there).

    Notes
    -----
    Ties are broken by the earlier sample (a stable sort), so the result equals a brute-force
    stable descending sort of the whole data.
    """

    def __init__(self, k: int = 16, *, start: int = 0):
        if int(k) < 1:
            raise ValueError(f"RunningTopK: k must be at least 1, got {k}")
        if int(start) < 0:
            raise ValueError(f"RunningTopK: start must be a sample index >= 0, got {start}")
        self.k = int(k)
        self.count = int(start)
        self.values: np.ndarray | None = None  # (F, k') scores, best first
        self.index: np.ndarray | None = None  # (F, k') int64 global sample index
        self.payload: np.ndarray | None = None  # (F, k') int64 (e.g. flat argmax position)

    def add(self, batch: np.ndarray, *, payload: np.ndarray | None = None) -> None:
        """Add a batch.

        Parameters
        ----------
        batch : (B, F) float
            One score per sample and column.
        payload : (B, F) int, optional
            Carried along with each kept score (the argmax position, in recording). Only the
            entries whose score beats :meth:`threshold` are read, so a caller may leave the
            others unfilled.
        """
        batch = _check_batch(batch, type(self).__name__)
        b, nf = batch.shape
        pay = np.zeros((b, nf), np.int64) if payload is None else np.asarray(payload)
        rows, cols, vals = self._candidates(batch)
        if rows is not None and rows.size:
            idx = np.broadcast_to((self.count + cols)[None, :], vals.shape)
            v, i, p = self._merged(self.values[rows], self.index[rows], self.payload[rows],
                                   vals, idx, pay[np.ix_(cols, rows)].T.astype(np.int64))
            self.values[rows], self.index[rows], self.payload[rows] = v, i, p
        elif rows is None:
            idx = np.broadcast_to(np.arange(self.count, self.count + b, dtype=np.int64)[None, :], (nf, b))
            self.values, self.index, self.payload = self._merged(
                self.values, self.index, self.payload, batch.T, idx, pay.T.astype(np.int64))
        self.count += b

    def threshold(self) -> np.ndarray | None:
        """(F,) the score a new sample must exceed to enter each column's list (-inf while the
        list is not full); None before the first batch. Ties go to the earlier sample, so a
        score equal to the threshold does not enter."""
        if self.values is None:
            return None
        if self.values.shape[1] < self.k:
            return np.full(self.values.shape[0], -np.inf, self.values.dtype)
        return self.values[:, -1].copy()

    def _candidates(self, batch: np.ndarray):
        """The rows (columns of ``batch``) and samples that can change the lists, with the batch's
        scores on them (others of those samples set to -inf, so they sort behind every kept entry).

        Returns ``(None, None, None)`` when every entry must be merged (nothing kept yet, or a
        list not yet full)."""
        thr = self.threshold()
        if thr is None or np.isneginf(thr).all():
            return None, None, None
        cand = batch.T > thr[:, None]  # (F, B)
        rows = np.flatnonzero(cand.any(1))
        if rows.size == 0:
            return rows, rows, None
        cols = np.flatnonzero(cand[rows].any(0))
        sub = cand[np.ix_(rows, cols)]
        vals = np.where(sub, batch.T[np.ix_(rows, cols)], -np.inf)
        return rows, cols, vals

    def _merged(self, kv, ki, kp, vals, idx, pay):
        """Kept (kv, ki, kp) and new (vals, idx, pay) entries of some rows -> the new kept ones."""
        if kv is not None:
            # earlier samples come first in the concatenation, so a stable sort keeps them first on ties
            vals = np.concatenate([kv, vals.astype(kv.dtype)], 1)
            idx, pay = np.concatenate([ki, idx], 1), np.concatenate([kp, pay], 1)
        order = np.argsort(-vals, axis=1, kind="stable")[:, : self.k]
        return (np.take_along_axis(vals, order, 1), np.take_along_axis(idx, order, 1),
                np.take_along_axis(pay, order, 1))

    @classmethod
    def merged(cls, parts: list[RunningTopK]) -> RunningTopK:
        """The statistic of all the samples of ``parts``, statistics of consecutive ranges of
        samples in order (earlier samples first; global indices): equal to one statistic fed every
        sample, ties going to the earlier sample (each part keeps its range's best K, and the
        stable sort of their concatenation keeps earlier parts first). Parts that saw no sample
        are skipped."""
        if not parts:
            raise ValueError(f"{cls.__name__}.merged: no statistics to merge")
        out = cls(parts[0].k)
        have = [p for p in parts if p.values is not None]
        if have:
            out.values, out.index, out.payload = out._merged(
                None, None, None, np.concatenate([p.values for p in have], 1),
                np.concatenate([p.index for p in have], 1), np.concatenate([p.payload for p in have], 1))
        out.count = max(p.count for p in parts)
        return out

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(values (F, K), index (F, K) int64), best first per column."""
        if self.values is None:
            raise ValueError(f"{type(self).__name__}.result: no data added yet")
        return self.values.copy(), self.index.copy()

    def state_dict(self) -> dict:
        """Plain arrays and numbers (no pickling needed to save them)."""
        d = {"k": self.k, "count": self.count}
        if self.values is not None:
            d.update(values=self.values.copy(), index=self.index.copy(), payload=self.payload.copy())
        return d

    def load_state_dict(self, d: dict) -> None:
        self.k, self.count = int(d["k"]), int(d["count"])
        self.values = d.get("values")
        self.index = d.get("index")
        self.payload = d.get("payload")


class RunningDistinctTopK(RunningTopK):
    """Top-K per column holding at most one sample per group (the group's best sample).

    The result equals: for each column, the best sample of every group, then the K best of
    those. Rows are padded with index -1 and score -inf while fewer than K groups were seen.
    It is exact when streamed: a group dropped from a column's list was beaten by K other
    groups, and those scores only rise.
    """

    def __init__(self, k: int = 16, *, start: int = 0):
        super().__init__(k, start=start)
        self.group: np.ndarray | None = None  # (F, k') int64 group code of each kept sample

    def add(self, batch: np.ndarray, groups: np.ndarray, *, payload: np.ndarray | None = None) -> None:
        """Add a batch.

        Parameters
        ----------
        batch : (B, F) float
        groups : (B,) int
            Integer group code of each sample (e.g. ``np.unique(faceset.groups,
            return_inverse=True)[1]``).
        payload : (B, F) int, optional
        """
        batch = _check_batch(batch, type(self).__name__)
        b, nf = batch.shape
        groups = np.asarray(groups, dtype=np.int64).reshape(-1)
        if len(groups) != b:
            raise ValueError(f"RunningDistinctTopK.add: groups has {len(groups)} entries for a batch of {b}")
        pay = np.zeros((b, nf), np.int64) if payload is None else np.asarray(payload)
        rows, cols, vals = self._candidates(batch)
        if rows is None:
            rows, cols, vals = np.arange(nf), np.arange(b), batch.T
        if rows.size:
            kept = (None,) * 4 if self.values is None else (
                self.values[rows], self.index[rows], self.payload[rows], self.group[rows])
            new = (vals, np.broadcast_to((self.count + cols)[None, :], vals.shape),
                   pay[np.ix_(cols, rows)].T.astype(np.int64), np.broadcast_to(groups[cols][None, :], vals.shape))
            merged = self._merged_distinct(kept, new)
            if self.values is None:
                self.values, self.index, self.payload, self.group = merged
            else:
                for arr, m in zip((self.values, self.index, self.payload, self.group), merged, strict=True):
                    arr[rows] = m
        self.count += b

    def _merged_distinct(self, kept, new):
        """Kept and new (values, index, payload, group) entries of some rows -> the new kept ones,
        each row the best entry of each group, K at most, padded with -inf / -1."""
        vals, idx, pay, grp = new
        if kept[0] is not None:
            kv, ki, kp, kg = kept
            vals = np.concatenate([kv, vals.astype(kv.dtype)], 1)
            idx, pay, grp = (np.concatenate(pair, 1) for pair in ((ki, idx), (kp, pay), (kg, grp)))
        nr = vals.shape[0]
        order = np.argsort(-vals, axis=1, kind="stable")
        vals, idx, pay, grp = (np.take_along_axis(a, order, 1) for a in (vals, idx, pay, grp))
        # keep each group's first (= best) occurrence per row
        rows = np.broadcast_to(np.arange(nr)[:, None], grp.shape)
        key = (rows * (int(grp.max()) + 2) + grp + 1).ravel()
        _, first = np.unique(key, return_index=True)
        keep = np.zeros(key.size, bool)
        keep[first] = True
        keep = keep.reshape(grp.shape) & (idx >= 0)
        keep &= np.cumsum(keep, axis=1) <= self.k
        width = self.k
        # move kept entries to the front of each row, in their (descending) order
        if keep.shape[1] < width:  # fewer candidates than K: pad with dropped entries
            pad = width - keep.shape[1]
            vals, idx, pay, grp, keep = (np.pad(a, ((0, 0), (0, pad))) for a in (vals, idx, pay, grp, keep))
        pos = np.argsort(~keep, axis=1, kind="stable")[:, :width]
        ok = np.take_along_axis(keep, pos, 1)
        return (np.where(ok, np.take_along_axis(vals, pos, 1), -np.inf).astype(vals.dtype),
                np.where(ok, np.take_along_axis(idx, pos, 1), -1),
                np.where(ok, np.take_along_axis(pay, pos, 1), 0),
                np.where(ok, np.take_along_axis(grp, pos, 1), -1))

    @classmethod
    def merged(cls, parts: list[RunningDistinctTopK]) -> RunningDistinctTopK:
        """The distinct statistic of all the samples of ``parts`` (consecutive ranges in order,
        as :meth:`RunningTopK.merged`); their ``group`` codes must mean the same groups. Exact: a
        group's best sample is its best in its own range, and it is in that range's list whenever
        it is in the merged one (the groups that beat it there beat it overall)."""
        if not parts:
            raise ValueError(f"{cls.__name__}.merged: no statistics to merge")
        out = cls(parts[0].k)
        have = [p for p in parts if p.values is not None]
        if have:
            new = tuple(np.concatenate([getattr(p, a) for p in have], 1) for a in ("values", "index", "payload", "group"))
            out.values, out.index, out.payload, out.group = out._merged_distinct((None,) * 4, new)
        out.count = max(p.count for p in parts)
        return out

    def state_dict(self) -> dict:
        d = super().state_dict()
        if self.group is not None:
            d["group"] = self.group.copy()
        return d

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        self.group = d.get("group")
