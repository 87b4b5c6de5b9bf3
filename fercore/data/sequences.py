"""Frames of sequences (video clips) in order: the grouping that sequence models and the temporal
analysis share.

A FaceSet keeps one row per frame; ``FaceSet.sequences`` names each frame's clip,
``FaceSet.frames`` its position in the clip and ``FaceSet.phases`` its phase
(:data:`fercore.data.faceset.PHASE_CODES`). These functions take those arrays (not files) and
return index arrays, so they serve any stage.

The per-sequence label rule (``docs/sequences.md``): a sequence's label is the label of its apex
frames (phase 2), which every sequence loader and the phantom give the sequence's emotion; where
phases are unknown it is the label of the sequence's last labelled frame (CK+'s peak, a folder
import's class).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from fercore.data.faceset import PHASE_CODES

__all__ = ["SequenceIndex", "apex_rows", "natural_key", "sequence_index", "sequence_labels"]

APEX = PHASE_CODES["apex"]
MICRO = PHASE_CODES["micro"]


def natural_key(name: str) -> tuple:
    """Sort key that orders the digit runs of a name by value (``f2`` before ``f10``)."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", str(name)) if t)


@dataclass(frozen=True)
class SequenceIndex:
    """Which FaceSet rows make each sequence, in frame order.

    Attributes
    ----------
    ids : (S,) str
        Sequence ids, sorted.
    rows : (S, T) int64
        FaceSet row of frame ``t`` of sequence ``s`` (frame order), -1 after the sequence's end;
        T is the longest sequence.
    lengths : (S,) int64
        Frames per sequence.
    """

    ids: np.ndarray
    rows: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def mask(self) -> np.ndarray:
        """(S, T) bool: True where ``rows`` names a frame."""
        return self.rows >= 0

    def frames_of(self, s: int) -> np.ndarray:
        """(T_s,) int64 FaceSet rows of sequence ``s`` in frame order."""
        return self.rows[s, : self.lengths[s]]

    def per_sequence(self, values: np.ndarray) -> np.ndarray:
        """(S,) the value of each sequence's first frame (e.g. its subject or fold), checking that
        every frame of a sequence agrees; ValueError naming the first sequence that does not."""
        values = np.asarray(values)
        first = values[self.rows[:, 0]]
        rows = np.where(self.mask, self.rows, self.rows[:, :1])
        same = (values[rows] == first[:, None]).all(axis=1)
        if not same.all():
            s = int(np.flatnonzero(~same)[0])
            raise ValueError(f"sequence {self.ids[s]!r}: its frames disagree ({sorted(set(values[self.frames_of(s)].tolist()))}); "
                             "every frame of a sequence must share it (folds and subjects hold whole sequences)")
        return first


def sequence_index(sequences: np.ndarray | None, frames: np.ndarray | None = None) -> SequenceIndex:
    """Group the rows of a FaceSet into sequences, each in frame order.

    Parameters
    ----------
    sequences : (N,) str
        Sequence id per row (``FaceSet.sequences``).
    frames : (N,) int or None
        Frame index per row (``FaceSet.frames``); None keeps the rows' order within a sequence.
        Two rows of one sequence with the same frame index are an error.

    Returns
    -------
    SequenceIndex
    """
    if sequences is None:
        raise ValueError("sequences: this FaceSet has no sequence ids (FaceSet.sequences is None); "
                         "use a sequence data set (phantom sequences, CK+ with frames='all', a folder "
                         "import whose subject pattern has a 'sequence' group)")
    seq = np.asarray(sequences).astype(str).reshape(-1)
    n = len(seq)
    if n == 0:
        return SequenceIndex(np.zeros(0, str), np.zeros((0, 0), np.int64), np.zeros(0, np.int64))
    ids, inv = np.unique(seq, return_inverse=True)
    if frames is None:
        order = np.lexsort((np.arange(n), inv))
    else:
        fr = np.asarray(frames, dtype=np.int64).reshape(-1)
        if len(fr) != n:
            raise ValueError(f"frames: expected {n} values (one per row), got {len(fr)}")
        order = np.lexsort((np.arange(n), fr, inv))
        dup = (inv[order][1:] == inv[order][:-1]) & (fr[order][1:] == fr[order][:-1])
        if dup.any():
            i = int(np.flatnonzero(dup)[0])
            raise ValueError(f"frames: sequence {ids[inv[order[i]]]!r} has two rows with frame index "
                             f"{fr[order[i]]} (rows {order[i]} and {order[i + 1]}); frame indices must be unique per sequence")
    lengths = np.bincount(inv, minlength=len(ids)).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    t = np.arange(n) - np.repeat(starts, lengths)  # position of each sorted row in its sequence
    rows = np.full((len(ids), int(lengths.max())), -1, np.int64)
    rows[inv[order], t] = order
    return SequenceIndex(ids, rows, lengths)


def apex_rows(index: SequenceIndex, labels: np.ndarray, phases: np.ndarray | None = None) -> np.ndarray:
    """The row of each sequence's apex frame: its last frame of phase apex (2); where phases are
    unknown or no frame is apex, its last labelled frame; else its last frame.

    Returns
    -------
    (S,) int64
    """
    labels = np.asarray(labels)
    out = np.empty(len(index), np.int64)
    for s in range(len(index)):
        r = index.frames_of(s)
        pick = r[phases[r] == APEX] if phases is not None else r[:0]
        if len(pick) == 0:
            pick = r[labels[r] >= 0]
        out[s] = (pick if len(pick) else r)[-1]
    return out


def sequence_labels(index: SequenceIndex, labels: np.ndarray, phases: np.ndarray | None = None) -> np.ndarray:
    """(S,) int64 label of each sequence: the label of its apex frame (:func:`apex_rows`); -1 when
    that frame is unlabelled."""
    return np.asarray(labels, dtype=np.int64)[apex_rows(index, labels, phases)]
