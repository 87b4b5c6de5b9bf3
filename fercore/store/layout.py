"""Where everything lives in the cache, and the small JSON files of a run.

The cache folder (``$FERCORE_CACHE``, else ``cache/`` in the repository) holds::

    datasets/<name>.h5                    FaceSet files (phantom, imports)
    runs/<data>-<arch>-<scheme>-<hash8>/  one training run
        config.json                       what made it (FaceSet hash, model spec, training config;
                                          ``trained``: when training ended, ISO 8601)
        training.json                     present while ``train`` works on it (process id, host)
        metrics.json                      accuracy per round, protocol (written when training ends)
        weights/fold<t>.pt                best-validation weights of round t
        records.h5                        what every filter responds to, and its analysis
        null/<kind>/                      a null network of the run, laid out like a run
    runs/<name>-<hash8>/                  a network trained elsewhere (``import-model``)
        config.json                       kind "imported": format, input spec, classes, sha256,
                                          ``imported``: when, ISO 8601
        model/<file>                      the model file as given (and its factory file)
        eval-<datahash8>.json             scores on FaceSets (``evaluate``)
        records.h5, null/permuted/        as for a training run

Every stage resolves paths here, so none of them needs the read API to find a run.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "IMPORTED",
    "NULL_KINDS",
    "RECORDS_NAME",
    "RUN_STATES",
    "TRAINING_MARKER",
    "RunError",
    "RunInfo",
    "cache_dir",
    "datasets_dir",
    "is_imported",
    "is_training",
    "latest_evaluation",
    "list_runs",
    "load_config",
    "load_metrics",
    "now_text",
    "null_dir",
    "records_path",
    "resolve_run",
    "run_faceset_path",
    "run_state",
    "runs_dir",
    "trained_folds",
    "training_marker",
]

RECORDS_NAME = "records.h5"
#: The kinds of null network a run can have (:mod:`fercore.analysis.nulls`).
NULL_KINDS = ("untrained", "shuffled", "permuted")
#: ``config.json`` ``kind`` of a network trained elsewhere and imported (``import-model``).
IMPORTED = "imported"
#: The file ``train`` keeps in a run directory while it works on it (JSON: pid, host, started).
TRAINING_MARKER = "training.json"
#: What :func:`run_state` says of a run directory.
RUN_STATES = ("finished", "training", "interrupted", "failed")


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

    A prefix that matches several directories of which exactly one is a run (the others failed
    before any weights were written: :func:`run_state` ``"failed"``) resolves to that run.

    Raises
    ------
    FileNotFoundError
        Naming the argument, the runs folder searched and the runs found there; a FaceSet file or
        a FaceSet name of the cache is named as such, with the command that trains on it.
    """
    p = Path(run)
    if p.is_dir():
        return p
    root = runs_dir()
    if (root / str(run)).is_dir():
        return root / str(run)
    names = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")) \
        if root.is_dir() else []
    if p.is_file():
        raise FileNotFoundError(_file_is_not_a_run(str(run), p, names))
    hits = [n for n in names if n.startswith(str(run))]
    if len(hits) == 1:
        return root / hits[0]
    if len(hits) > 1:
        states = {n: run_state(root / n) for n in hits}
        usable = [n for n in hits if states[n] != "failed"]
        if len(usable) == 1:
            return root / usable[0]
        notes = {"failed": " (incomplete: no weights and not being trained; delete it or train again)",
                 "interrupted": " (interrupted; train again to resume)", "training": " (still training)"}
        listed = ", ".join(n + notes.get(states[n], "") for n in hits)
        raise FileNotFoundError(f"run {run!r} is ambiguous in {root}: matches {listed}; give more of the name")
    for path in (datasets_dir() / str(run), datasets_dir() / f"{run}.h5"):
        if path.is_file():
            raise FileNotFoundError(_file_is_not_a_run(str(run), path, names))
    known = ", ".join(names) if names else "none yet; train one with `python -m fercore train`"
    raise FileNotFoundError(f"run {run!r}: not a directory and not a run name under {root} (runs: {known})")


def _file_is_not_a_run(run: str, path: Path, names: list[str]) -> str:
    """The message for a file given where a run is expected: a FaceSet is named as one, with the
    command that trains on it and the runs already trained on a file of its name."""
    from fercore.store.faceset_h5 import read_faceset_info

    try:
        read_faceset_info(path)
    except (OSError, ValueError):
        return (f"run {run!r}: {path} is a file, not a run directory; give a run directory, a run name "
                f"under {runs_dir()} or a unique prefix (list them with `python -m fercore runs`)")
    trained = [n for n in names if n.startswith(f"{path.stem}-")]
    also = f"; runs trained on a FaceSet of this name: {', '.join(trained)}" if trained else ""
    return (f"run {run!r}: {path} is a FaceSet (a data set), not a trained run; train a network on it "
            f"first: `python -m fercore train --data {path}`{also}")


def is_training(run_dir: str | os.PathLike) -> bool:
    """Whether ``train`` is working on the run now: its :data:`TRAINING_MARKER` names a live
    process (a marker written on another host is taken as live; a stale one is not)."""
    path = Path(run_dir) / TRAINING_MARKER
    try:
        doc = json.loads(path.read_text())
        pid, host = int(doc["pid"]), str(doc["host"])
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, TypeError):
        return False  # not a marker this code wrote
    if host != socket.gethostname() or os.name == "nt":  # os.kill(pid, 0) would end a Windows process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    except OSError:
        return False
    return True


@contextlib.contextmanager
def training_marker(run_dir: str | os.PathLike, *, enabled: bool = True) -> Iterator[Path]:
    """Keep :data:`TRAINING_MARKER` in ``run_dir`` (created with its parents) for the ``with``
    block, so listings tell a run in progress from one that failed; removed on the way out,
    exception or not. ``enabled=False`` writes nothing (other processes of a distributed run)."""
    from fercore.util import write_json

    path = Path(run_dir) / TRAINING_MARKER
    if enabled:
        write_json(path, {"pid": os.getpid(), "host": socket.gethostname(), "started": now_text()})
    try:
        yield path
    finally:
        if enabled:
            path.unlink(missing_ok=True)


def now_text() -> str:
    """Local time with its UTC offset, ISO 8601 to the second (what ``config.json`` stores)."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def run_state(run_dir: str | os.PathLike) -> str:
    """What a run directory holds, one of :data:`RUN_STATES`.

    ``"finished"``: ``metrics.json`` exists, or the network was imported; ``"training"``: a live
    ``train`` process works on it (:func:`is_training`); ``"interrupted"``: not being trained and
    some rounds have weights (training again resumes); ``"failed"``: not being trained and no
    weights (nothing to keep: delete it or train again).
    """
    d = Path(run_dir)
    if (d / "metrics.json").exists():
        return "finished"
    try:
        if is_imported(json.loads((d / "config.json").read_text())):
            return "finished"
    except (OSError, ValueError, AttributeError):
        pass
    if is_training(d):
        return "training"
    return "interrupted" if trained_folds(d) else "failed"


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
        ``records.h5`` exists and opens (see ``records``).
    imported : bool
        A network trained elsewhere (``import-model``).
    state : str
        :func:`run_state`: ``"finished"``, ``"training"``, ``"interrupted"`` or ``"failed"``.
    records : str
        ``"none"`` (no ``records.h5``), ``"ok"`` or ``"damaged"`` (it does not open as a records
        file of this fercore: truncated, not HDF5, another schema; record again).
    records_error : str
        Why the records file is damaged ("" otherwise).
    date : datetime.datetime or None
        When training ended or the network was imported (timezone-aware; ``config.json``
        ``trained`` / ``imported``); for a run made before those were stored, the modification
        time of ``metrics.json`` / ``config.json`` (then ``date_from_files``); None while unfinished.
    date_from_files : bool
        ``date`` is a file's modification time (a copied run shows the time of the copy).
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
    state: str = "finished"
    records: str = "none"
    records_error: str = ""
    date: datetime.datetime | None = None
    date_from_files: bool = False


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
    """Every run directory with a ``config.json`` under ``root`` (default ``runs_dir()``), by name.

    Unfinished directories are listed too, with their :func:`run_state`; each records file is
    opened (its header only) to tell a damaged one."""
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
        records, records_error, head = _records_state(d)
        if is_imported(cfg):
            out.append(_imported_info(d, cfg, records, records_error, head))
            continue
        rounds = cfg.get("rounds")
        done = trained_folds(d)
        complete = metrics is not None and (rounds is None or set(rounds) <= set(done))
        date, from_files = _run_date(d, cfg, "trained", "metrics.json") if metrics is not None else (None, False)
        out.append(RunInfo(
            name=d.name,
            dir=d,
            dataset=cfg["faceset"].get("name", ""),
            faceset_path=Path(cfg["faceset"].get("path", "")),
            arch=cfg["model"].get("arch", ""),
            mean_acc=None if metrics is None else metrics.get("mean_test_acc"),
            sd_acc=None if metrics is None else metrics.get("sd_test_acc"),
            complete=bool(complete),
            recorded=records == "ok",
            state=run_state(d),
            records=records,
            records_error=records_error,
            date=date,
            date_from_files=from_files,
        ))
    return out


def _records_state(d: Path) -> tuple[str, str, dict]:
    """("none" | "ok" | "damaged", why damaged, the header) of a run's records file."""
    path = records_path(d)
    if not path.exists():
        return "none", "", {}
    from fercore.store.records_h5 import read_records_header

    try:
        return "ok", "", read_records_header(path)
    except (OSError, ValueError) as e:  # RecordsFileError is a ValueError
        return "damaged", str(e), {}


def _run_date(d: Path, cfg: dict, key: str, fallback: str) -> tuple[datetime.datetime, bool]:
    """(when, from the file time?): ``cfg[key]`` (ISO 8601), else the modification time of
    ``d / fallback`` (runs made before the time was stored)."""
    text = cfg.get(key)
    if isinstance(text, str):
        try:
            return datetime.datetime.fromisoformat(text).astimezone(), False
        except ValueError:
            pass
    return datetime.datetime.fromtimestamp((d / fallback).stat().st_mtime).astimezone(), True


def _imported_info(d: Path, cfg: dict, records: str, records_error: str, head: dict) -> RunInfo:
    ev = latest_evaluation(d)
    path = Path(head.get("faceset_path", "")) if head.get("faceset_path") else Path("")
    data = path.stem if head.get("faceset_path") else ""
    date, from_files = _run_date(d, cfg, "imported", "config.json")
    return RunInfo(name=d.name, dir=d, dataset=data, faceset_path=path, arch=str(cfg["model"].get("arch", "")),
                   mean_acc=None if ev is None else ev.get("accuracy"), sd_acc=None if ev is None else ev.get("sd"),
                   complete=True, recorded=records == "ok", imported=True, records=records,
                   records_error=records_error, date=date, date_from_files=from_files)
