"""Presets: names, overrides, and a preset trained on a tiny FaceSet."""

import json

import pytest
from test_train import make_faceset

from fercore.store.faceset_h5 import save_faceset
from fercore.training.loop import TrainConfig
from fercore.training.models import ModelSpec
from fercore.training.presets import DEFAULT_PHANTOM, PRESETS, preset, resolve, train_preset


def test_every_paper_setup_is_there():
    for name in ("phantom-default", "phantom-au", "khorrami-ckplus", "khorrami-ckplus6", "khorrami-tfd",
                 "ferplus-vgg13-mv", "ferplus-vgg13-ml", "ferplus-vgg13-pld", "ferplus-vgg13-cel"):
        model, config = preset(name)
        assert "n_classes" not in model and isinstance(config, TrainConfig)
        ModelSpec(n_classes=8, **{**model, "in_size": model["in_size"] or 48})  # fields fit
    assert preset("ferplus-vgg13-pld")[1].scheme == "probability"
    assert preset("ferplus-vgg13-cel")[1].schedule == "ferplus"
    assert preset("khorrami-ckplus")[1].lr == 0.01 and preset("khorrami-ckplus")[1].augment
    assert preset("phantom-au")[0]["channels"] == (16, 32, 128) and preset("phantom-au")[1].au_weight > 0
    assert set(DEFAULT_PHANTOM) >= {"n", "size", "seed"} and DEFAULT_PHANTOM["size"] % 8 == 0
    assert all(p.description for p in PRESETS.values())


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="known: phantom-default"):
        preset("khorrami")


def test_resolve_takes_classes_and_size_from_the_data_and_applies_overrides(tmp_path):
    path = tmp_path / "f.h5"
    save_faceset(make_faceset(n=30, size=24), path)
    spec, config = resolve("phantom-default", path, epochs=2, width=0.5, folds=[0], seed=None)
    assert spec.n_classes == 3 and spec.in_size == 24 and spec.width == 0.5
    assert config.epochs == 2 and config.folds == (0,) and config.seed == preset("phantom-default")[1].seed
    with pytest.raises(ValueError, match="unknown option.*colour"):
        resolve("phantom-default", path, colour="red")


def test_train_preset_on_a_tiny_faceset(tmp_path):
    path = tmp_path / "f.h5"
    save_faceset(make_faceset(n=45), path)
    calls = []
    run = train_preset(path, epochs=1, folds=[0], root=tmp_path / "runs", progress=lambda *a: calls.append(a))
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["init"] == preset("phantom-default")[1].init and cfg["model"]["in_size"] == 16
    assert calls[-1] == (1, 1, "train")
    assert train_preset(path, epochs=1, folds=[0], root=tmp_path / "runs") == run


def test_phantom_default_trains_an_au_head_only_where_the_data_has_au_codes(tmp_path):
    from test_train import _with_aus

    plain, coded = tmp_path / "plain.h5", tmp_path / "coded.h5"
    save_faceset(make_faceset(), plain)
    save_faceset(_with_aus(make_faceset()), coded)
    spec, config = resolve("phantom-multitask", coded)
    assert config.au_weight == 1.0 and spec.n_aus == 2 and spec.channels == (8, 16, 128)
    spec, config = resolve("phantom-multitask", plain)  # no AU codes: the emotion head alone
    assert config.au_weight == 0.0 and spec.n_aus == 0
    spec, config = resolve("phantom-default", coded)  # the default learns the emotions only, as the papers
    assert config.au_weight == 0.0 and spec.n_aus == 0 and spec.channels == (8, 16, 128)
    spec, _ = resolve("phantom-default", coded, width=0.5)  # a width override scales the paper's counts
    assert spec.channels is None and spec.width == 0.5


def test_the_protocol_names_the_augmentation_that_was_used():
    from fercore.training.loop import _augment_text
    from fercore.training.presets import PRESETS

    assert _augment_text(PRESETS["cpu-real"].config).startswith("flip p 0.5, rotation +-5 deg, scale 0.9-1.1")
    assert _augment_text(PRESETS["khorrami-ckplus"].config).startswith("Khorrami")
    assert _augment_text(PRESETS["phantom-default"].config) == "none"
