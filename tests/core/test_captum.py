"""fercore against Captum, the reference implementation of the two attributions fercore computes
itself (Captum is a test dependency only: ``requirements-dev.txt``; ``fercore`` never imports it).

- **Grad-CAM** (:func:`fercore.recording.face.analyze_face`) equals ``captum.attr.LayerGradCam``
  hooked on the same tensor, the *output of the last conv layer* (before the ReLU and pool that
  follow it), with the same post-processing: ``relu_attributions=True``, then
  ``LayerAttribution.interpolate`` (bilinear, ``align_corners=False``) to the face size, then
  division by each class map's peak. Tolerance: 1e-5 absolute on maps in [0, 1], i.e. relative
  to each class map's own peak.
- **Deconvnet projections** (:func:`fercore.recording.deconv.deconv_project`) equal
  ``captum.attr.NeuronDeconvolution`` with ``neuron_selector=(f, i, j)`` on that conv layer.
  Conventions checked: Captum's map is the deconvnet signal (a gradient with ReLU applied to the
  backward signal at every ``nn.ReLU``), not input x gradient, for a unit value of 1, over the
  whole input; fercore's is cut to the unit's receptive-field box and scaled by the kept value.
  So ``fercore(value=v) == v * captum[box]``, and Captum's map is exactly 0 outside the box.
  Tolerance: 1e-5 of each projection's peak |value| (observed: 0, or a few float32 ulps from the
  value scaling). Zero-bias CNN (5x5 bias-free convs, tiling pools), a VGG13 (3x3 convs with
  biases, dropout in eval mode) and a small net with overlapping, padded pools and a stride-2
  conv; units at the centre, at the corners and next to the border (boxes leaving the image).
- **Guided backpropagation** (:func:`fercore.recording.guided.guided_backprop`, the projection of
  any network other than fercore's own) equals ``captum.attr.GuidedBackprop`` on the same unit
  (a wrapper whose output is that unit), on the input, for the ResNet-style and the 3-channel
  networks of ``tests/foreign_nets.py`` (batch norm, residual adds, in-place ReLUs).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("captum", reason="Captum is a test dependency: pip install -r requirements-dev.txt")

from captum.attr import (  # noqa: E402
    Deconvolution,
    LayerAttribution,
    LayerGradCam,
    NeuronDeconvolution,
)

from fercore.data.phantom import generate_faceset  # noqa: E402
from fercore.recording.deconv import deconv_project  # noqa: E402
from fercore.recording.face import analyze_face  # noqa: E402
from fercore.store.faceset_h5 import save_faceset  # noqa: E402
from fercore.store.reader import open_run  # noqa: E402
from fercore.training.inputs import to_input  # noqa: E402
from fercore.training.models import (  # noqa: E402
    FERNet,
    ModelSpec,
    build_model,
    conv_layers,
    forward_features,
    layer_geometry,
    load_model,
    resolve_layer,
)

# Captum warns on every call that it sets (and removes) backward hooks on the ReLUs, and that it
# made the input require gradients
pytestmark = [pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU activations"),
              pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")]

#: Grad-CAM maps in [0, 1] (each divided by its own peak): largest allowed absolute difference
CAM_ATOL = 1e-5
#: deconvnet projections: largest allowed difference over the projection's peak |value|
DECONV_RTOL = 1e-5

ZERO_BIAS = ModelSpec(arch="zero_bias", in_size=48, n_classes=8, width=0.125, channels=(8, 16, 32))
VGG13 = ModelSpec(arch="vgg13", in_size=32, n_classes=8, width=0.02, dropout=True,
                  channels=(4, 4, 8, 8, 8, 8, 8, 8, 8, 8))
NORMALIZE = "standardize"


@pytest.fixture(scope="module")
def faces():
    """A FaceSet of 16 phantom faces, 48 x 48, two of each of the 8 classes."""
    return generate_faceset(n=16, size=48, seed=0)


def _make_run(root, spec: ModelSpec, fs) -> Path:
    """A run directory the way training writes it (config.json, weights/fold0.pt, the FaceSet),
    with weights from a few Adam steps on the faces (so the maps are a trained network's)."""
    run = root / f"captum-{spec.arch}-0123abcd"
    (run / "weights").mkdir(parents=True)
    digest = save_faceset(fs, root / "faces.h5")
    model = build_model(spec)
    x = to_input(fs.images, in_size=spec.in_size, method=NORMALIZE)
    y = torch.as_tensor(fs.labels)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    model.train()
    for _ in range(15):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    torch.save(model.eval().state_dict(), run / "weights" / "fold0.pt")
    cfg = {"run_hash": "0123abcd" * 8, "name": run.name, "class_names": list(fs.class_names),
           "faceset": {"path": str(root / "faces.h5"), "content_hash": digest}, "model": spec.to_dict(),
           "train": {}, "normalize": NORMALIZE}
    (run / "config.json").write_text(json.dumps(cfg))
    return run


def _captum_gradcam(model: FERNet, face: np.ndarray, n_classes: int) -> torch.Tensor:
    """(C, S, S) Captum Grad-CAM of every class on the last conv layer's output, post-processed as
    fercore does: ReLU, bilinear to the face side S, divided by each map's peak (0 if none)."""
    last = resolve_layer(model, conv_layers(model)[-1])
    x = to_input(face[None], in_size=model.spec.in_size, method=NORMALIZE).repeat(n_classes, 1, 1, 1)
    cam = LayerGradCam(model, last).attribute(x, target=list(range(n_classes)), relu_attributions=True)
    size = face.shape[0]
    cam = LayerAttribution.interpolate(cam.detach(), (size, size), interpolate_mode="bilinear")[:, 0]
    peak = cam.flatten(1).amax(1)[:, None, None]
    return torch.where(peak > 0, cam / peak.clamp_min(1e-30), torch.zeros_like(cam))


@pytest.mark.parametrize("spec", [ZERO_BIAS, VGG13], ids=["zero_bias", "vgg13"])
def test_gradcam_equals_captum_layer_gradcam(spec, faces, tmp_path, one_thread):
    import cv2

    reader = open_run(_make_run(tmp_path, spec, faces))
    model = load_model(reader.run_dir, fold=0)  # a second instance: Captum's hooks stay off fercore's cached one
    n_classes = len(faces.class_names)
    lit = 0
    # faces at the model's side and larger (fercore resizes the input and upsamples the map to the face)
    for face in [faces.images[0], faces.images[5], cv2.resize(faces.images[9], (64, 64))]:
        res = analyze_face(reader, face)
        assert res.layer_gradcam == conv_layers(model)[-1]
        want = _captum_gradcam(model, face, n_classes).numpy()
        assert want.shape == (n_classes, *face.shape)
        for c, name in enumerate(res.class_names):
            got = res.gradcam[name]
            assert np.abs(got - want[c]).max() <= CAM_ATOL, (name, float(np.abs(got - want[c]).max()))
            lit += bool(want[c].max() > 0)
    # not a comparison of zeros: of the 3 x 8 maps, 24 (zero-bias) and 9 (this small VGG) are not empty
    assert lit >= n_classes // 2
    assert not model.training


def _overlap_net() -> FERNet:
    """Overlapping (3/2) and padded pools, a stride-2 conv, biases: the routing cases of unpooling."""
    features = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 4, 3, padding=1)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(3, 2)),
        ("conv2", nn.Conv2d(4, 6, 3, stride=2, padding=1)), ("relu2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(3, 2, padding=1)), ("conv3", nn.Conv2d(6, 8, 3, padding=1)),
    ]))
    torch.manual_seed(1)
    for m in features:
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.bias, 0.0, 0.1)
    # 31 px -> conv1 31 -> pool1 15 -> conv2 8 -> pool2 4 -> conv3 4
    return FERNet(ModelSpec(in_size=31, n_classes=3), features, nn.Sequential(nn.Linear(8 * 4 * 4, 3))).eval()


MODELS = {
    "zero_bias": (lambda: build_model(ZERO_BIAS), ["features.conv1", "features.conv2", "features.conv3"]),
    "vgg13": (lambda: build_model(VGG13),
              ["features.conv1_1", "features.conv2_2", "features.conv3_3", "features.conv4_3"]),
    "overlapping_pools": (_overlap_net, ["features.conv2", "features.conv3"]),
}


def _box_of(full: torch.Tensor, geo, i: int, j: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rf, rf) crop of an (S, S) map under unit (i, j)'s receptive-field box, 0 where the box
    leaves the image, and the map outside the box."""
    size = full.shape[-1]
    x0, y0, x1, y1 = geo.box(i, j)
    crop = torch.zeros(geo.rf, geo.rf)
    ys, xs = slice(max(y0, 0), min(y1, size - 1) + 1), slice(max(x0, 0), min(x1, size - 1) + 1)
    crop[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = full[ys, xs]
    outside = full.clone()
    outside[ys, xs] = 0
    return crop, outside


class _KeptUnit(nn.Module):
    """The model cut to one activation of one conv layer, times a per-image constant:
    ``scale[b] * conv_out[b, f, i, j]`` (B,). Its deconvnet "gradient" is the projection of that
    single activation with the value ``scale`` (Captum's ``Deconvolution`` hooks the ReLUs inside)."""

    def __init__(self, model: FERNet, layer: str, unit: tuple[int, int, int], scale: torch.Tensor):
        super().__init__()
        self.model, self.layer, self.unit, self.scale = model, layer, unit, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f, i, j = self.unit
        return self.scale * forward_features(self.model, x, until=self.layer)[:, f, i, j]


@pytest.mark.parametrize("arch", list(MODELS))
def test_deconv_equals_captum_deconvolution(arch, faces, one_thread):
    """fercore's projection of a unit equals Captum's, on the unit's box (Captum's map is 0 outside
    it): of a unit value (``NeuronDeconvolution``), and of the kept activation v
    (``Deconvolution`` of the model cut to that activation times v). The projection is positively
    homogeneous only: ``fercore(v) == v * fercore(1)`` for v >= 0; a negative v goes through the
    backward ReLUs with its sign (``relu(v s) != v relu(s)``)."""
    build, layers = MODELS[arch]
    model = build().eval()
    size = model.spec.in_size
    x = to_input(faces.images[:4], in_size=size, method=NORMALIZE)  # (B, 1, S, S)
    n_img = len(x)
    for layer in layers:
        geo = layer_geometry(model, layer)
        conv = resolve_layer(model, layer)
        with torch.no_grad():
            acts = forward_features(model, x, until=layer)  # (B, F, h, w) the conv output, before ReLU
        h = acts.shape[-1]
        assert h == geo.out_size
        # the centre, the corners, and one unit in from the border: most boxes leave the image
        positions = sorted({(h // 2, h // 2), (0, 0), (h - 1, h - 1), (0, h - 1), (1, h - 2)})
        filters = sorted({0, conv.out_channels // 2, conv.out_channels - 1})
        units = [(f, i, j) for f in filters for i, j in positions]

        img = torch.arange(n_img).repeat_interleave(len(units))  # every (image, unit) pair, batched
        filt = torch.tensor([u[0] for u in units]).repeat(n_img)
        pos = torch.tensor([u[1:] for u in units]).repeat(n_img, 1)
        value = acts[img, filt, pos[:, 0], pos[:, 1]]
        got_unit = deconv_project(model, x, layer, img, filt, pos)  # value 1
        got = deconv_project(model, x, layer, img, filt, pos, value)  # as record_model keeps it

        nd = NeuronDeconvolution(model, conv)
        nonzero = 0
        for u, unit in enumerate(units):
            sel = torch.arange(n_img) * len(units) + u  # this unit's rows of img/filt/pos
            want_unit = nd.attribute(x, neuron_selector=unit).detach()[:, 0]  # (B, S, S)
            want = Deconvolution(_KeptUnit(model, layer, unit, value[sel])).attribute(x).detach()[:, 0]
            for b in range(n_img):
                p, v = int(sel[b]), float(value[sel[b]])
                crop1, out1 = _box_of(want_unit[b], geo, *unit[1:])
                crop, out = _box_of(want[b], geo, *unit[1:])
                # the signal never leaves the box
                assert torch.count_nonzero(out1) == 0 and torch.count_nonzero(out) == 0, (layer, unit)
                peak1, peak = float(crop1.abs().max()), float(crop.abs().max())
                nonzero += peak1 > 0
                where = (arch, layer, unit, b, v)
                assert float((got_unit[p] - crop1).abs().max()) <= DECONV_RTOL * peak1, where
                assert float((got[p] - crop).abs().max()) <= DECONV_RTOL * peak, where
                if v >= 0:
                    assert float((got[p] - v * crop1).abs().max()) <= DECONV_RTOL * v * peak1 + 1e-30, where
        assert nonzero >= len(img) // 2, (layer, nonzero)  # the projections compared are not all zero
    assert not model.training


# ------------------------------------------------------------- guided backpropagation, any network
class _Unit(nn.Module):
    """One unit of a layer as a network's only output: Captum attributes the input to it."""

    def __init__(self, net: nn.Module, layer: str, f: int, i: int, j: int):
        super().__init__()
        self.net, self.layer, self.unit = net, layer, (f, i, j)

    def forward(self, x):
        from fercore.recording.hooks import LayerCapture

        with LayerCapture(self.net, [self.layer], detach=False, stop=True, eval_mode=False) as cap:
            cap.run(x)
            a = cap.outputs[self.layer]
        f, i, j = self.unit
        return a[:, f, i, j][:, None]


@pytest.mark.parametrize("name", ["resnet", "rgb"])
def test_guided_backprop_equals_captum_guided_backprop(name, one_thread):
    """:func:`fercore.recording.guided.guided_backprop` equals ``captum.attr.GuidedBackprop`` on
    the same unit of networks whose ReLUs are ``nn.ReLU`` modules (in-place ones included: the
    3-channel net), on the input; tolerance 1e-5 of the gradient's peak."""
    import foreign_nets
    from captum.attr import GuidedBackprop

    from fercore.recording.fields import measure_geometry
    from fercore.recording.guided import guided_backprop

    torch.manual_seed(3)
    net = getattr(foreign_nets, foreign_nets.NETS[name][0])().eval()
    channels = foreign_nets.NETS[name][1]
    x = torch.randn(3, channels, 48, 48)
    layers = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    geos = measure_geometry(net, layers, size=48, channels=channels)
    for layer in (layers[1], layers[-1]):
        n_out = geos[layer][0].out_size
        for img, (f, i, j) in enumerate([(0, 0, 0), (1, n_out // 2, n_out // 3), (2, n_out - 1, n_out - 1)]):
            ours = guided_backprop(net, x, layer, torch.tensor([img]), torch.tensor([f]), torch.tensor([[i, j]]))[0]
            ref = GuidedBackprop(_Unit(net, layer, f, i, j)).attribute(x[img:img + 1].clone(), target=0)[0]
            peak = float(ref.abs().max())
            assert peak > 0, (layer, f, i, j)
            torch.testing.assert_close(ours, ref.detach(), atol=1e-5 * peak, rtol=0)
