"""Read-only access to a run and its ``records.h5``: the API the dashboard codes against.

:func:`open_run` is cheap: it reads ``config.json``, ``metrics.json`` and the records header.
Arrays are read on first use and cached per layer; every h5py read goes through one lock, so one
:class:`RunReader` can be shared by the threads of a Streamlit server.

A run directory without a (valid) ``records.h5`` still opens: ``has_records`` is False and
``records_error`` says what is wrong and which command rebuilds it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from fercore.data.facs import au_name
from fercore.store.layout import records_path, resolve_run
from fercore.store.records_h5 import (
    RecordsFileError,
    read_layer_array,
    read_layer_group,
    read_records_header,
)
from fercore.training.models import LayerGeometry

__all__ = ["AUStats", "RunReader", "TopK", "open_run"]

@dataclass(frozen=True)
class TopK:
    """The K images that excite one filter most, best first.

    Attributes
    ----------
    index : (K,) int64
        Image index into the recorded FaceSet (``RunReader.faceset()``); -1 pads a distinct list
        when the data has fewer than K groups.
    activation : (K,) float32
        The filter's spatial maximum on that image (conv output, before ReLU).
    pos : (K, 2) int64
        (row, col) of the maximum in the layer's output map.
    box : (K, 4) int64
        Receptive field of that unit: x0, y0, x1, y1 inclusive, in input pixels (may extend
        past the image).
    patch : (K, P, P) uint8
        Image pixels under ``box``, zero where the box leaves the image (P = receptive field).
    deconv : (K, P, P) float32
        Zeiler-Fergus deconvnet projection of that one activation onto the pixels of ``box``.
    """

    index: np.ndarray
    activation: np.ndarray
    pos: np.ndarray
    box: np.ndarray
    patch: np.ndarray
    deconv: np.ndarray

    def __len__(self) -> int:
        return int((self.index >= 0).sum())


@dataclass(frozen=True)
class AUStats:
    """Filter x AU statistics of one layer (see ``docs/records.md`` for the formulas).

    Attributes
    ----------
    au_ids : (A,) int64
    topk_share : (F, A) float32
        Share of the filter's top-K images (with that AU coded) that carry the AU.
    corr : (F, A) float32
        Point-biserial correlation of the per-image max activation with AU presence.
    corr_within : (F, A) float32
        The same after centring activation and AU presence within each emotion class (pooled
        within-class correlation): an AU detector keeps it, a detector of the emotion loses it.
    pval : (F, A) float32
        Two-sided exact t-test p-value of ``corr``.
    qval : (F, A) float32
        Benjamini-Hochberg adjusted ``pval`` over all F x A tests of the layer.
    spatial : (F, A) float32
        Share of the top-K argmax positions (receptive-field centres) inside the AU's face
        region; NaN without landmarks.
    kl : (F,) float32
        KL divergence of the top-K AU histogram from the data's AU base rates (Khorrami).
    base_rate : (A,) float32
        Share of coded images that carry each AU.
    au_cooc : (A, A) float32
        P(AU j present | AU i present) over images where both are coded.
    """

    STATS: ClassVar[tuple[str, ...]] = ("topk_share", "corr", "corr_within", "pval", "qval", "spatial")

    au_ids: np.ndarray
    topk_share: np.ndarray
    corr: np.ndarray
    corr_within: np.ndarray
    pval: np.ndarray
    qval: np.ndarray
    spatial: np.ndarray
    kl: np.ndarray
    base_rate: np.ndarray
    au_cooc: np.ndarray


_MATCH_COLUMNS = ("layer", "filter", "au", "au_name", "topk_share", "kl", "corr", "corr_within", "qval", "spatial")


class RunReader:
    """One run's config, metrics and records; see :func:`open_run`.

    Attributes
    ----------
    run_dir : Path
    name : str
        The run directory's name.
    config : dict
        ``config.json`` ({} if missing).
    metrics : dict or None
        ``metrics.json``, None before training finished.
    class_names : tuple of str
    au_ids : (A,) int64
    has_records : bool
    records_error : str or None
        None when the records are fine; otherwise what is wrong and the command that rebuilds.
    layers : list of str
        Recorded layers, input to output.
    header : dict
        The records file's attributes (schema_version, run, faceset_hash, fold, k, n, ...).
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise FileNotFoundError(f"run directory {self.run_dir} does not exist; train a run first")
        self.name = self.run_dir.name
        self.config = _read_json(self.run_dir / "config.json") or {}
        self.metrics = _read_json(self.run_dir / "metrics.json")
        self._lock = threading.RLock()
        self._cache: dict = {}
        self._faceset = None
        self.header: dict = {}
        self.layers: list[str] = []
        self.has_records = False
        self.records_error: str | None = None
        self.class_names: tuple[str, ...] = tuple(self.config.get("class_names", ()))
        self.au_ids = np.zeros(0, dtype=np.int64)
        self._mtime: int | None = None
        path = records_path(self.run_dir)
        rebuild = self._rebuild_hint()
        if not path.exists():
            self.records_error = f"records.h5 missing in {self.run_dir}: {rebuild}"
            return
        try:
            with self._lock:
                self._mtime = path.stat().st_mtime_ns
                self.header = read_records_header(path)
        except RecordsFileError as e:
            self.records_error = f"records.h5 missing/corrupt: {e}; {rebuild}"
            return
        self.has_records = True
        self.layers = list(self.header["layers"])
        self.class_names = tuple(self.header["class_names"])
        self.au_ids = np.asarray(self.header["au_ids"], dtype=np.int64)

    # ---------------------------------------------------------------------------------------
    @property
    def records_path(self) -> Path:
        return records_path(self.run_dir)

    def is_stale(self) -> bool:
        """Whether ``records.h5`` was created, rebuilt or removed since this reader opened it
        (then call :func:`open_run` again)."""
        path = self.records_path
        now = path.stat().st_mtime_ns if path.exists() else None
        return now != self._mtime

    @property
    def has_stats(self) -> bool:
        """Whether ``analyze`` has written the filter x AU statistics."""
        return self.has_records and bool(self.header.get("analyzed"))

    def _need_records(self) -> None:
        if not self.has_records:
            raise FileNotFoundError(self.records_error or f"{self.run_dir}: no records")

    def _layer(self, layer: str) -> dict:
        self._need_records()
        if layer not in self.header["layer_info"]:
            raise ValueError(f"layer {layer!r} is not recorded in {self.records_path}; recorded: {', '.join(self.layers)}")
        return self.header["layer_info"][layer]

    def _array(self, layer: str, name: str) -> np.ndarray:
        key = (layer, name)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = read_layer_array(self.records_path, layer, name)
            return self._cache[key]

    def n_filters(self, layer: str) -> int:
        """Number of filters (output channels) of a recorded layer."""
        return int(self._layer(layer)["n_filters"])

    def geometry(self, layer: str) -> LayerGeometry:
        """Exact receptive field of the layer's units, as recorded."""
        info = self._layer(layer)
        return LayerGeometry(rf=int(info["rf"]), jump=int(info["jump"]), start=float(info["start"]),
                             out_size=int(info["out_size"]))

    def faceset(self):
        """The FaceSet the records were computed on (loaded once; images of all folds).

        Note: the images of folds other than the recorded weights' test fold were training
        images of this model.
        """
        from fercore.store.faceset_h5 import load_faceset

        self._need_records()
        with self._lock:
            if self._faceset is None:
                path = Path(self.header["faceset_path"])
                if not path.is_absolute():
                    path = self.run_dir / path
                fs = load_faceset(path)
                digest = fs.content_hash()
                if digest != self.header["faceset_hash"]:
                    raise ValueError(
                        f"{path}: the FaceSet changed since {self.records_path} was made "
                        f"(hash {digest[:8]} != {self.header['faceset_hash'][:8]}); "
                        f"{self._rebuild_hint()}")
                self._faceset = fs
            return self._faceset

    def _rebuild_hint(self) -> str:
        """The command that rebuilds these records: a null network is rebuilt through its run."""
        if self.run_dir.parent.name == "null":
            run = self.run_dir.parent.parent.name
            return f"rebuild with `python -m fercore null --run {run} --kind {self.run_dir.name}`"
        return (f"rebuild with `python -m fercore record --run {self.name}` "
                f"then `python -m fercore analyze --run {self.name}`")

    def topk(self, layer: str, f: int, *, distinct: bool = False) -> TopK:
        """Top-K images of filter ``f`` of ``layer``; ``distinct`` keeps at most one per group
        (sequence, else subject)."""
        n = self.n_filters(layer)
        if not 0 <= int(f) < n:
            raise ValueError(f"filter {f} out of range for {layer} ({n} filters: 0..{n - 1})")
        g = "topk_distinct" if distinct else "topk"
        f = int(f)
        return TopK(
            index=self._array(layer, f"{g}/index")[f].astype(np.int64),
            activation=self._array(layer, f"{g}/activation")[f].astype(np.float32),
            pos=self._array(layer, f"{g}/pos")[f].astype(np.int64),
            box=self._array(layer, f"{g}/box")[f].astype(np.int64),
            patch=self._array(layer, f"{g}/patch")[f],
            deconv=self._array(layer, f"{g}/deconv")[f].astype(np.float32),
        )

    def max_activations(self, layer: str) -> np.ndarray:
        """(N, F) float16: each image's spatial maximum of each filter."""
        self._layer(layer)
        return self._array(layer, "max_act")

    def au_stats(self, layer: str) -> AUStats:
        """Filter x AU statistics of ``layer``; FileNotFoundError if ``analyze`` has not run."""
        self._layer(layer)
        key = (layer, "__stats__")
        with self._lock:
            if key not in self._cache:
                if not self.has_stats:
                    raise FileNotFoundError(
                        f"{self.records_path}: no filter-AU statistics yet; run `python -m fercore analyze --run {self.name}`")
                arrays = read_layer_group(self.records_path, layer, "stats")
                top = read_layer_group(self.records_path, None, "analysis")
                self._cache[key] = AUStats(
                    au_ids=self.au_ids,
                    **{s: arrays[s].astype(np.float32) for s in AUStats.STATS},
                    kl=arrays["kl"].astype(np.float32),
                    base_rate=top["base_rate"].astype(np.float32),
                    au_cooc=top["au_cooc"].astype(np.float32),
                )
            return self._cache[key]

    def match_table(self, layer: str) -> list[dict]:
        """Ranked filter <-> AU rows of one layer, best match first.

        One row per (filter, AU) pair whose correlation is positive, ranked by
        ``min(topk_share, spatial)`` (``topk_share`` alone without landmarks), then ``corr``.
        Keys: layer, filter, au, au_name, topk_share, kl, corr, corr_within, qval, spatial.
        """
        s = self.au_stats(layer)
        return match_rows(layer, s)

    def match_csv(self, layer: str) -> str:
        """:meth:`match_table` as CSV text with a header line."""
        return rows_to_csv(self.match_table(layer))


def match_rows(layer: str, s: AUStats) -> list[dict]:
    """Ranked filter <-> AU rows from one layer's statistics (see :meth:`RunReader.match_table`)."""
    share = np.nan_to_num(s.topk_share, nan=0.0)
    spatial = s.spatial
    score = np.where(np.isnan(spatial), share, np.minimum(share, np.nan_to_num(spatial, nan=0.0)))
    corr = np.nan_to_num(s.corr, nan=-1.0)
    fs, ai = np.nonzero(corr > 0)
    order = np.lexsort((-corr[fs, ai], -score[fs, ai]))
    rows = []
    for k in order:
        f, a = int(fs[k]), int(ai[k])
        rows.append({
            "layer": layer, "filter": f, "au": int(s.au_ids[a]), "au_name": au_name(int(s.au_ids[a])),
            "topk_share": float(s.topk_share[f, a]), "kl": float(s.kl[f]), "corr": float(s.corr[f, a]),
            "corr_within": float(s.corr_within[f, a]), "qval": float(s.qval[f, a]),
            "spatial": float(s.spatial[f, a]),
        })
    return rows


def rows_to_csv(rows: list[dict]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(_MATCH_COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def _read_json(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not valid JSON ({e}); the run may be damaged, retrain it") from None


def open_run(run_dir: str | Path) -> RunReader:
    """Open a run for reading (cheap; arrays are read lazily and cached).

    Parameters
    ----------
    run_dir : path or str
        A run directory, a run name under ``runs_dir()``, or a unique prefix of one.

    Returns
    -------
    RunReader
        A new reader; readers are not shared between calls, so a rebuilt records file is seen
        by the next ``open_run``.
    """
    return RunReader(resolve_run(run_dir))
