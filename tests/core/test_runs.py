"""Reading runs back (list, config, metrics, model), cross-data-set evaluation, and the CLI."""

import json

import numpy as np
import pytest
import torch
from test_train import SPEC, make_faceset

from fercore.cli import main
from fercore.store.faceset_h5 import save_faceset
from fercore.store.layout import RunError, list_runs, load_config, load_metrics, run_faceset_path
from fercore.training.evaluate import evaluate_run, label_mapping
from fercore.training.inputs import to_input
from fercore.training.loop import TrainConfig, train
from fercore.training.models import FERNet, load_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    path = tmp / "faces.h5"
    save_faceset(make_faceset(n=45), path)
    run = train(path, SPEC, TrainConfig(epochs=2, batch_size=8, folds=[1, 2]), root=tmp / "runs")
    return path, run


def test_list_and_load(trained):
    path, run = trained
    (run.parent / "not-a-run").mkdir()
    infos = list_runs(run.parent)
    assert [i.name for i in infos] == [run.name]
    info = infos[0]
    assert info.dataset == "faces" and info.arch == "zero_bias" and info.complete
    assert info.mean_acc == load_metrics(run)["mean_test_acc"]
    assert load_config(run)["faceset"]["path"] == str(path.resolve())
    assert run_faceset_path(run) == path.resolve()
    assert list_runs(run.parent / "nothing-here") == []


def test_load_model_gives_the_saved_weights_in_eval_mode(trained):
    _, run = trained
    model = load_model(run)  # first trained round: 1
    assert isinstance(model, FERNet) and not model.training
    saved = torch.load(run / "weights" / "fold1.pt", weights_only=True)
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    other = load_model(run, fold=2)
    assert not torch.equal(other.features.conv1.weight, model.features.conv1.weight)
    with pytest.raises(RunError, match=r"fold 0 has no weights; trained folds: \[1, 2\]"):
        load_model(run, fold=0)


def test_model_reproduces_the_recorded_test_accuracy(trained):
    path, run = trained
    from fercore.store.faceset_h5 import load_faceset
    from fercore.training.loop import fold_rounds

    fs = load_faceset(path)
    test = fold_rounds(fs, folds=[1])[0].test
    x = to_input(fs.images[test], in_size=16, method=load_config(run)["normalize"])
    with torch.inference_mode():
        acc = float((load_model(run, 1)(x).argmax(1).numpy() == fs.labels[test]).mean())
    assert acc == pytest.approx(load_metrics(run)["folds"][0]["test_acc"])


def test_missing_and_corrupt_runs_are_reported(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        load_config(tmp_path / "nope")
    (tmp_path / "bad").mkdir()
    with pytest.raises(RunError, match="no config.json"):
        load_config(tmp_path / "bad")
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(RunError, match="damaged config.json"):
        load_config(tmp_path / "bad")
    assert issubclass(RunError, ValueError)


def test_corrupt_weights_are_reported(trained, tmp_path):
    import shutil

    _, run = trained
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    (copy / "weights" / "fold1.pt").write_bytes(b"garbage")
    with pytest.raises(RunError, match="unreadable weights"):
        load_model(copy, 1)


def test_label_mapping_through_canonical_names():
    m = label_mapping(("neutral", "happy", "contempt"), ("HA", "NE", "SU"))  # JAFFE codes
    assert m["pairs"] == [(0, 1, "happy"), (1, 0, "neutral")]
    assert m["data_unmatched"] == ["SU"] and m["run_unmatched"] == ["contempt"]


def test_evaluate_on_the_training_faceset_reproduces_the_protocol(trained):
    path, run = trained
    result = evaluate_run(run, path)
    assert result["same_faceset_as_training"]
    metrics = load_metrics(run)
    assert [f["accuracy"] for f in result["per_fold"]] == pytest.approx([f["test_acc"] for f in metrics["folds"]])
    assert result["confusion"] == metrics["confusion"]
    assert (run / f"eval-{result['data']['content_hash'][:8]}.json").exists()


def test_evaluate_on_another_label_set(trained, tmp_path):
    _, run = trained
    other = make_faceset(n=24, seed=5, classes=("HA", "SA", "AN"))  # JAFFE: happy, sadness, anger
    other.label_set = "jaffe"
    path = tmp_path / "other.h5"
    save_faceset(other, path)
    result = evaluate_run(run, path, fold=2)
    assert [(m["data_class"], m["run_class"]) for m in result["mapping"]] == [("HA", "happy"), ("SA", "sadness")]
    assert result["excluded_data_classes"] == {"AN": 8}
    assert result["run_classes_not_predicted"] == ["surprise"]
    assert result["n_images"] == 16
    conf = np.array(result["confusion"])
    assert conf.sum() == 16 and conf[2].sum() == 0 and conf[:, 2].sum() == 0
    saved = json.loads((run / f"eval-{result['data']['content_hash'][:8]}-fold2.json").read_text())
    assert saved["accuracy"] == result["accuracy"]


def test_evaluate_with_no_common_class_says_so(trained, tmp_path):
    _, run = trained
    other = make_faceset(n=12, classes=("AN", "DI", "FE"))
    path = tmp_path / "none.h5"
    save_faceset(other, path)
    with pytest.raises(ValueError, match="none of its classes"):
        evaluate_run(run, path, write=False)


def test_cli_train_then_evaluate(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FERCORE_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "cli.h5"
    save_faceset(make_faceset(n=45), path)
    argv = ["train", "--data", str(path), "--width", "0.125", "--size", "16", "--epochs", "1", "--folds", "2",
            "--batch-size", "8", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "round 0: test" in out and "round 1: test" in out and "subject-independent" in out
    run = next((tmp_path / "cache" / "runs").iterdir())
    assert str(run) in out
    assert main(["evaluate", "--run", run.name, "--data", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "happy -> happy" in out and "accuracy" in out and "eval-" in out


def test_cli_reports_bad_input_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FERCORE_CACHE", str(tmp_path / "cache"))
    assert main(["train", "--data", str(tmp_path / "missing.h5"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no such FaceSet file" in err and err.count("\n") == 1


def test_evaluate_warns_about_copies_of_the_training_faces_and_other_crops(trained, tmp_path):
    """A copy of the training faces scored as a new data set is named; so is a data set whose
    faces sit elsewhere in the crop."""
    from pathlib import Path

    from fercore.store.faceset_h5 import load_faceset as load
    from fercore.training.evaluate import transfer_warnings

    train_path, run = trained
    fs = load(train_path)
    copy = fs.subset(np.arange(len(fs)))
    copy.folds = (copy.folds + 1) % 3  # another file: another content hash
    other = tmp_path / "copy.h5"
    save_faceset(copy, other)
    result = evaluate_run(run, other, write=False)
    assert not result["same_faceset_as_training"]
    assert any("copies of the run's training images" in w for w in result["warnings"])
    shifted = fs.subset(np.arange(len(fs)))
    shifted.meta = {**fs.meta, "geometry": {"crop": "box", "template": [[0.2, 0.3], [0.8, 0.3], [0.5, 0.9]]}}
    assert Path(train_path).exists()
    train = load(train_path)
    train.meta = {**train.meta, "geometry": {"crop": "canonical", "template": [[0.32, 0.39], [0.68, 0.39], [0.5, 0.78]]}}
    save_faceset(train, tmp_path / "train.h5")
    warnings = transfer_warnings(tmp_path / "train.h5", shifted)
    assert any("cropped differently" in w for w in warnings)
