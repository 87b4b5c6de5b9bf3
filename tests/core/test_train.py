"""Training: fold logic, schemes, determinism, resume after an interruption, cache hits."""

import json

import numpy as np
import pytest

from fercore.data.faceset import FaceSet
from fercore.store.faceset_h5 import save_faceset
from fercore.training.loop import TrainConfig, fold_rounds, learning_rate, train
from fercore.training.models import ModelSpec

CLASSES = ("happy", "sadness", "surprise")
SPEC = ModelSpec(arch="zero_bias", in_size=16, n_classes=3, width=0.125)
FAST = TrainConfig(epochs=3, batch_size=8, lr=0.01)


def make_faceset(n=45, size=16, k=5, seed=0, *, splits=False, targets=False, classes=CLASSES,
                 normalize="standardize") -> FaceSet:
    """Noise faces with a bright horizontal band whose height gives the class; one class per image,
    ``len(classes)`` images per subject, subjects dealt to ``k`` folds."""
    rng = np.random.default_rng(seed)
    c = len(classes)
    labels = np.arange(n) % c
    subject = np.arange(n) // c
    img = rng.normal(100, 20, (n, size, size))
    for i, y in enumerate(labels):
        r = (y * size) // c
        img[i, r:r + size // c, :] += 80
    kw = {}
    if targets:
        t = (np.eye(c, dtype=np.float32)[labels] * 0.7 + 0.1).astype(np.float32)
        t[::5] = 0  # every fifth image has no target under these schemes
        kw["targets"] = {"crossentropy": t, "probability": t, "majority": np.eye(c, dtype=np.float32)[labels] * (t.sum(1, keepdims=True) > 0),
                         "multilabel": (t > 0.5).astype(np.float32)}
    folds = subject % k
    if splits:
        sp = np.ones((n, 2), np.int8)
        sp[folds == 0, 0], sp[folds == 1, 0] = 3, 2
        sp[folds == 2, 1], sp[folds == 3, 1] = 3, 2
        kw["splits"] = sp
    return FaceSet(images=np.clip(img, 0, 255).astype(np.uint8), labels=labels, class_names=classes,
                   aus=np.zeros((n, 0)), au_ids=[], subjects=[f"S{s:03d}" for s in subject], folds=folds,
                   label_set="custom", meta={"source": "test", "preprocess": {"normalize": normalize}}, **kw)


@pytest.fixture
def fs_path(tmp_path):
    path = tmp_path / "faces.h5"
    save_faceset(make_faceset(targets=True), path)
    return path


def _metrics(run_dir):
    m = json.loads((run_dir / "metrics.json").read_text())
    for key in ("wall_s", "cpu_s", "summary"):
        m.pop(key)
    for f in m["folds"]:
        f.pop("wall_s"), f.pop("cpu_s"), f.pop("epoch_s")
    return m


# --- fold logic --------------------------------------------------------------------------------

def test_kfold_rounds_test_t_valid_next_rest_train():
    fs = make_faceset(n=60, k=5)
    fs.folds[0] = -1  # an image in no fold is never used
    fs.labels[3] = -1  # an unlabelled image is not scored
    rounds = fold_rounds(fs)
    assert [r.index for r in rounds] == [0, 1, 2, 3, 4]
    for r in rounds:
        t = r.index
        assert set(fs.folds[r.test]) == {t}
        assert set(fs.folds[r.valid]) == {(t + 1) % 5}
        assert set(fs.folds[r.train]) == set(range(5)) - {t, (t + 1) % 5}
        assert 0 not in r.train and 3 not in r.test and 3 not in r.valid
    r4 = rounds[4]
    assert set(fs.folds[r4.valid]) == {0}  # wraps round
    # every labelled image in a fold is tested exactly once
    tested = np.concatenate([r.test for r in rounds])
    assert len(tested) == len(set(tested)) == int(((fs.folds >= 0) & (fs.labels >= 0)).sum())


def test_kfold_rounds_selection_and_errors():
    fs = make_faceset(n=60, k=5)
    assert [r.index for r in fold_rounds(fs, folds=[3, 1])] == [1, 3]
    with pytest.raises(ValueError, match="out of range"):
        fold_rounds(fs, folds=[5])
    with pytest.raises(ValueError, match="at least 3 folds"):
        fold_rounds(make_faceset(n=12, k=2))


def test_fixed_splits_one_round_per_column():
    fs = make_faceset(n=60, k=5, splits=True)
    rounds = fold_rounds(fs)
    assert [r.kind for r in rounds] == ["split", "split"]
    for r, col in zip(rounds, fs.splits.T, strict=True):
        np.testing.assert_array_equal(r.train, np.flatnonzero(col == 1))
        np.testing.assert_array_equal(r.valid, np.flatnonzero(col == 2))
        np.testing.assert_array_equal(r.test, np.flatnonzero(col == 3))


def test_schedules():
    assert learning_rate(TrainConfig(lr=0.01), 50) == 0.01
    fp = TrainConfig(lr=0.05, schedule="ferplus", epochs=100)
    assert [learning_rate(fp, e) for e in (0, 19, 20, 39, 40, 99)] == pytest.approx([0.05, 0.05, 0.025, 0.025, 0.005, 0.005])
    cos = TrainConfig(lr=0.1, schedule="cosine", epochs=4)
    assert learning_rate(cos, 0) == pytest.approx(0.1) and learning_rate(cos, 2) == pytest.approx(0.05)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="TrainConfig.epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="TrainConfig.schedule"):
        TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="scheme"):
        TrainConfig(scheme="votes")
    assert TrainConfig(folds=[2, 0, 2]).folds == (0, 2)


# --- training ---------------------------------------------------------------------------------

def test_train_writes_a_complete_run(tmp_path):
    fs_path = tmp_path / "faces.h5"
    save_faceset(make_faceset(n=60), fs_path)
    calls = []
    spec = ModelSpec(arch="zero_bias", in_size=16, n_classes=3, width=0.125, init_seed=1)
    run = train(fs_path, spec, TrainConfig(epochs=6, batch_size=8, lr=0.01, folds=[0, 1], seed=1),
                root=tmp_path / "runs", progress=lambda d, t, s: calls.append((d, t, s)))
    assert run.parent == tmp_path / "runs" and run.name.startswith("faces-zero_bias-hard-")
    assert calls[-1] == (12, 12, "train") and [c[0] for c in calls] == list(range(1, 13))
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["normalize"] == "standardize" and cfg["preprocess"] == {"normalize": "standardize"}
    assert cfg["faceset"]["class_names"] == list(CLASSES) and cfg["model"]["width"] == 0.125
    assert cfg["train"]["folds"] == [0, 1]
    m = json.loads((run / "metrics.json").read_text())
    assert [f["fold"] for f in m["folds"]] == [0, 1]
    assert m["protocol"]["subject_independent"] is True
    assert m["protocol"]["label_scheme"] == "hard" and m["protocol"]["n_images"] == 60
    assert np.array(m["confusion"]).sum() == sum(f["n_test"] for f in m["folds"])
    for f in m["folds"]:
        assert len(f["curves"]["val_acc"]) == 6
        assert f["best_val_acc"] == max(f["curves"]["val_acc"])
        assert f["best_epoch"] == 1 + f["curves"]["val_acc"].index(f["best_val_acc"])
    # the task is easy: the loss goes down and the test accuracy is well above chance
    assert m["folds"][0]["curves"]["train_loss"][-1] < m["folds"][0]["curves"]["train_loss"][0]
    assert m["mean_test_acc"] > 0.6
    assert sorted(p.name for p in (run / "weights").iterdir()) == ["fold0.pt", "fold1.pt"]
    assert not (run / "ckpt").exists()


def test_best_validation_weights_are_saved_as_a_plain_state_dict(fs_path, tmp_path):
    import torch

    run = train(fs_path, SPEC, TrainConfig(epochs=2, batch_size=8, folds=[0]), root=tmp_path)
    state = torch.load(run / "weights" / "fold0.pt", weights_only=True)
    assert set(state) >= {"features.conv1.weight", "classifier.fc2.weight"}


def test_same_seed_same_metrics(fs_path, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=8, lr=0.01, folds=[0, 2], augment=True, seed=7)
    a = train(fs_path, SPEC, cfg, root=tmp_path / "a")
    b = train(fs_path, SPEC, cfg, root=tmp_path / "b")
    assert _metrics(a) == _metrics(b)
    c = train(fs_path, SPEC, TrainConfig(epochs=2, batch_size=8, lr=0.01, folds=[0, 2], augment=True, seed=8),
              root=tmp_path / "a")
    assert c != a  # another seed is another run
    assert _metrics(c)["folds"][0]["curves"] != _metrics(a)["folds"][0]["curves"]


def test_cache_hit_trains_nothing(fs_path, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=8, folds=[1])
    run = train(fs_path, SPEC, cfg, root=tmp_path)
    mtime = (run / "metrics.json").stat().st_mtime_ns
    weights = (run / "weights" / "fold1.pt").stat().st_mtime_ns

    def fail(*a):
        raise AssertionError("progress called on a cache hit")

    assert train(fs_path, SPEC, cfg, root=tmp_path, progress=fail) == run
    assert (run / "metrics.json").stat().st_mtime_ns == mtime
    assert (run / "weights" / "fold1.pt").stat().st_mtime_ns == weights


class Stop(Exception):
    pass


def test_interrupted_run_resumes_and_matches(fs_path, tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=8, lr=0.01, folds=[0, 1], augment=True, seed=3)
    whole = train(fs_path, SPEC, cfg, root=tmp_path / "whole")

    def stop_after(n):
        def progress(done, total, stage):
            if done >= n:
                raise Stop
        return progress

    root = tmp_path / "cut"
    with pytest.raises(Stop):  # stops after fold 0 and one epoch of fold 1
        train(fs_path, SPEC, cfg, root=root, progress=stop_after(4))
    run = root / whole.name
    assert (run / "folds" / "fold0.json").exists() and (run / "ckpt" / "fold1.pt").exists()
    assert not (run / "metrics.json").exists()
    seen = []
    train(fs_path, SPEC, cfg, root=root, progress=lambda d, t, s: seen.append(d))
    assert seen == [3, 4, 5, 6]  # fold 0 and the first epoch of fold 1 were not redone
    assert _metrics(run) == _metrics(whole)


def test_schemes_read_targets_and_drop_empty_rows(fs_path, tmp_path):
    fs = make_faceset(targets=True)
    train_idx = fold_rounds(fs, folds=[0])[0].train
    kept = int((fs.targets["crossentropy"][train_idx].sum(1) > 0).sum())
    assert 0 < kept < len(train_idx)
    for scheme in ("majority", "multilabel", "probability", "crossentropy"):
        run = train(fs_path, SPEC, TrainConfig(epochs=1, batch_size=8, scheme=scheme, folds=[0]), root=tmp_path)
        m = json.loads((run / "metrics.json").read_text())
        assert m["folds"][0]["n_train"] == kept
        assert m["protocol"]["label_scheme"] == scheme and run.name.split("-")[2] == scheme


def test_scheme_without_targets_says_what_to_do(tmp_path):
    path = tmp_path / "plain.h5"
    save_faceset(make_faceset(), path)
    with pytest.raises(ValueError, match=r"no targets\['crossentropy'\].*--scheme hard"):
        train(path, SPEC, TrainConfig(epochs=1, scheme="crossentropy"), root=tmp_path)


def test_class_count_mismatch_is_reported(fs_path, tmp_path):
    with pytest.raises(ValueError, match="n_classes is 7 but .* has 3 classes"):
        train(fs_path, ModelSpec(in_size=16, n_classes=7, width=0.125), FAST, root=tmp_path)


def test_missing_faceset_is_reported(tmp_path):
    with pytest.raises(ValueError, match="no such FaceSet file"):
        train(tmp_path / "nope.h5", SPEC, FAST, root=tmp_path)


def test_fixed_split_training_and_resizing(tmp_path):
    path = tmp_path / "split.h5"
    save_faceset(make_faceset(n=60, size=24, splits=True), path)  # 24 px images into a 16 px model
    run = train(path, SPEC, TrainConfig(epochs=2, batch_size=8), root=tmp_path)
    m = json.loads((run / "metrics.json").read_text())
    assert [f["fold"] for f in m["folds"]] == [0, 1]
    assert "predefined" in m["protocol"]["folds"]


def test_normalisation_comes_from_the_faceset(tmp_path):
    path = tmp_path / "lm.h5"
    save_faceset(make_faceset(normalize="local_mean"), path)
    run = train(path, SPEC, TrainConfig(epochs=1, batch_size=8, folds=[0]), root=tmp_path)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["normalize"] == "local_mean" and cfg["preprocess"] == {"normalize": "local_mean"}


def test_unit_variance_init_gives_unit_std_layer_outputs():
    import torch

    from fercore.training.inputs import to_input
    from fercore.training.loop import unit_variance_init
    from fercore.training.models import build_model

    fs = make_faceset(n=30)
    x = to_input(fs.images, in_size=16, method="standardize")
    model = build_model(SPEC)
    before = model.classifier.fc2.weight.clone()
    unit_variance_init(model, x)
    outs = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: outs.__setitem__(n, o))
             for n, m in model.named_modules() if n in ("features.conv1", "features.conv3")]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    assert all(abs(float(o.std()) - 1) < 1e-3 for o in outs.values())
    with torch.no_grad():
        pre = torch.flatten(model.features(x), 1) @ model.classifier.fc1.weight.T
    assert abs(float(pre.std()) - 1) < 1e-3
    assert torch.equal(model.classifier.fc2.weight, before)  # the output layer is left alone
    assert torch.all(model.classifier.fc1.bias == 1.0)


# --- multi-task: emotion + AU presence ---------------------------------------------------------

def _with_aus(fs: FaceSet) -> FaceSet:
    """Two AUs: AU12 present on the first class, AU4 coded only on odd images (NaN elsewhere)."""
    n = len(fs)
    aus = np.zeros((n, 2), np.float32)
    aus[:, 0] = np.where(fs.labels == 0, 3, 0)
    aus[::2, 1] = np.nan
    aus[1::4, 1] = 2
    fs.aus, fs.au_ids = aus, np.array([12, 4])
    return fs


def test_au_loss_is_the_mean_bce_over_coded_entries():
    import torch

    from fercore.training.loop import au_loss

    logits = torch.tensor([[0.0, 2.0], [-1.0, 3.0]])
    present = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    coded = torch.tensor([[True, True], [True, False]])
    bce = lambda z, y: -(y * np.log(1 / (1 + np.exp(-z))) + (1 - y) * np.log(1 - 1 / (1 + np.exp(-z))))  # noqa: E731
    want = (bce(0.0, 1) + bce(2.0, 0) + bce(-1.0, 0)) / 3
    assert float(au_loss(logits, present, coded)) == pytest.approx(want, rel=1e-6)
    assert float(au_loss(logits, present, torch.zeros_like(coded))) == 0.0


def test_emotion_only_specs_and_configs_keep_their_hash_keys():
    assert "n_aus" not in SPEC.to_dict() and "au_weight" not in FAST.to_dict()
    assert ModelSpec(in_size=16, n_aus=3).to_dict()["n_aus"] == 3
    assert TrainConfig(au_weight=0.5).to_dict()["au_weight"] == 0.5
    with pytest.raises(ValueError, match="au_weight"):
        TrainConfig(au_weight=-1)


def test_au_head_trains_with_the_emotion_and_reports_test_auc(tmp_path):
    import torch

    from fercore.training.models import build_model
    from fercore.training.presets import resolve

    path = tmp_path / "faces.h5"
    save_faceset(_with_aus(make_faceset(n=60)), path)
    spec, config = resolve("phantom-default", path, width=0.125, epochs=4, batch_size=8, folds=(0,), au_weight=1.0)
    assert spec.n_aus == 2 and config.au_weight == 1.0
    run = train(path, spec, config, root=tmp_path / "runs")
    m = json.loads((run / "metrics.json").read_text())
    assert "AU presence" in m["protocol"]["targets"] and "AU presence" in m["summary"]
    auc = m["folds"][0]["au_test_auc"]
    assert set(auc) == {"AU12", "AU4"} and auc["AU12"] > 0.8  # AU12 marks the first class: easy
    assert m["mean_au_test_auc"]["AU12"] == auc["AU12"]
    model = build_model(spec)
    model.load_state_dict(torch.load(run / "weights" / "fold0.pt", weights_only=True))
    x = torch.zeros(5, 1, 16, 16)
    logits, au = model.forward_aus(x)
    assert model(x).shape == logits.shape == (5, 3) and au.shape == (5, 2)


def test_au_weight_without_au_labels_says_what_to_do(fs_path, tmp_path):
    spec = ModelSpec(arch="zero_bias", in_size=16, n_classes=3, width=0.125, n_aus=2)
    with pytest.raises(ValueError, match="needs AU labels.*au_weight 0"):
        train(fs_path, spec, TrainConfig(epochs=1, au_weight=1.0), root=tmp_path)
