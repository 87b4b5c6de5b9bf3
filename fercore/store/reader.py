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

import numpy as np

from fercore.store.geometry import LayerGeometry
from fercore.store.layout import is_null_dir, null_dir, records_path, resolve_run
from fercore.store.projections_h5 import (
    projections_dir,
    read_filter_projections,
    read_top1,
    records_key,
)
from fercore.store.records_h5 import (
    STATS_VERSION,
    RecordsFileError,
    has_layer_array,
    read_analysis_attrs,
    read_layer_array,
    read_layer_group,
    read_records_header,
)

__all__ = ["LayerEvidence", "RunReader", "TopK", "open_run"]

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
    deconv : (K, P, P) float32 or None
        The projection of that one activation onto the pixels of ``box``: the Zeiler-Fergus
        deconvnet, or guided backpropagation (:meth:`RunReader.projection`); None until it is
        computed (projections are made on demand: :mod:`fercore.recording.project`). For a layer
        whose receptive field is larger than the input of a network other than FERNet (layer
        attribute ``patch_frame`` "image"), patch and projection cover the whole input (P = its side).
    """

    index: np.ndarray
    activation: np.ndarray
    pos: np.ndarray
    box: np.ndarray
    patch: np.ndarray
    deconv: np.ndarray | None

    def __len__(self) -> int:
        return int((self.index >= 0).sum())


class LayerEvidence(dict):
    """Everything ``analyze`` stored for one layer: a dict of arrays (see ``docs/records.md``),
    plus the data-set-wide ``au_ids``, ``base_rate``, ``testable``, ``minority`` (A,) and
    ``rates`` (C, A), the null network's 95th percentiles under ``null`` (a dict of figure
    name to (A,) array; empty without a null), and for a FaceSet of sequences the filters in time
    under ``temporal`` (``r_median`` (F, A), ``n_sequences`` (A,), ``best_filter``, ``best_r``,
    ``r_absent``, ``n_absent``, ``specific_filter``, ``specific_score``; empty otherwise)."""

    @property
    def n_filters(self) -> int:
        return int(len(self["judged"]))


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

    def __init__(self, run_dir: str | Path, *, records_file: str | None = None):
        self.run_dir = Path(run_dir)
        self._records_file = records_file
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
        path = self.records_path
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
        """The records file (``<run_dir>/records.h5``, or ``records_file`` of the constructor: a
        records file written by :func:`fercore.recording.record.record_model` anywhere)."""
        return self.run_dir / self._records_file if self._records_file else records_path(self.run_dir)

    @property
    def au_targets(self) -> str | None:
        """How the network was taught the AUs besides the emotion, in words ("an AU head on 18 AU
        columns, loss weight 1"); None for a network trained on the emotions only, and for one
        trained elsewhere (fercore does not know its targets)."""
        if self.config.get("kind") == "imported":
            return None
        weight = float((self.config.get("train") or {}).get("au_weight") or 0.0)
        n_aus = int((self.config.get("model") or {}).get("n_aus") or 0)
        if not (weight and n_aus):
            return None
        return f"an AU head on {n_aus} AU columns, loss weight {weight:g}"

    def is_stale(self) -> bool:
        """Whether ``records.h5`` was created, rebuilt or removed since this reader opened it
        (then call :func:`open_run` again)."""
        path = self.records_path
        now = path.stat().st_mtime_ns if path.exists() else None
        return now != self._mtime

    @property
    def has_stats(self) -> bool:
        """Whether ``analyze`` has written the analysis this fercore reads."""
        if not (self.has_records and self.header.get("analyzed")):
            return False
        return self.analysis_info().get("stats_version") == STATS_VERSION

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

    def projection(self, layer: str) -> str:
        """How the layer's projections (``TopK.deconv``) were made: ``"deconvnet"`` (Zeiler-Fergus,
        a network trained here) or ``"guided_backprop"`` (any other network)."""
        return str(self._layer(layer).get("projection", "deconvnet"))

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
        if is_null_dir(self.run_dir):
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
            deconv=None if (p := self.projections(layer, f)) is None else p["distinct" if distinct else "raw"],
        )

    # ----------------------------------------------------------------------- the projections
    @property
    def projections_folder(self) -> Path:
        """Where the projections of these records are cached (:mod:`fercore.store.projections_h5`)."""
        self._need_records()
        key = records_key(self.header, self._mtime)
        return projections_dir(self.run_dir, key, str(self.header.get("projection", "deconvnet")))

    def _legacy(self, layer: str) -> bool:
        """Whether the records file itself holds the layer's projections (recorded before they
        were made on demand)."""
        key = (layer, "__legacy__")
        with self._lock:
            if key not in self._cache:
                self._cache[key] = has_layer_array(self.records_path, layer, "topk/deconv")
            return self._cache[key]

    def projections(self, layer: str, f: int) -> dict[str, np.ndarray] | None:
        """Filter ``f``'s projections, ``{"raw": (K, P, P), "distinct": (K, P, P)}`` float32 (the
        two lists in order), or None while they are not computed
        (:func:`fercore.recording.project.filter_projections` computes and caches them)."""
        n = self.n_filters(layer)
        if not 0 <= int(f) < n:
            raise ValueError(f"filter {f} out of range for {layer} ({n} filters: 0..{n - 1})")
        if self._legacy(layer):
            return {"raw": self._array(layer, "topk/deconv")[int(f)].astype(np.float32),
                    "distinct": self._array(layer, "topk_distinct/deconv")[int(f)].astype(np.float32)}
        return read_filter_projections(self.projections_folder, layer, int(f))

    def top1_projections(self, layer: str) -> np.ndarray | None:
        """(F, P, P) float32: every filter's first raw projection (the filter grid), or None while
        not computed."""
        self._layer(layer)
        if self._legacy(layer):
            return self._array(layer, "topk/deconv")[:, 0].astype(np.float32)
        return read_top1(self.projections_folder, layer)

    def topk_arrays(self, layer: str, *, distinct: bool = False) -> dict[str, np.ndarray]:
        """Every filter's list at once: ``index`` (F, K) int64, ``activation`` (F, K) float32,
        ``pos`` (F, K, 2), ``box`` (F, K, 4) int64 (patches and projections: :meth:`topk`)."""
        self._layer(layer)
        g = "topk_distinct" if distinct else "topk"
        return {"index": self._array(layer, f"{g}/index").astype(np.int64),
                "activation": self._array(layer, f"{g}/activation").astype(np.float32),
                "pos": self._array(layer, f"{g}/pos").astype(np.int64),
                "box": self._array(layer, f"{g}/box").astype(np.int64)}

    def patches(self, layer: str, *, distinct: bool = False) -> np.ndarray:
        """(F, K, P, P) uint8: every filter's top-K patches (no projection is read)."""
        self._layer(layer)
        return self._array(layer, f"{'topk_distinct' if distinct else 'topk'}/patch")

    def max_activations(self, layer: str) -> np.ndarray:
        """(N, F) float16: each image's spatial maximum of each filter."""
        self._layer(layer)
        return self._array(layer, "max_act")

    def data_landmarks(self) -> np.ndarray | None:
        """(N, 68, 2) float32 landmarks in model-input pixels (the boxes' frame), or None."""
        self._need_records()
        with self._lock:
            key = (None, "data/landmarks")
            if key not in self._cache:
                try:
                    self._cache[key] = read_layer_array(self.records_path, None, "data/landmarks")
                except RecordsFileError:
                    self._cache[key] = None
            return self._cache[key]

    # ------------------------------------------------------------------------ the analysis
    def _need_stats(self) -> None:
        self._need_records()
        if not self.has_stats:
            raise FileNotFoundError(
                f"{self.records_path}: no filter-AU analysis of this fercore yet; "
                f"run `python -m fercore analyze --run {self.name}`")

    def analysis_info(self) -> dict:
        """What ``analyze`` stored about itself: ``stats_version``, ``criteria`` (dict),
        ``summary`` (dict: the funnel per layer for the run and its null, warnings), ``null``
        (kind or ""), ``null_dir``; {} before ``analyze`` ran."""
        self._need_records()
        with self._lock:
            if "__analysis_info__" not in self._cache:
                raw = read_analysis_attrs(self.records_path)
                info = dict(raw)
                for key in ("criteria", "summary"):
                    if isinstance(info.get(key), str):
                        info[key] = json.loads(info[key])
                self._cache["__analysis_info__"] = info
            return self._cache["__analysis_info__"]

    def analysis_arrays(self) -> dict[str, np.ndarray]:
        """The data-set-wide arrays of ``/analysis``: ``au_ids``, ``base_rate``, ``au_cooc``,
        ``rates`` (C, A) P(AU | emotion) over units, ``unit_n``, ``unit_m`` (C, A),
        ``minority``, ``testable`` (A,)."""
        self._need_stats()
        with self._lock:
            if "__analysis__" not in self._cache:
                self._cache["__analysis__"] = read_layer_group(self.records_path, None, "analysis")
            return self._cache["__analysis__"]

    def evidence(self, layer: str) -> LayerEvidence:
        """Everything ``analyze`` stored for ``layer`` (:class:`LayerEvidence`)."""
        self._layer(layer)
        self._need_stats()
        key = (layer, "__evidence__")
        with self._lock:
            if key not in self._cache:
                ev = LayerEvidence(read_layer_group(self.records_path, layer, "stats"))
                top = self.analysis_arrays()
                for k in ("au_ids", "base_rate", "testable", "minority", "rates"):
                    ev[k] = top[k]
                for group in ("null", "temporal"):
                    try:
                        ev[group] = read_layer_group(self.records_path, layer, group)
                    except RecordsFileError:
                        ev[group] = {}
                self._cache[key] = ev
            return self._cache[key]

    def summary(self) -> dict:
        """The stored summary (see :meth:`analysis_info`)."""
        self._need_stats()
        return self.analysis_info()["summary"]

    def null_reader(self, kind: str | None = None) -> RunReader | None:
        """The reader of the null network the analysis compared with (or of ``kind``), None
        when it is not recorded."""
        default = "permuted" if self.config.get("kind") == "imported" else "untrained"
        kind = kind or (self.analysis_info().get("null") if self.has_stats else "") or default
        d = null_dir(self.run_dir, kind)
        return RunReader(d) if (d / "config.json").exists() and records_path(d).exists() else None


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
