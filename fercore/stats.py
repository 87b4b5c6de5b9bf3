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

    Notes
    -----
    Ties are broken by the earlier sample (a stable sort), so the result equals a brute-force
    stable descending sort of the whole data.
    """

    def __init__(self, k: int = 16):
        if int(k) < 1:
            raise ValueError(f"RunningTopK: k must be at least 1, got {k}")
        self.k = int(k)
        self.count = 0
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
            Carried along with each kept score (the argmax position, in recording).
        """
        batch = _check_batch(batch, type(self).__name__)
        b, nf = batch.shape
        idx = np.broadcast_to(np.arange(self.count, self.count + b, dtype=np.int64)[:, None], (b, nf))
        pay = np.zeros((b, nf), np.int64) if payload is None else np.asarray(payload, np.int64)
        self._merge(batch.T, idx.T, pay.T)
        self.count += b

    def _concat(self, vals, idx, pay):
        if self.values is None:
            return vals, idx, pay
        return (np.concatenate([self.values, vals.astype(self.values.dtype)], 1),
                np.concatenate([self.index, idx], 1), np.concatenate([self.payload, pay], 1))

    def _merge(self, vals, idx, pay) -> None:
        vals, idx, pay = self._concat(vals, idx, pay)
        # earlier samples come first in the concatenation, so a stable sort keeps them first on ties
        order = np.argsort(-vals, axis=1, kind="stable")[:, : self.k]
        self.values = np.take_along_axis(vals, order, 1)
        self.index = np.take_along_axis(idx, order, 1)
        self.payload = np.take_along_axis(pay, order, 1)

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

    def __init__(self, k: int = 16):
        super().__init__(k)
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
        idx = np.broadcast_to(np.arange(self.count, self.count + b, dtype=np.int64)[:, None], (b, nf)).T
        pay = (np.zeros((b, nf), np.int64) if payload is None else np.asarray(payload, np.int64)).T
        grp = np.broadcast_to(groups[None, :], (nf, b))
        vals = batch.T
        if self.values is not None:
            grp = np.concatenate([self.group, grp], 1)
        vals, idx, pay = self._concat(vals, idx, pay)
        order = np.argsort(-vals, axis=1, kind="stable")
        vals, idx, pay, grp = (np.take_along_axis(a, order, 1) for a in (vals, idx, pay, grp))
        # keep each group's first (= best) occurrence per row
        rows = np.broadcast_to(np.arange(nf)[:, None], grp.shape)
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
        self.values = np.where(ok, np.take_along_axis(vals, pos, 1), -np.inf).astype(vals.dtype)
        self.index = np.where(ok, np.take_along_axis(idx, pos, 1), -1)
        self.payload = np.where(ok, np.take_along_axis(pay, pos, 1), 0)
        self.group = np.where(ok, np.take_along_axis(grp, pos, 1), -1)
        self.count += b

    def state_dict(self) -> dict:
        d = super().state_dict()
        if self.group is not None:
            d["group"] = self.group.copy()
        return d

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        self.group = d.get("group")
