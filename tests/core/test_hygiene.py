"""CLI and cache hygiene: arguments checked before a run directory is written, unfinished and
damaged runs named as such (with what to do), run dates from the run's own metadata, a FaceSet
given where a run is expected, a closed output pipe, and out-of-range folds in short."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
from test_train import SPEC, make_faceset

from fercore.cli import main
from fercore.store.faceset_h5 import save_faceset
from fercore.store.layout import (
    TRAINING_MARKER,
    list_runs,
    records_path,
    resolve_run,
    run_state,
)
from fercore.training.loop import TrainConfig, fold_rounds, number_ranges, train

REPO = Path(__file__).resolve().parents[2]
QUICK = TrainConfig(epochs=1, batch_size=8, folds=[0])


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache of this test (``FERCORE_CACHE``) with one small FaceSet file."""
    root = tmp_path / "cache"
    (root / "datasets").mkdir(parents=True)
    monkeypatch.setenv("FERCORE_CACHE", str(root))
    save_faceset(make_faceset(n=45), root / "datasets" / "faces.h5")
    return root


@pytest.fixture
def quick_run(cache) -> Path:
    """A finished run of one round and one epoch (about a second)."""
    return train(cache / "datasets" / "faces.h5", SPEC, QUICK, root=cache / "runs")


def _dead_pid() -> int:
    """The id of a process that has ended."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _marker(run: Path, pid: int) -> None:
    import socket

    (run / TRAINING_MARKER).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "x"}))


# ------------------------------------------------ 1. arguments checked before anything is written
@pytest.mark.parametrize("bad", [["--size", "30"], ["--scheme", "crossentropy"], ["--au-weight", "1"],
                                 ["--folds", "50"]])
def test_train_with_a_bad_argument_writes_no_run_directory(cache, capsys, bad):
    argv = ["train", "--data", str(cache / "datasets" / "faces.h5"), "--width", "0.125", "--epochs", "1",
            "--batch-size", "8", "--quiet", *bad]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("fercore train: error: ") and err.count("\n") == 1
    assert not (cache / "runs").exists() or not any((cache / "runs").iterdir())


def test_bad_input_size_names_the_option(cache, capsys):
    main(["train", "--data", str(cache / "datasets" / "faces.h5"), "--size", "30", "--quiet"])
    err = capsys.readouterr().err
    assert "--size 30" in err and "multiple of 8" in err


def test_training_keeps_a_marker_while_it_runs_and_removes_it_after(cache):
    seen = []

    def progress(done, total, stage):
        (run,) = (cache / "runs").iterdir()
        seen.append((run_state(run), (run / TRAINING_MARKER).exists()))

    run = train(cache / "datasets" / "faces.h5", SPEC, QUICK, root=cache / "runs", progress=progress)
    assert seen and set(seen) == {("training", True)}
    assert not (run / TRAINING_MARKER).exists() and run_state(run) == "finished"


class Stop(Exception):
    pass


def test_an_interrupted_run_is_not_listed_as_training(cache, capsys):
    def stop(done, total, stage):
        if done >= 2:  # round 0 finished, round 1 one epoch in (its weights not yet written)
            raise Stop

    with pytest.raises(Stop):
        train(cache / "datasets" / "faces.h5", SPEC, TrainConfig(epochs=1, batch_size=8, folds=[0, 1]),
              root=cache / "runs", progress=stop)
    (run,) = (cache / "runs").iterdir()
    assert not (run / TRAINING_MARKER).exists()
    assert run_state(run) == "interrupted"  # round 0 has its weights
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert "interrupted" in out and "resume" in out and "training" not in out.replace("not being trained", "")


def _without_weights(run: Path, name: str) -> Path:
    """A directory beside ``run`` holding only its config.json, as a failed `train` used to leave."""
    d = run.parent / name
    d.mkdir()
    shutil.copy(run / "config.json", d / "config.json")
    return d


def test_a_directory_without_weights_is_listed_as_failed_with_what_to_do(quick_run, capsys):
    bad = _without_weights(quick_run, quick_run.name[:-8] + "00000000")
    (info_bad,) = [i for i in list_runs() if i.dir == bad]
    assert info_bad.state == "failed" and info_bad.mean_acc is None
    assert main(["runs"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "failed" in lines[bad.name] and "delete" in lines[bad.name] and "train again" in lines[bad.name]
    assert "training" not in lines[bad.name].replace("not being trained", "")
    assert "failed" not in lines[quick_run.name]


def test_a_run_being_trained_is_still_listed_as_training(quick_run, capsys):
    busy = _without_weights(quick_run, quick_run.name[:-8] + "11111111")
    _marker(busy, os.getpid())  # this process is alive
    assert run_state(busy) == "training"
    stale = _without_weights(quick_run, quick_run.name[:-8] + "22222222")
    _marker(stale, _dead_pid())  # a killed `train` left its marker
    assert run_state(stale) == "failed"
    main(["runs"])
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "  training  " in lines[busy.name] and "failed" not in lines[busy.name]
    assert "failed" in lines[stale.name]


def test_a_failed_directory_does_not_make_a_prefix_ambiguous(quick_run):
    prefix = quick_run.name.split("-")[0]  # "faces"
    bad = _without_weights(quick_run, quick_run.name[:-8] + "00000000")
    assert resolve_run(prefix) == quick_run
    other = quick_run.parent / (quick_run.name[:-8] + "99999999")
    shutil.copytree(quick_run, other)  # two complete runs: ambiguous, and the failed one is named
    with pytest.raises(FileNotFoundError, match="ambiguous") as e:
        resolve_run(prefix)
    msg = str(e.value)
    assert f"{bad.name} (incomplete: no weights and not being trained; delete it or train again)" in msg
    assert quick_run.name in msg and other.name in msg


# ------------------------------------------------------------- 2. phantom --size in its range
@pytest.mark.parametrize("size", ["30", "300", "47", "129"])
def test_phantom_size_outside_48_128_is_an_argument_error(tmp_path, capsys, size):
    with pytest.raises(SystemExit) as e:
        main(["phantom", "--n", "16", "--size", size, "--out", str(tmp_path / "p.h5"), "--quiet"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument --size" in err and "48-128" in err and f"got {size}" in err
    assert not (tmp_path / "p.h5").exists()


# ------------------------------------------------------------------- 3. damaged records named
def _copy(run: Path, root: Path, name: str) -> Path:
    dest = root / name
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("null", "projections"))
    return dest


def test_truncated_or_headerless_records_are_listed_as_damaged(tiny_run, tmp_path, capsys):
    root = tmp_path / "runs"
    good = _copy(tiny_run, root, "phantom-good-zero_bias-hard-00000001")
    cut = _copy(tiny_run, root, "phantom-cut-zero_bias-hard-00000002")
    with open(records_path(cut), "r+b") as f:
        f.truncate(records_path(cut).stat().st_size // 2)
    bare = _copy(tiny_run, root, "phantom-bare-zero_bias-hard-00000003")
    records_path(bare).unlink()
    with h5py.File(records_path(bare), "w") as f:  # HDF5, but no fercore header
        f.create_dataset("x", data=[1, 2, 3])
    info = {i.name: i for i in list_runs(root)}
    assert info[good.name].records == "ok" and info[good.name].recorded
    for d in (cut, bare):
        assert info[d.name].records == "damaged" and not info[d.name].recorded
        assert str(records_path(d)) in info[d.name].records_error
    assert "truncated" in info[cut.name].records_error
    assert main(["runs", "--root", str(root)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "analysed" in lines[good.name]
    for d in (cut, bare):
        assert "records damaged" in lines[d.name] and f"python -m fercore record --run {d.name}" in lines[d.name]
        assert "  recorded" not in lines[d.name] and "analysed" not in lines[d.name]


# ---------------------------------------------------------------- 4. the date is the run's own
def test_the_date_comes_from_the_run_not_from_file_times(quick_run, capsys):
    cfg = json.loads((quick_run / "config.json").read_text())
    trained = datetime.datetime.fromisoformat(cfg["trained"])
    assert trained.tzinfo is not None and abs(datetime.datetime.now().astimezone() - trained).total_seconds() < 600
    copy = quick_run.parent / (quick_run.name[:-8] + "c0c0c0c0")
    shutil.copytree(quick_run, copy)
    old = datetime.datetime(2001, 2, 3, 4, 5).timestamp()
    for p in copy.rglob("*"):
        os.utime(p, (old, old))  # what the copy's file times say is not when it was trained
    info = {i.name: i for i in list_runs()}
    assert info[copy.name].date == trained and not info[copy.name].date_from_files
    legacy = quick_run.parent / (quick_run.name[:-8] + "01d01d01")
    shutil.copytree(copy, legacy)
    del cfg["trained"]  # a run made before the date was stored
    (legacy / "config.json").write_text(json.dumps(cfg))
    os.utime(legacy / "metrics.json", (old, old))
    info = {i.name: i for i in list_runs()}
    assert info[legacy.name].date_from_files and info[legacy.name].date.year == 2001
    main(["runs"])
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert f"{trained:%Y-%m-%d %H:%M}" in lines[copy.name] and "file time" not in lines[copy.name]
    assert "2001-02-03 04:05 (file time)" in lines[legacy.name]


def test_an_imported_network_is_dated_by_its_import(tmp_path):
    from fercore.store.layout import _run_date

    d = tmp_path / "net-abcdef12"
    d.mkdir()
    (d / "config.json").write_text("{}")
    when, from_files = _run_date(d, {"imported": "2020-05-06T07:08:09"}, "imported", "config.json")
    assert (when.year, when.hour, from_files) == (2020, 7, False)


# ---------------------------------------------------------- 5. a FaceSet given where a run is due
def test_a_faceset_name_or_file_given_as_a_run_says_to_train_on_it(cache, capsys):
    faceset = cache / "datasets" / "phantom-51482d2c.h5"
    shutil.copy(cache / "datasets" / "faces.h5", faceset)
    for run in ("phantom-51482d2c", "phantom-51482d2c.h5", str(faceset)):
        assert main(["record", "--run", run, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "is a FaceSet" in err and f"python -m fercore train --data {faceset}" in err, err
        assert "not a run name" not in err
    with pytest.raises(FileNotFoundError, match="is a FaceSet"):
        resolve_run(faceset)


def test_another_file_given_as_a_run_is_named_as_a_file(cache, tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(FileNotFoundError, match="is a file, not a run directory"):
        resolve_run(other)


# ------------------------------------------------------------------- 6. a closed output pipe
def _run_into_closed_pipe(args: list[str], env: dict) -> subprocess.CompletedProcess:
    """``python -m fercore ARGS`` with stdout a pipe whose reader has gone (as ``| head -1``
    leaves it once head has read its line)."""
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run([sys.executable, "-m", "fercore", *args], stdout=w, stderr=subprocess.PIPE,
                              cwd=REPO, env=env, timeout=120)
    finally:
        os.close(w)


def test_runs_into_a_closed_pipe_ends_quietly(quick_run):
    p = _run_into_closed_pipe(["runs"], dict(os.environ))
    assert p.stderr.decode() == "" and p.returncode == 1


def test_summary_json_into_a_closed_pipe_ends_quietly(tiny_run):
    p = _run_into_closed_pipe(["summary", "--run", str(tiny_run), "--json"], dict(os.environ))
    err = p.stderr.decode()
    assert "Traceback" not in err and "BrokenPipeError" not in err and err == ""
    assert p.returncode == 1


# ------------------------------------------------------------ 7. out-of-range folds in short
def test_out_of_range_folds_are_summarised_as_ranges():
    fs = make_faceset(n=45, k=10)
    with pytest.raises(ValueError) as e:
        fold_rounds(fs, folds=range(50))
    msg = str(e.value)
    assert "10–49 out of range" in msg and "11" not in msg.replace("10–49", "")
    with pytest.raises(ValueError, match=r"folds: -1, 12–14 out of range"):
        fold_rounds(fs, folds=[0, -1, 12, 13, 14])


def test_number_ranges():
    assert number_ranges([]) == ""
    assert number_ranges([3]) == "3"
    assert number_ranges([5, 4]) == "4, 5"
    assert number_ranges([1, 2, 3, 7, 9, 10, 11, 11]) == "1–3, 7, 9–11"
