import pytest
import torch

from fercore.training.models import (
    ModelSpec,
    build_model,
    conv_layers,
    layer_geometry,
    resolve_layer,
)


@pytest.mark.parametrize("arch,size", [("zero_bias", 48), ("zero_bias", 96), ("vgg13", 64)])
def test_output_shape(arch, size):
    m = build_model(ModelSpec(arch=arch, in_size=size, n_classes=7, width=0.125))
    assert m(torch.zeros(3, 1, size, size)).shape == (3, 7)


def test_zero_bias_has_no_conv_bias_and_fc_bias_one():
    m = build_model(ModelSpec(width=0.25))
    assert all(m.get_submodule(n).bias is None for n in conv_layers(m))
    assert torch.all(m.classifier.fc1.bias == 1.0)


def test_receptive_fields_of_the_zero_bias_cnn():
    m = build_model(ModelSpec(in_size=96, width=0.125))
    g = {n: (layer_geometry(m, n).rf, layer_geometry(m, n).jump) for n in conv_layers(m)}
    assert g == {"features.conv1": (5, 1), "features.conv2": (14, 2), "features.conv3": (32, 4)}
    assert layer_geometry(m, "features.conv3").out_size == 24


def test_receptive_field_matches_the_gradient_support():
    """The box of a unit is exactly the set of input pixels with a non-zero gradient.

    Max-pooling routes the gradient to one input only, so the pools are swapped for average
    pools of the same geometry: then every pixel of the receptive field reaches the unit.
    """
    m = build_model(ModelSpec(in_size=48, width=0.125)).double()
    for child, mod in list(m.features.named_children()):
        if isinstance(mod, torch.nn.MaxPool2d):
            setattr(m.features, child, torch.nn.AvgPool2d(mod.kernel_size, mod.stride, mod.padding))
    with torch.no_grad():
        for p in m.parameters():
            p.abs_()  # positive weights: no cancellations, every path counts
    for name in conv_layers(m):
        x = torch.ones(1, 1, 48, 48, dtype=torch.float64, requires_grad=True)
        out = x
        for child, mod in m.features.named_children():
            out = mod(out)
            if f"features.{child}" == name:
                break
        i, j = 5, 7
        out[0, 0, i, j].backward()
        nz = x.grad[0, 0].nonzero()
        geo = layer_geometry(m, name)
        x0, y0, x1, y1 = geo.box(i, j, image_size=48)
        assert (nz[:, 1].min().item(), nz[:, 0].min().item(), nz[:, 1].max().item(), nz[:, 0].max().item()) == (x0, y0, x1, y1)


def test_unknown_layer_lists_the_valid_ones():
    m = build_model(ModelSpec(width=0.125))
    with pytest.raises(ValueError, match="features.conv1, features.conv2, features.conv3"):
        resolve_layer(m, "conv9")


def test_explicit_channels_replace_the_width_and_must_match_the_conv_count():
    m = build_model(ModelSpec(in_size=48, n_classes=8, channels=(8, 16, 128)))
    assert [m.get_submodule(n).out_channels for n in conv_layers(m)] == [8, 16, 128]
    assert m(torch.zeros(2, 1, 48, 48)).shape == (2, 8)
    v = build_model(ModelSpec(arch="vgg13", in_size=64, channels=[4] * 10))
    assert all(v.get_submodule(n).out_channels == 4 for n in conv_layers(v))
    with pytest.raises(ValueError, match="needs 3 counts"):
        build_model(ModelSpec(in_size=48, channels=(8, 16)))
    with pytest.raises(ValueError, match="positive channel counts"):
        ModelSpec(channels=(8, 0, 4))
    assert ModelSpec(channels=[8, 16, 128]).to_dict()["channels"] == [8, 16, 128]
    assert ModelSpec(**ModelSpec(channels=[8, 16, 128]).to_dict()) == ModelSpec(channels=(8, 16, 128))


def test_au_head_reads_the_last_hidden_layer_and_forward_stays_the_class_logits():
    m = build_model(ModelSpec(in_size=48, n_classes=8, width=0.125, n_aus=18)).eval()
    x = torch.randn(3, 1, 48, 48)
    logits, aus = m.forward_aus(x)
    assert aus.shape == (3, 18) and torch.equal(logits, m(x))
    with pytest.raises(ValueError, match="no AU head"):
        build_model(ModelSpec(in_size=48, width=0.125)).forward_aus(x)


def test_au_head_can_read_the_pooled_conv_features():
    spec = ModelSpec(in_size=48, n_classes=8, width=0.125, n_aus=5, au_input="features")
    m = build_model(spec).eval()
    x = torch.randn(2, 1, 48, 48)
    logits, aus = m.forward_aus(x)
    feats = torch.flatten(m.features(x), 1)
    assert m.au_head.in_features == feats.shape[1]
    torch.testing.assert_close(aus, m.au_head(feats))
    assert torch.equal(logits, m(x))
    assert spec.to_dict()["au_input"] == "features" and "au_input" not in ModelSpec(n_aus=5).to_dict()
    assert ModelSpec(**spec.to_dict()) == spec
    with pytest.raises(ValueError, match="au_input"):
        ModelSpec(au_input="conv3")


def test_layer_geometry_counts_the_partial_window_of_a_ceil_mode_pool():
    from collections import OrderedDict

    from torch import nn

    from fercore.training.models import FERNet, ModelSpec, layer_geometry

    spec = ModelSpec(arch="zero_bias", in_size=31, n_classes=2)
    feats = nn.Sequential(OrderedDict([("conv1", nn.Conv2d(1, 2, 3, padding=0, bias=False)),
                                       ("pool1", nn.MaxPool2d(2, 2, ceil_mode=True)),
                                       ("conv2", nn.Conv2d(2, 2, 3, padding=1, bias=False))]))
    model = FERNet(spec, feats, nn.Sequential(nn.Flatten(), nn.Linear(2, 2)))
    out = feats(torch.zeros(1, 1, 31, 31))
    assert layer_geometry(model, "features.conv2").out_size == out.shape[-1] == 15  # floor mode gives 14
