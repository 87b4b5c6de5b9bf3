import threading

import numpy as np
import pytest
from test_record import make_faceset, make_run

from fercore.analysis.analyze import analyze
from fercore.cli import main
from fercore.recording.record import record
from fercore.store.reader import TopK, open_run
from fercore.training.models import layer_geometry, load_model


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("reader"), make_faceset(n=45))
    record(run, k=6, batch_size=16)
    analyze(run, null=None)
    return run


def test_reader_surface(run):
    r = open_run(run)
    assert r.has_records and r.records_error is None and r.has_stats
    assert r.name == run.name and r.config["name"] == run.name and r.metrics is None
    assert r.class_names == ("neutral", "happy", "surprise")
    assert r.au_ids.tolist() == [1, 12, 25]
    assert r.layers == ["features.conv1", "features.conv2", "features.conv3"]
    model = load_model(run)
    for layer in r.layers:
        nf = r.n_filters(layer)
        assert r.geometry(layer) == layer_geometry(model, layer)
        ma = r.max_activations(layer)
        assert ma.shape == (45, nf) and ma.dtype == np.float16
        t = r.topk(layer, nf - 1)
        assert isinstance(t, TopK) and t.index.shape == (6,) and t.box.shape == (6, 4)
        rf = r.geometry(layer).rf
        assert t.patch.shape == (6, rf, rf) and t.patch.dtype == np.uint8
        assert t.deconv is None or t.deconv.shape == (6, rf, rf)  # made on demand
        from fercore.recording.project import filter_projections

        proj = filter_projections(r, layer, nf - 1)
        assert proj["raw"].shape == (6, rf, rf) and proj["raw"].dtype == np.float32
        t = r.topk(layer, nf - 1)
        np.testing.assert_array_equal(t.deconv, proj["raw"])
        np.testing.assert_allclose(t.activation, ma[t.index, nf - 1].astype(np.float32), rtol=2e-3, atol=2e-3)
        d = r.topk(layer, 0, distinct=True)
        groups = r.faceset().groups[d.index[d.index >= 0]]
        assert len(set(groups)) == len(groups)
        ev = r.evidence(layer)
        for name in ("share_raw", "share_distinct", "expected", "excess", "p_emotion", "q_emotion", "r_au",
                     "r_partial", "spatial_distinct", "raw", "distinct", "beyond_emotion", "spatial", "stage"):
            assert ev[name].shape == (nf, 3), name
        assert ev["kl"].shape == (nf,) and ev["base_rate"].shape == (3,) and ev["judged"].shape == (nf,)
        assert sorted(ev["order_evidence"].tolist()) == list(range(nf)) == sorted(ev["order_cluster"].tolist())
        arrays = r.topk_arrays(layer, distinct=True)
        np.testing.assert_array_equal(arrays["index"][0], d.index)
    fs = r.faceset()
    assert len(fs) == 45
    assert r.analysis_arrays()["au_cooc"].shape == (3, 3)
    assert r.summary()["layers"][0]["layer"] == "features.conv1"


def test_reader_errors_name_the_problem(run, tmp_path):
    r = open_run(run)
    with pytest.raises(ValueError, match="recorded: features.conv1"):
        r.topk("features.nope", 0)
    with pytest.raises(ValueError, match="out of range"):
        r.topk("features.conv1", 10_000)
    bare = make_run(tmp_path)
    rb = open_run(bare)
    assert not rb.has_records and "records.h5 missing" in rb.records_error and "fercore record" in rb.records_error
    assert not rb.is_stale()
    (bare / "records.h5").write_bytes(b"not hdf5")
    assert rb.is_stale()
    rb = open_run(bare)
    assert not rb.has_records and "corrupt" in rb.records_error
    with pytest.raises(FileNotFoundError):
        rb.max_activations("features.conv1")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        open_run(tmp_path / "missing-run")


def test_reader_is_thread_safe(run):
    """Six threads read every array of every layer through one reader at once; each gets exactly
    what a fresh reader reads alone."""
    r = open_run(run)
    want = {}
    fresh = open_run(run)
    for layer in fresh.layers:
        want[layer] = (fresh.topk(layer, 1).patch.copy(), fresh.evidence(layer)["share_distinct"].copy(),
                       fresh.max_activations(layer).copy())
    errors, got = [], {}
    barrier = threading.Barrier(6)

    def work(i):
        try:
            barrier.wait()
            for layer in r.layers[::(1 if i % 2 else -1)]:
                got[(i, layer)] = (r.topk(layer, 1).patch, r.evidence(layer)["share_distinct"],
                                   r.max_activations(layer))
        except Exception as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(got) == 6 * len(r.layers)
    for (_, layer), arrays in got.items():
        for a, b in zip(arrays, want[layer], strict=True):
            np.testing.assert_array_equal(a, b)


def test_cli_record_and_analyze_write_csv(run, tmp_path, capsys):
    out = tmp_path / "table.csv"
    assert main(["record", "--run", str(run), "--k", "6", "--quiet"]) == 0
    assert main(["analyze", "--run", str(run), "--csv", str(out), "--quiet"]) == 0
    text = out.read_text()
    assert text.startswith("layer,filter,AU,AU name,stage reached,verdict,raw top-K share")
    printed = capsys.readouterr().out
    assert "AU-selective filters" in printed and "null network: untrained" in printed
    assert (run / "null" / "untrained" / "records.h5").exists()  # analyze built the null
    assert main(["record", "--run", str(tmp_path / "nope"), "--quiet"]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["record", "--run", str(run), "--k", "0", "--quiet"]) == 2


def test_refresh_records_keeps_the_k_and_layers_a_user_recorded(tmp_path):
    from fercore.pipeline import refresh_records
    from fercore.store.records_h5 import read_records_header

    run = make_run(tmp_path, make_faceset(n=30))
    record(run, k=5, layers=["features.conv1"], batch_size=16)
    refresh_records(run, null=None)
    head = read_records_header(run / "records.h5")
    assert head["k"] == 5 and head["layers"] == ["features.conv1"]
    assert open_run(run).has_stats


def test_the_runs_command_that_messages_name_exists(tmp_path, capsys, monkeypatch):
    from fercore.store.layout import RunError, load_config

    monkeypatch.setenv("FERCORE_CACHE", str(tmp_path))
    with pytest.raises(RunError, match="python -m fercore runs") as err:
        load_config(tmp_path / "nope")
    command = str(err.value).split("`")[1].split()[3:]  # "python -m fercore runs" -> ["runs"]
    assert main(command) == 0
    assert "no runs in" in capsys.readouterr().out
    run = make_run(tmp_path / "runs", make_faceset(n=30))
    assert main(["runs"]) == 0
    assert run.name in capsys.readouterr().out
