"""A researcher's own network: import in every format, record, evaluate, analyse with its null,
receptive fields and guided backpropagation of any network, and every bad input named."""

from __future__ import annotations

import json
from pathlib import Path

import foreign_nets
import h5py
import numpy as np
import pytest
import torch

from fercore.analysis.summary import format_summary
from fercore.recording.fields import measure_geometry
from fercore.recording.hooks import hook_count
from fercore.store.layout import list_runs, load_config
from fercore.store.reader import open_run
from fercore.training.formats import ModelFileError, load_module
from fercore.training.imported import import_model, map_classes
from fercore.training.models import ModelSpec, build_model, conv_layers, layer_geometry
from fercore.training.network import load_imported

NAMES = list(foreign_nets.NETS)


# ------------------------------------------------------------------------------- formats
@pytest.mark.parametrize("name", NAMES)
def test_the_three_formats_are_the_same_network(foreign, name):
    runs = foreign.runs[name]
    x = load_imported(runs["torchscript"]).inputs.prepare(foreign.faceset.images[:5])
    outs = {fmt: load_imported(run).module(x) for fmt, run in runs.items()}
    for fmt in ("onnx", "state_dict"):
        torch.testing.assert_close(outs[fmt], outs["torchscript"], atol=1e-4, rtol=1e-4)
    # TorchScript and the factory name their layers as the Python module does
    want = [n for n, m in foreign_nets.build_resnet().named_modules() if isinstance(m, torch.nn.Conv2d)] \
        if name == "resnet" else None
    layers = {fmt: load_config(run)["layers"] for fmt, run in runs.items()}
    assert layers["torchscript"] == layers["state_dict"]
    assert len(layers["onnx"]) == len(layers["torchscript"])
    if want is not None:
        assert sorted(layers["torchscript"]) == sorted(want)


def test_import_writes_a_run_with_the_input_spec_and_canonical_classes(foreign):
    run = foreign.runs["rgb"]["onnx"]
    cfg = load_config(run)
    assert cfg["kind"] == "imported" and cfg["model"]["format"] == "onnx"
    assert (run / cfg["model"]["file"]).read_bytes() == Path(foreign.files["rgb"]["onnx"]["model_file"]).read_bytes()
    assert cfg["input"] == {"size": 48, "channels": 3, "normalize": "mean_std", "mean": foreign_nets.IMAGENET_MEAN,
                            "std": foreign_nets.IMAGENET_STD}
    assert cfg["class_names"] == ["neutral", "anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"]
    assert cfg["classes_given"] == foreign_nets.CLASSES.split(",") and cfg["classes_unmapped"] == []
    # the same file and spec import to the same run; another spec to another
    again = import_model(**foreign.files["rgb"]["onnx"], name="rgb-onnx", root=run.parent)
    assert again == run
    info = {r.name: r for r in list_runs(run.parent)}[run.name]
    assert info.imported and info.complete


def test_unknown_class_names_are_kept_and_reported():
    names, unmapped = map_classes(["Angry", "joy", "bored", "sad"])
    assert names == ["anger", "happy", "bored", "sadness"] and unmapped == ["bored"]


def test_an_nhwc_onnx_graph_takes_nchw_faces(tmp_path):
    """A Keras/TensorFlow export takes (N, H, W, C): fercore transposes inside the graph."""
    class NHWC(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = foreign_nets.build_rgb().eval()

        def forward(self, x):  # (N, H, W, C) like a Keras model
            return self.net(x.permute(0, 3, 1, 2))

    m = NHWC().eval()
    path = tmp_path / "keras_like.onnx"
    torch.onnx.export(m, (torch.randn(2, 48, 48, 3),), str(path), dynamo=False, opset_version=17,
                      dynamic_axes={"input": {0: "batch"}}, input_names=["input"])
    gm = load_module(path, "onnx")
    x = torch.randn(3, 3, 48, 48)
    torch.testing.assert_close(gm(x), m.net(x), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------- every stage
@pytest.mark.parametrize("name", NAMES)
def test_every_stage_takes_an_imported_network(foreign_recorded, name):
    run = foreign_recorded.runs[name]["torchscript"]
    reader = open_run(run)
    assert reader.has_records and reader.has_stats
    head = reader.header
    assert head["network"] == "imported" and head["projection"] == "guided_backprop" and head["fold"] == -1
    assert reader.layers == load_config(run)["layers"]
    for layer in reader.layers:
        info = head["layer_info"][layer]
        assert info["rf_method"] in ("influence", "whole image") and info["projection"] == "guided_backprop"
        from fercore.recording.project import filter_projections

        proj = filter_projections(reader, layer, 0)["raw"]
        assert np.isfinite(proj).all() and np.abs(proj).max() > 0  # a real projection
    ev = json.loads(next(run.glob("eval-*.json")).read_text())
    assert ev["imported"] and len(ev["mapping"]) == 8 and ev["accuracy"] is not None
    assert "trained elsewhere" in ev["warnings"][0] and "shared with the network" in ev["protocol"]
    summary = reader.summary()
    assert summary["null"] == "permuted"
    null = reader.null_reader()
    assert null is not None and null.has_stats and null.header["network"] == "imported"
    for row in summary["layers"]:  # the permuted null is calibrated like the untrained one
        assert row["null_stages"]["beyond_emotion"]["filters"] <= 1, row
    assert "null network: permuted" in format_summary(summary)
    # the null's weights are the run's, permuted within each tensor
    w_run = load_imported(run).module.state_dict()
    w_null = load_imported(null.run_dir).module.state_dict()
    conv = next(k for k in w_run if k.endswith("weight") and w_run[k].dim() == 4)
    assert not torch.equal(w_run[conv], w_null[conv])
    torch.testing.assert_close(w_run[conv].flatten().sort().values, w_null[conv].flatten().sort().values)


@pytest.mark.parametrize("name", NAMES)
def test_the_three_formats_give_identical_record_indices(foreign_recorded, name):
    runs = foreign_recorded.runs[name]
    index = {}
    for fmt, run in runs.items():
        with h5py.File(run / "records.h5") as f:
            layers = json.loads(f.attrs["layers"])
            index[fmt] = [(f["layers"][la]["topk/index"][()], f["layers"][la]["topk_distinct/index"][()],
                           f["layers"][la].attrs["rf"], f["layers"][la].attrs["jump"]) for la in layers]
    for fmt in ("onnx", "state_dict"):
        assert len(index[fmt]) == len(index["torchscript"])
        for a, b in zip(index[fmt], index["torchscript"], strict=True):
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
            assert (a[2], a[3]) == (b[2], b[3])


def test_recording_leaves_no_hook_behind(foreign_recorded):
    from fercore.recording.record import record_model

    net = load_imported(foreign_recorded.runs["xception"]["state_dict"])
    out = Path(foreign_recorded.cache) / "scratch.h5"
    record_model(net.module, foreign_recorded.faceset, out, inputs=net.inputs, k=2, layers=list(net.layers[:2]))
    assert hook_count(net.module) == 0 and not net.module.training


def test_a_named_module_of_any_kind_can_be_recorded(foreign):
    from fercore.recording.record import record

    run = foreign.runs["resnet"]["state_dict"]
    path = record(run, data=foreign.data, k=4, layers=["layer1", "layer2.conv1"])
    reader = open_run(run)
    assert path.exists() and reader.layers == ["layer1", "layer2.conv1"]
    with pytest.raises(ValueError, match="unknown layer 'nope'"):
        record(run, data=foreign.data, k=4, layers=["nope"])
    with pytest.raises(ValueError, match="--data"):
        record(run, k=4)  # an imported run has no training FaceSet: the message asks for one


# ------------------------------------------------------------------------ receptive fields
@pytest.mark.parametrize("spec", [ModelSpec(arch="zero_bias", in_size=48, width=0.125),
                                  ModelSpec(arch="vgg13", in_size=64, width=0.125)])
def test_measured_receptive_fields_equal_layer_geometry_on_fernet(spec):
    model = build_model(spec).eval()
    got = measure_geometry(model, conv_layers(model), size=spec.in_size, channels=1)
    for layer in conv_layers(model):
        assert got[layer] == (layer_geometry(model, layer), "influence"), layer


@pytest.mark.parametrize("name", ["resnet", "xception"])
def test_the_gradient_of_a_unit_lies_inside_its_measured_box(foreign, name):
    """Residual adds, depthwise convolutions and TensorFlow's asymmetric "same" pooling."""
    net = load_imported(foreign.runs[name]["state_dict"])
    geos = measure_geometry(net.module, list(net.layers), size=48, channels=1)
    x = net.inputs.prepare(foreign.faceset.images[:4])
    from fercore.recording.hooks import LayerCapture

    for layer in net.layers:
        geo, _ = geos[layer]
        for i, j in ((0, 0), (geo.out_size // 2, geo.out_size // 3), (geo.out_size - 1, geo.out_size - 1)):
            xs = x.clone().requires_grad_(True)
            with torch.enable_grad(), LayerCapture(net.module, [layer], detach=False, stop=True) as cap:
                cap.run(xs)
                (g,) = torch.autograd.grad(cap.outputs[layer][:, :, i, j].sum(), xs)
            support = g.abs().sum((0, 1)) > 0
            assert support.any()
            x0, y0, x1, y1 = geo.box(i, j, image_size=48)
            outside = support.clone()
            outside[y0:y1 + 1, x0:x1 + 1] = False
            assert not outside.any(), (layer, i, j)
            assert support[y0:y1 + 1, x0:x1 + 1].any()


# ------------------------------------------------------------------------------- bad inputs
def _import(tmp_path, model_file, **kw):
    args = dict(classes=foreign_nets.CLASSES, size=48, root=tmp_path / "runs")
    args.update(kw)
    return import_model(model_file, **args)


def test_a_pickled_whole_module_is_refused_with_what_to_save(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(foreign_nets.build_resnet(), path)
    with pytest.raises(ModelFileError, match="pickled") as e:
        _import(tmp_path, path)
    assert "state_dict()" in str(e.value) and "--factory" in str(e.value) and str(path) in str(e.value)
    with pytest.raises(ModelFileError, match="pickled"):
        _import(tmp_path, path, factory=f"{foreign_nets.__file__}:build_resnet")


def test_a_factory_file_that_raises_is_named(tmp_path, foreign):
    bad = tmp_path / "broken.py"
    bad.write_text("import torch\nraise RuntimeError('no GPU here')\ndef build():\n    return None\n")
    sd = foreign.files["resnet"]["state_dict"]["model_file"]
    with pytest.raises(ModelFileError, match=r"broken\.py raised RuntimeError: no GPU here"):
        _import(tmp_path, sd, factory=f"{bad}:build")
    calls = tmp_path / "calls.py"
    calls.write_text("def build():\n    raise ValueError('width must be set')\n")
    with pytest.raises(ModelFileError, match=r"calling build\(\) raised ValueError: width must be set"):
        _import(tmp_path, sd, factory=f"{calls}:build")


@pytest.mark.parametrize("factory", ["nets.txt:build", "foreign_nets.py", "foreign_nets.py:1build"])
def test_a_factory_not_file_py_function_is_named(tmp_path, foreign, factory):
    sd = foreign.files["resnet"]["state_dict"]["model_file"]
    with pytest.raises(ModelFileError, match="expected FILE.py:FUNCTION"):
        _import(tmp_path, sd, factory=factory)


def test_a_factory_of_another_architecture_lists_the_mismatch(tmp_path, foreign):
    sd = foreign.files["resnet"]["state_dict"]["model_file"]
    with pytest.raises(ModelFileError, match="does not match the module build_xception"):
        _import(tmp_path, sd, factory=f"{foreign_nets.__file__}:build_xception")


def test_a_size_that_does_not_fit_is_caught_and_explained(tmp_path, foreign):
    sd = foreign.files["rgb"]["state_dict"]
    with pytest.raises(ModelFileError, match=r"does not run on a \(2, 3, 40, 40\) input \(--size 40") as e:
        _import(tmp_path, sd["model_file"], factory=sd["factory"], size=40, channels=3)
    assert "mat1 and mat2" in str(e.value)  # torch's own words, after fercore's
    onnx_path = foreign.files["rgb"]["onnx"]["model_file"]
    with pytest.raises(ModelFileError, match="is 48x48 pixels, not --size 40; pass --size 48"):
        _import(tmp_path, onnx_path, size=40, channels=3)
    with pytest.raises(ModelFileError, match="has 3 channel"):
        _import(tmp_path, onnx_path, channels=1)


@pytest.mark.parametrize("kind", ["tuple", "dict"])
def test_a_network_that_returns_a_tuple_or_a_dict_is_refused(tmp_path, kind):
    code = ("import torch\nfrom torch import nn\n"
            "class Two(nn.Module):\n"
            "    def __init__(self):\n        super().__init__()\n        self.conv = nn.Conv2d(1, 8, 3)\n"
            "        self.fc = nn.Linear(8, 8)\n"
            "    def forward(self, x):\n        f = self.conv(x).mean((2, 3))\n"
            + ("        return self.fc(f), f\n" if kind == "tuple" else "        return {'logits': self.fc(f), 'features': f}\n")
            + "def build():\n    return Two()\n")
    (tmp_path / "two.py").write_text(code)
    import importlib.util

    spec = importlib.util.spec_from_file_location("two_heads", tmp_path / "two.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.save(mod.build().state_dict(), tmp_path / "two.pth")
    with pytest.raises(ModelFileError, match=f"returns a {kind}") as e:
        _import(tmp_path, tmp_path / "two.pth", factory=f"{tmp_path / 'two.py'}:build")
    assert "class logits" in str(e.value)


def test_an_onnx_operator_the_converter_lacks_is_named(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 48, 48])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 8])
    node = helper.make_node("FaceMagic", ["input"], ["logits"], domain="com.example.fer")
    graph = helper.make_graph([node], "custom", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example.fer", 1)])
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelFileError, match="FaceMagic of domain com.example.fer") as e:
        _import(tmp_path, path)
    assert "no converter in onnx2torch" in str(e.value) and "opset 17" in str(e.value)


@pytest.mark.parametrize("content", [b"not a network\n", b"PK\x03\x04broken zip", b"\x89PNG\r\n\x1a\n" + b"\0" * 64])
def test_a_file_that_is_not_a_model_is_named(tmp_path, content):
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match="weights.pt") as e:
        _import(tmp_path, path)
    assert "not a" in str(e.value)


def test_a_state_dict_without_factory_asks_for_one(tmp_path, foreign):
    with pytest.raises(ModelFileError, match="--factory FILE.py:FUNCTION"):
        _import(tmp_path, foreign.files["resnet"]["state_dict"]["model_file"])


def test_classes_whose_count_differs_from_the_outputs_are_named(tmp_path, foreign):
    with pytest.raises(ValueError, match="--classes names 7 classes but the network has 8 outputs"):
        _import(tmp_path, foreign.files["xception"]["torchscript"]["model_file"],
                classes="angry,disgust,fear,happy,sad,surprise,neutral")
    with pytest.raises(ValueError, match="--classes"):
        _import(tmp_path, foreign.files["xception"]["torchscript"]["model_file"], classes="happy")


def test_the_cli_reports_a_bad_model_in_one_line(tmp_path, capsys):
    from fercore.cli import main

    path = tmp_path / "model.onnx"
    path.write_bytes(b"garbage")
    rc = main(["import-model", str(path), "--classes", "a,b", "--size", "48", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("fercore import-model: error:") and "model.onnx" in err
    assert "Traceback" not in err


def test_torchscript_that_torch_export_cannot_convert_goes_through_onnx(foreign, monkeypatch):
    """When PyTorch's TorchScript converter fails, the program is exported to ONNX and converted."""
    from torch._export import converter

    def refuse(*args, **kwargs):
        raise RuntimeError("unsupported TorchScript node prim::Uninitialized")

    monkeypatch.setattr(converter, "TS2EPConverter", refuse)
    kw = foreign.files["resnet"]["torchscript"]
    net = load_module(kw["model_file"], "torchscript", example=torch.randn(2, 1, 48, 48))
    x = load_imported(foreign.runs["resnet"]["state_dict"]).inputs.prepare(foreign.faceset.images[:3])
    want = torch.jit.load(str(kw["model_file"]))(x)
    torch.testing.assert_close(net(x), want, atol=1e-4, rtol=1e-4)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == 6


@pytest.mark.parametrize("arch", ["zero_bias", "vgg13"])
def test_the_walk_for_any_module_records_what_the_fernet_path_records(tmp_path, arch):
    """fercore's own network taken as a plain module (hooks, measured fields, guided projections)
    gives the fast path's lists, maxima and boxes."""
    from test_record import make_faceset

    from fercore.recording.record import record_model
    from fercore.training.inputs import InputSpec

    fs = make_faceset(n=40, size=32)
    model = build_model(ModelSpec(arch=arch, in_size=32, n_classes=3, width=0.1, init_seed=1)).eval()

    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features, self.classifier = model.features, model.classifier

        def forward(self, x):
            return self.classifier(torch.flatten(self.features(x), 1))

    a = record_model(model, fs, tmp_path / "fast.h5", normalize_method="standardize", k=5)
    b = record_model(Plain(), fs, tmp_path / "any.h5", inputs=InputSpec(size=32, normalize="standardize"), k=5)
    with h5py.File(a) as fa, h5py.File(b) as fb:
        assert fb.attrs["projection"] == "guided_backprop" and json.loads(fb.attrs["layers"]) == conv_layers(model)
        for layer in conv_layers(model):
            ga, gb = fa["layers"][layer], fb["layers"][layer]
            for key in ("rf", "jump", "start", "out_size"):
                assert ga.attrs[key] == gb.attrs[key], (layer, key)
            np.testing.assert_allclose(ga["max_act"][()], gb["max_act"][()], atol=1e-3)
            keys = ("index", "pos", "box") + (("patch",) if gb.attrs["patch_frame"] == "box" else ())
            if gb.attrs["patch_frame"] == "image":  # a field larger than the input: the whole face
                assert ga.attrs["rf"] > 32 and gb["topk/patch"].shape[-1] == 32
            for lst in ("topk", "topk_distinct"):
                for key in keys:
                    np.testing.assert_array_equal(ga[f"{lst}/{key}"][()], gb[f"{lst}/{key}"][()], err_msg=f"{layer} {lst}/{key}")
