"""Projections on demand: computed the first time they are asked for, cached beside the records,
equal to those computed up front, invalidated by a new recording, safe under concurrent requests
and under a writer that is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_record import make_faceset, make_run, tiny_model

from fercore.recording.project import ensure_projections, filter_projections, top1_projections
from fercore.recording.record import record, record_model
from fercore.store.projections_h5 import read_filter_projections, write_filter_projections
from fercore.store.reader import RunReader, open_run
from fercore.training.inputs import InputSpec
from fercore.training.network import Network

REPO = Path(__file__).resolve().parents[2]


def _all(reader) -> dict:
    return {(layer, f): reader.projections(layer, f) for layer in reader.layers for f in range(reader.n_filters(layer))}


def test_records_hold_no_projections_until_asked(tmp_path):
    run = make_run(tmp_path)
    record(run, k=4)
    r = open_run(run)
    assert all(p is None for p in _all(r).values()) and r.topk(r.layers[-1], 0).deconv is None
    got = filter_projections(r, r.layers[-1], 2)
    assert got["raw"].shape[0] == 4 and np.abs(got["raw"]).max() > 0
    assert r.projections(r.layers[-1], 2) is not None and r.projections(r.layers[-1], 1) is None  # only that one
    np.testing.assert_array_equal(r.topk(r.layers[-1], 2).deconv, got["raw"])


def test_deconvnet_projections_on_demand_equal_those_made_up_front(tmp_path):
    fs = make_faceset()
    model = tiny_model()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    record_model(model, fs, tmp_path / "a" / "r.h5", normalize_method="standardize", k=5, projections="all")
    record_model(model, fs, tmp_path / "b" / "r.h5", normalize_method="standardize", k=5)
    up_front = RunReader(tmp_path / "a", records_file="r.h5")
    on_demand = RunReader(tmp_path / "b", records_file="r.h5")
    net = Network(model, InputSpec(size=16), ("neutral", "happy", "surprise"), tuple(on_demand.layers))
    for (layer, f), want in _all(up_front).items():
        got = filter_projections(on_demand, layer, f, network=net, faceset=fs)  # one filter at a time
        np.testing.assert_array_equal(got["raw"], want["raw"])
        np.testing.assert_array_equal(got["distinct"], want["distinct"])
    for layer in on_demand.layers:  # the grid's first projections, computed on their own
        np.testing.assert_array_equal(top1_projections(on_demand, layer, network=net, faceset=fs),
                                      up_front.top1_projections(layer))


def test_guided_projections_on_demand_equal_those_made_up_front(foreign_recorded, tmp_path):
    from fercore.training.network import load_network

    run = foreign_recorded.runs["resnet"]["onnx"]
    net = load_network(run)
    (tmp_path / "up").mkdir()
    record_model(net.module, foreign_recorded.faceset, tmp_path / "up" / "r.h5", inputs=net.inputs, k=8,
                 layers=list(net.layers), projections="all")
    up_front = RunReader(tmp_path / "up", records_file="r.h5")
    reader = open_run(run)
    for layer in reader.layers[::2]:
        for f in (0, reader.n_filters(layer) - 1):
            got = filter_projections(reader, layer, f)
            want = up_front.projections(layer, f)
            np.testing.assert_allclose(got["raw"], want["raw"], rtol=1e-3, atol=1e-3 * np.abs(want["raw"]).max())
            np.testing.assert_allclose(got["distinct"], want["distinct"], rtol=1e-3,
                                       atol=1e-3 * np.abs(want["distinct"]).max())


def test_a_new_recording_invalidates_the_cache(tmp_path):
    run = make_run(tmp_path)
    record(run, k=4)
    r = open_run(run)
    old = r.projections_folder
    ensure_projections(r, layers=[r.layers[0]])
    assert old.is_dir() and open_run(run).projections(r.layers[0], 0) is not None
    record(run, k=5)  # new records
    r2 = open_run(run)
    assert r2.projections_folder != old and not old.exists()
    assert r2.projections(r2.layers[0], 0) is None
    record(run, k=5, projections="all")  # cached records: their projections made now
    assert all(p is not None and p["raw"].shape[0] == 5 for p in _all(open_run(run)).values())


def test_two_concurrent_requests_for_one_filter_leave_one_consistent_cache(tmp_path):
    run = make_run(tmp_path)
    record(run, k=4)
    layer = open_run(run).layers[-1]
    errors, results = [], []

    def ask():
        try:
            results.append(filter_projections(open_run(run), layer, 1))
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # and a second process asking at the same time as a third thread
    code = f"from fercore.recording.project import filter_projections\nfrom fercore.store.reader import open_run\n" \
           f"filter_projections(open_run({str(run)!r}), {layer!r}, 1)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    ask()
    assert proc.wait(120) == 0 and not errors
    final = open_run(run).projections(layer, 1)
    for res in results:
        np.testing.assert_array_equal(res["raw"], final["raw"])
    folder = open_run(run).projections_folder / layer
    assert [p.name for p in folder.iterdir()] == ["f1.h5"]  # no temporary file left


def test_a_killed_writer_leaves_the_previous_cache_readable(tmp_path):
    folder = tmp_path / "proj"
    first = np.ones((4, 5, 5), np.float32)
    write_filter_projections(folder, "features.conv1", 0, first, first * 2)
    code = textwrap.dedent(f"""
        import sys, time, h5py, numpy as np
        from fercore.store import projections_h5
        real = h5py.Group.create_dataset
        def slow(self, *a, **k):
            out = real(self, *a, **k)
            print("writing", flush=True)
            time.sleep(60)
            return out
        h5py.Group.create_dataset = slow
        big = np.zeros((4, 5, 5), np.float32) + 7
        projections_h5.write_filter_projections(__import__("pathlib").Path({str(folder)!r}), "features.conv1", 0, big, big)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"  # inside the write, on a temporary file
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    got = read_filter_projections(folder, "features.conv1", 0)
    np.testing.assert_array_equal(got["raw"], first)
    np.testing.assert_array_equal(got["distinct"], first * 2)


def test_an_unknown_filter_or_layer_is_named(tmp_path):
    run = make_run(tmp_path)
    record(run, k=4)
    r = open_run(run)
    with pytest.raises(ValueError, match="out of range"):
        ensure_projections(r, layers=[r.layers[0]], filters=[999])
    with pytest.raises(ValueError, match="not recorded"):
        ensure_projections(r, layers=["features.nope"])


def test_the_project_command(tmp_path, capsys, monkeypatch):
    from fercore.cli import main

    run = make_run(tmp_path)
    record(run, k=4)
    layer = open_run(run).layers[-1]
    assert main(["project", "--run", str(run), "--layers", layer, "--filters", "0", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "2 filters" in out and str(open_run(run).projections_folder) in out
    r = open_run(run)
    assert r.projections(layer, 0) is not None and r.projections(layer, 3) is not None
    assert r.projections(layer, 1) is None
    t0 = time.perf_counter()
    assert main(["project", "--run", str(run), "--layers", layer, "--filters", "0", "--quiet"]) == 0
    assert "0 filters" in capsys.readouterr().out and time.perf_counter() - t0 < 30
    assert os.listdir(r.projections_folder / layer)
