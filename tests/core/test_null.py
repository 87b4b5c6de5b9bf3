"""Null networks and the run summary, on a tiny hand-made run recorded for real."""

import json
import os

import numpy as np
import pytest
import torch

from fercore.analysis.nulls import NULL_SEED_OFFSET, ensure_null
from fercore.data.faceset import FaceSet
from fercore.recording.record import record
from fercore.store.faceset_h5 import save_faceset
from fercore.store.layout import null_dir
from fercore.training.models import ModelSpec, build_model


def _faceset(n_seq=24, per=3, size=16, seed=0):
    """Noise faces in sequences of three near-identical frames; AU 12 follows class 1 loosely."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(n_seq, size, size)).astype(np.int16)
    images = np.repeat(base, per, axis=0) + rng.integers(-3, 4, size=(n_seq * per, size, size))
    images = np.clip(images, 0, 255).astype(np.uint8)
    labels = np.repeat(np.arange(n_seq) % 3, per)
    aus = np.zeros((n_seq * per, 2), np.float32)
    aus[:, 0] = np.repeat(((np.arange(n_seq) % 3 == 1) ^ (rng.random(n_seq) < 0.2)) * 2.0, per)
    aus[:, 1] = np.repeat((rng.random(n_seq) < 0.3) * 1.0, per)
    return FaceSet(
        images=images, labels=labels, class_names=("neutral", "happy", "surprise"), aus=aus, au_ids=[12, 4],
        subjects=np.repeat([f"s{i % 6}" for i in range(n_seq)], per), folds=np.repeat(np.arange(n_seq) % 3, per),
        sequences=np.repeat([f"q{i}" for i in range(n_seq)], per), meta={"preprocess": {"normalize": "standardize"}},
    )


def _make_run(root):
    fs = _faceset()
    fs_path = root / "faces.h5"
    digest = save_faceset(fs, fs_path)
    run = root / "runs" / "tiny-run-abcdef12"
    (run / "weights").mkdir(parents=True)
    model = build_model(ModelSpec(arch="zero_bias", in_size=16, n_classes=3, width=0.1, init_seed=0))
    torch.save(model.state_dict(), run / "weights" / "fold0.pt")
    cfg = {"run_hash": "abcdef12" * 8, "name": run.name, "class_names": list(fs.class_names),
           "faceset": {"path": str(fs_path), "content_hash": digest}, "model": model.spec.to_dict(),
           "train": {"epochs": 1, "batch_size": 16}, "normalize": "standardize"}
    (run / "config.json").write_text(json.dumps(cfg))
    return run


@pytest.fixture
def run_dir(tmp_path):
    """A run as training writes it (config.json, weights/fold0.pt), not yet recorded."""
    return _make_run(tmp_path)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A run recorded with k=6, and its untrained null (built once for the module)."""
    run = _make_run(tmp_path_factory.mktemp("null"))
    record(run, k=6)
    from fercore.analysis.analyze import analyze

    analyze(run)  # builds, records and analyses the untrained null
    return run


def test_null_without_records_says_what_to_run(run_dir):
    with pytest.raises(FileNotFoundError, match="fercore record"):
        ensure_null(run_dir)


def test_untrained_null_is_same_architecture_other_seed_same_data_and_cached(recorded):
    from fercore.store.reader import open_run

    run_dir = recorded
    out = ensure_null(run_dir)
    assert out == null_dir(run_dir) and open_run(out).has_records
    cfg = json.loads((out / "config.json").read_text())
    run_cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["null"] == "untrained"
    assert cfg["model"]["init_seed"] == run_cfg["model"]["init_seed"] + NULL_SEED_OFFSET
    assert {k: v for k, v in cfg["model"].items() if k != "init_seed"} == \
        {k: v for k, v in run_cfg["model"].items() if k != "init_seed"}
    a = torch.load(run_dir / "weights" / "fold0.pt", weights_only=True)
    b = torch.load(out / "weights" / "fold0.pt", weights_only=True)
    assert a.keys() == b.keys() and not torch.equal(a["features.conv1.weight"], b["features.conv1.weight"])
    r, n = open_run(run_dir), open_run(out)
    assert n.header["faceset_hash"] == r.header["faceset_hash"]
    assert n.header["k"] == r.header["k"] and n.layers == r.layers
    stamp = os.stat(out / "records.h5").st_mtime_ns
    assert ensure_null(run_dir) == out
    assert os.stat(out / "records.h5").st_mtime_ns == stamp  # cached


def test_distinct_topk_in_records_never_holds_two_frames_of_one_sequence(recorded):
    from fercore.store.reader import open_run

    for d in (recorded, ensure_null(recorded)):
        reader = open_run(d)
        seq = reader.faceset().sequences
        for layer in reader.layers:
            for f in range(reader.n_filters(layer)):
                idx = reader.topk(layer, f, distinct=True).index
                idx = idx[idx >= 0]
                assert len(set(seq[idx])) == len(idx)


def test_summary_gives_the_funnel_of_every_layer_beside_the_null(recorded, capsys):
    from fercore.analysis.criteria import STAGES
    from fercore.analysis.summary import format_summary, summary_dict
    from fercore.cli import main
    from fercore.store.reader import open_run

    run_dir = recorded
    s = summary_dict(run_dir)
    reader = open_run(run_dir)
    assert [r["layer"] for r in s["layers"]] == reader.layers
    assert s["null"] == "untrained" and s["n_images"] == 72 and s["n_groups"] == 24
    assert s["n_units"] == 24  # the three frames of a sequence carry one code: one unit
    for row in s["layers"]:
        counts = [row["stages"][st]["filters"] for st in STAGES]
        assert counts == sorted(counts, reverse=True)  # a funnel
        assert set(row["null_stages"]) == set(STAGES)
        assert 1 <= row["groups_in_topk"] <= s["k"]
        assert row["stages"]["raw"]["expected_false"] == row["null_stages"]["raw"]["filters"]
    ev = reader.evidence(reader.layers[0])
    assert ev["raw"].shape == (reader.n_filters(reader.layers[0]), 2)
    assert set(ev["null"]) >= {"share_distinct", "excess"}
    text = format_summary(s)
    for layer in reader.layers:
        assert layer in text
    assert "beyond emotion" in text and "null network: untrained" in text
    capsys.readouterr()
    assert main(["summary", "--run", str(run_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(s))


def test_unknown_null_kind_is_refused(run_dir):
    with pytest.raises(ValueError, match="untrained, shuffled"):
        ensure_null(run_dir, kind="random")


def test_shuffled_null_trains_on_permuted_labels_and_records_on_the_run_data(recorded):
    from fercore.analysis.nulls import SHUFFLE_SEED
    from fercore.store.faceset_h5 import load_faceset
    from fercore.store.reader import open_run

    out = ensure_null(recorded, kind="shuffled")
    assert out == null_dir(recorded, "shuffled")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["null"] == "shuffled" and cfg["rounds"] == [0]
    shuffled = load_faceset(out.parent / "shuffled-faceset.h5")
    original = _faceset()
    perm = np.random.default_rng(SHUFFLE_SEED).permutation(len(original))
    np.testing.assert_array_equal(shuffled.labels, original.labels[perm])
    np.testing.assert_array_equal(shuffled.images, original.images)
    r, n = open_run(recorded), open_run(out)
    assert n.header["faceset_hash"] == r.header["faceset_hash"]  # recorded on the run's own data
    stamp = os.stat(out / "records.h5").st_mtime_ns
    assert ensure_null(recorded, kind="shuffled") == out
    assert os.stat(out / "records.h5").st_mtime_ns == stamp


def test_analysis_without_a_null_builds_none(run_dir):
    from fercore.analysis.analyze import analyze
    from fercore.analysis.summary import format_summary, summary_dict

    record(run_dir, k=4, layers=["features.conv1"])
    analyze(run_dir, null=None)
    s = summary_dict(run_dir)
    assert s["null"] == "" and not (run_dir / "null").exists()
    assert "null_stages" not in s["layers"][0] and s["layers"][0]["stages"]["raw"]["expected_false"] is None
    assert "null network: none" in format_summary(s)


def test_permuted_null_of_a_run_trained_here_keeps_each_tensors_values(recorded):
    """The permuted null works on fercore's own networks too: every weight tensor holds the run's
    values in another order, and it is recorded on the same data and cached."""
    from fercore.analysis.nulls import permute_weights, reestimate_batchnorm
    from fercore.store.reader import open_run

    out = ensure_null(recorded, kind="permuted")
    assert out == null_dir(recorded, "permuted") and open_run(out).header["k"] == open_run(recorded).header["k"]
    a = torch.load(recorded / "weights" / "fold0.pt", weights_only=True)
    b = torch.load(out / "weights" / "fold0.pt", weights_only=True)
    for key in a:
        assert not torch.equal(a[key], b[key]) or a[key].numel() < 2 or a[key].unique().numel() == 1, key
        torch.testing.assert_close(a[key].flatten().sort().values, b[key].flatten().sort().values)
    stamp = os.stat(out / "records.h5").st_mtime_ns
    assert ensure_null(recorded, kind="permuted") == out
    assert os.stat(out / "records.h5").st_mtime_ns == stamp
    # batch norm: running statistics are not permuted but estimated again, to the data's moments
    bn = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    bn[1].running_var.fill_(7.0)
    permute_weights(bn)
    x = [torch.randn(16, 1, 8, 8) * 3 + 1 for _ in range(4)]
    assert reestimate_batchnorm(bn, x) == 1 and not bn.training
    h = bn[0](torch.cat(x))
    torch.testing.assert_close(bn[1].running_mean, h.mean((0, 2, 3)), atol=1e-4, rtol=1e-4)
    # the mean of the batches' (unbiased) variances: the pooled variance up to the batch means' spread
    torch.testing.assert_close(bn[1].running_var, h.var((0, 2, 3)), atol=1e-3, rtol=5e-2)
    assert not torch.allclose(bn[1].running_var, torch.full((4,), 7.0))
