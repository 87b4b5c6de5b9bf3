"""Where everything lives in the cache, and the small JSON files of a run.

The cache folder (``$FERCORE_CACHE``, else ``cache/`` in the repository) holds::

    datasets/<name>.h5                    FaceSet files (phantom, imports)
    runs/<data>-<arch>-<scheme>-<hash8>/  one training run
        config.json                       what made it (FaceSet hash, model spec, training config)
        metrics.json                      accuracy per round, protocol (written when training ends)
        weights/fold<t>.pt                best-validation weights of round t
        records.h5                        what every filter responds to, and its analysis
        null/<kind>/                      a null network of the run, laid out like a run
    runs/<name>-<hash8>/                  a network trained elsewhere (``import-model``)
        config.json                       kind "imported": format, input spec, classes, sha256
        model/<file>                      the model file as given (and its factory file)
        eval-<datahash8>.json             scores on FaceSets (``evaluate``)
        records.h5, null/permuted/        as for a training run

Every stage resolves paths here, so none of them needs the read API to find a run.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "IMPORTED",
    "NULL_KINDS",
    "RECORDS_NAME",
    "RunError",
    "RunInfo",
    "cache_dir",
    "datasets_dir",
    "is_imported",
    "latest_evaluation",
    "list_runs",
    "load_config",
    "load_metrics",
    "null_dir",
    "records_path",
    "resolve_run",
    "run_faceset_path",
    "runs_dir",
    "trained_folds",
]

RECORDS_NAME = "records.h5"
#: The kinds of null network a run can have (:mod:`fercore.analysis.nulls`).
NULL_KINDS = ("untrained", "shuffled", "permuted")
#: ``config.json`` ``kind`` of a network trained elsewhere and imported (``import-model``).
IMPORTED = "imported"


class RunError(ValueError):
    """A run directory is missing, incomplete or damaged."""


def cache_dir() -> Path:
    """The cache folder: ``$FERCORE_CACHE`` if set, else ``cache/`` in the repository."""
    env = os.environ.get("FERCORE_CACHE")
    return Path(env) if env else Path(__file__).resolve().parent.parent.parent / "cache"


def runs_dir() -> Path:
    return cache_dir() / "runs"


def datasets_dir() -> Path:
    return cache_dir() / "datasets"


def records_path(run_dir: str | os.PathLike) -> Path:
    """Where a run's records live: ``<run_dir>/records.h5``."""
    return Path(run_dir) / RECORDS_NAME


def null_dir(run_dir: str | os.PathLike, kind: str = "untrained") -> Path:
    """``<run_dir>/null/<kind>``: where the null network of a run lives (it may not exist yet)."""
    if kind not in NULL_KINDS:
        raise ValueError(f"null kind: expected one of {', '.join(NULL_KINDS)}, got {kind!r}")
    return Path(run_dir) / "null" / kind


def is_null_dir(run_dir: str | os.PathLike) -> bool:
    """Whether a run-like directory is a null network (``<run>/null/<kind>``)."""
    p = Path(run_dir)
    return p.parent.name == "null" and p.name in NULL_KINDS


def resolve_run(run: str | os.PathLike) -> Path:
    """A run directory from a path, a run name (directory under ``runs_dir()``) or a unique prefix.

    Raises
    ------
    FileNotFoundError
        Naming the argument, the runs folder searched and the runs found there.
    """
    p = Path(run)
    if p.is_dir():
        return p
    root = runs_dir()
    if (root / str(run)).is_dir():
        return root / str(run)
    names = sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    hits = [n for n in names if n.startswith(str(run))]
    if len(hits) == 1:
        return root / hits[0]
    if len(hits) > 1:
        raise FileNotFoundError(f"run {run!r} is ambiguous in {root}: matches {', '.join(hits)}; give more of the name")
    known = ", ".join(names) if names else "none yet; train one with `python -m fercore train`"
    raise FileNotFoundError(f"run {run!r}: not a directory and not a run name under {root} (runs: {known})")


def _read(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path}: no {what}; {path.parent} is not a (finished) run — train it with "
                       f"`python -m fercore train`") from None
    except (OSError, ValueError) as e:
        raise RunError(f"{path}: damaged {what} ({e}); delete {path.parent} and train again") from None


def is_imported(cfg: dict) -> bool:
    """Whether a run's config is that of a network trained elsewhere (``import-model``)."""
    return cfg.get("kind") == IMPORTED


def load_config(run_dir) -> dict:
    """The run's ``config.json``; RunError if missing or unreadable."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run directory {run_dir} does not exist; list runs with `python -m fercore runs` "
                       f"or train one with `python -m fercore train`")
    cfg = _read(run_dir / "config.json", "config.json")
    need = ("model", "input", "class_names") if is_imported(cfg) else ("model", "train", "faceset")
    for key in need:
        if key not in cfg:
            raise RunError(f"{run_dir / 'config.json'}: no {key!r} entry; not a fercore run "
                           f"({'imported' if is_imported(cfg) else 'training'})")
    return cfg


def load_metrics(run_dir) -> dict | None:
    """The run's ``metrics.json``, or None while training has not finished."""
    path = Path(run_dir) / "metrics.json"
    if not path.exists():
        return None
    return _read(path, "metrics.json")


def trained_folds(run_dir) -> list[int]:
    """Rounds whose best-validation weights exist (``weights/fold{t}.pt``), ascending."""
    found = []
    for p in (Path(run_dir) / "weights").glob("fold*.pt"):
        m = re.fullmatch(r"fold(\d+)\.pt", p.name)
        if m:
            found.append(int(m.group(1)))
    return sorted(found)


def run_faceset_path(run_dir) -> Path:
    """The FaceSet file a run was trained on; RunError if it is gone, or the network was trained
    elsewhere (then fercore does not know its data: the caller must be given a FaceSet)."""
    cfg = load_config(run_dir)
    if is_imported(cfg):
        raise RunError(f"{run_dir}: an imported network; fercore does not have the data it was trained on, "
                       f"so name a FaceSet file (--data FILE; e.g. `python -m fercore phantom --out faces.h5`, or "
                       f"`python -m fercore import ckplus ...`)")
    path = Path(cfg["faceset"]["path"])
    if not path.exists():
        raise RunError(f"{run_dir}: its FaceSet {path} no longer exists; rebuild it (same options give the "
                       f"same file) or train again on another file")
    return path


@dataclass(frozen=True)
class RunInfo:
    """One line of :func:`list_runs`.

    Attributes
    ----------
    name : str
        The directory name (``<data>-<arch>-<scheme>-<hash8>``; ``<name>-<hash8>`` imported).
    dir : Path
    dataset : str
        Name of the FaceSet file the run trained on (its stem); for an imported network the
        FaceSet it was recorded on, "" before.
    faceset_path : Path
    arch : str
    mean_acc : float or None
        Mean test accuracy over the rounds (None until ``metrics.json`` exists); for an imported
        network its accuracy in the latest ``evaluate`` (None before).
    sd_acc : float or None
    complete : bool
        ``metrics.json`` exists and every round has its weights; an imported network is complete.
    recorded : bool
        ``records.h5`` exists.
    imported : bool
        A network trained elsewhere (``import-model``).
    """

    name: str
    dir: Path
    dataset: str
    faceset_path: Path
    arch: str
    mean_acc: float | None
    sd_acc: float | None
    complete: bool
    recorded: bool = False
    imported: bool = False


def latest_evaluation(run_dir) -> dict | None:
    """The newest ``eval-*.json`` of a run (``evaluate``), or None."""
    found = sorted(Path(run_dir).glob("eval-*.json"), key=lambda p: p.stat().st_mtime)
    for path in reversed(found):
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return None


def list_runs(root=None) -> list[RunInfo]:
    """Every run directory with a ``config.json`` under ``root`` (default ``runs_dir()``), by name."""
    root = Path(root) if root is not None else runs_dir()
    if not root.is_dir():
        return []
    out = []
    for d in sorted(root.iterdir()):
        if not (d / "config.json").is_file():
            continue
        try:
            cfg = load_config(d)
            metrics = load_metrics(d)
        except RunError:
            continue
        if is_imported(cfg):
            out.append(_imported_info(d, cfg))
            continue
        rounds = cfg.get("rounds")
        done = trained_folds(d)
        complete = metrics is not None and (rounds is None or set(rounds) <= set(done))
        out.append(RunInfo(
            name=d.name,
            dir=d,
            dataset=cfg["faceset"].get("name", ""),
            faceset_path=Path(cfg["faceset"].get("path", "")),
            arch=cfg["model"].get("arch", ""),
            mean_acc=None if metrics is None else metrics.get("mean_test_acc"),
            sd_acc=None if metrics is None else metrics.get("sd_test_acc"),
            complete=bool(complete),
            recorded=records_path(d).exists(),
        ))
    return out


def _imported_info(d: Path, cfg: dict) -> RunInfo:
    ev = latest_evaluation(d)
    data = ""
    path = Path("")
    if records_path(d).exists():
        from fercore.store.records_h5 import RecordsFileError, read_records_header

        try:
            path = Path(read_records_header(records_path(d)).get("faceset_path", ""))
            data = path.stem
        except RecordsFileError:
            pass
    return RunInfo(name=d.name, dir=d, dataset=data, faceset_path=path, arch=str(cfg["model"].get("arch", "")),
                   mean_acc=None if ev is None else ev.get("accuracy"), sd_acc=None if ev is None else ev.get("sd"),
                   complete=True, recorded=records_path(d).exists(), imported=True)
