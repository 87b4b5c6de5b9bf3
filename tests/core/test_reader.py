import threading

import numpy as np
import pytest
from test_record import make_faceset, make_run

from fercore.analysis.estimators import analyze
from fercore.cli import main
from fercore.recording.record import record
from fercore.store.reader import AUStats, TopK, open_run
from fercore.training.models import layer_geometry, load_model


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("reader"), make_faceset(n=45))
    record(run, k=6, batch_size=16)
    analyze(run)
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
        assert t.deconv.shape == (6, rf, rf) and t.deconv.dtype == np.float32
        np.testing.assert_allclose(t.activation, ma[t.index, nf - 1].astype(np.float32), rtol=2e-3, atol=2e-3)
        d = r.topk(layer, 0, distinct=True)
        groups = r.faceset().groups[d.index[d.index >= 0]]
        assert len(set(groups)) == len(groups)
        s = r.au_stats(layer)
        assert isinstance(s, AUStats)
        for name in AUStats.STATS:
            assert getattr(s, name).shape == (nf, 3)
        assert s.kl.shape == (nf,) and s.base_rate.shape == (3,) and s.au_cooc.shape == (3, 3)
    fs = r.faceset()
    assert len(fs) == 45
    rows = r.match_table("features.conv3")
    assert rows and set(rows[0]) == {"layer", "filter", "au", "au_name", "topk_share", "kl", "corr",
                                     "corr_within", "qval", "spatial"}
    csv = r.match_csv("features.conv3")
    assert csv.splitlines()[0].startswith("layer,filter,au,au_name") and len(csv.splitlines()) == len(rows) + 1


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
    r = open_run(run)
    errors = []

    def work(i):
        try:
            for layer in r.layers:
                r.topk(layer, i % 4)
                r.au_stats(layer)
        except Exception as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_cli_record_and_analyze_write_csv(run, tmp_path, capsys):
    out = tmp_path / "table.csv"
    assert main(["record", "--run", str(run), "--k", "6", "--quiet"]) == 0
    assert main(["analyze", "--run", str(run), "--csv", str(out), "--quiet"]) == 0
    text = out.read_text()
    assert text.startswith("layer,filter,au,au_name,topk_share")
    printed = capsys.readouterr().out
    assert "AU-selective filters" in printed and "null network: untrained" in printed
    assert (run / "null" / "untrained" / "records.h5").exists()  # the summary built the null
    assert main(["record", "--run", str(tmp_path / "nope"), "--quiet"]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["record", "--run", str(run), "--k", "0", "--quiet"]) == 2
