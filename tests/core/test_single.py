import numpy as np
import pytest
from test_record import make_faceset, make_run

from fercore.analysis.analyze import analyze
from fercore.recording.face import analyze_face, cached_model
from fercore.recording.record import record
from fercore.store.reader import open_run


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("single"), make_faceset(n=30))
    record(run, k=4, batch_size=16)
    analyze(run, null=None)
    return open_run(run)


def test_analyze_face(reader):
    face = reader.faceset().images[3]
    res = analyze_face(reader, face, top=3)
    assert res.probs.shape == (3,) and res.probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert res.pred == int(np.argmax(res.probs)) and res.class_names == reader.class_names
    assert set(res.activations) == set(reader.layers)
    for layer, a in res.activations.items():
        assert a.shape[0] == reader.n_filters(layer) and a.dtype == np.float32
        assert len(res.top_filters[layer]) == 3
        vals = [v for _, v in res.top_filters[layer]]
        assert vals == sorted(vals, reverse=True) and vals[0] == pytest.approx(a.max())
        # the recorded per-image max of this face agrees with the live forward pass
        f, v = res.top_filters[layer][0]
        assert float(reader.max_activations(layer)[3, f]) == pytest.approx(v, rel=2e-3, abs=2e-3)
        ev = reader.evidence(layer)
        for row, (f, _) in zip(res.filter_aus[layer], res.top_filters[layer], strict=True):
            assert row["filter"] == f and row["au"] == int(ev["au_ids"][ev["judged"][f]])  # the one judged AU
    assert set(res.gradcam) == set(reader.class_names)
    for cam in res.gradcam.values():
        assert cam.shape == (16, 16) and cam.dtype == np.float32 and cam.min() >= 0 and cam.max() <= 1


def test_model_is_cached_until_its_weights_change(reader):
    import os

    model = cached_model(reader.run_dir)
    assert cached_model(reader.run_dir) is model
    w = reader.run_dir / "weights" / "fold0.pt"
    st = os.stat(w)
    os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert cached_model(reader.run_dir) is not model


def test_bad_face_is_named(reader):
    with pytest.raises(ValueError, match="square"):
        analyze_face(reader, np.zeros((16, 12), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        analyze_face(reader, np.zeros((16, 16), np.float32))


def test_gradcam_equals_per_class_backward(reader):
    import torch
    import torch.nn.functional as F

    from fercore.training.inputs import to_input

    face = reader.faceset().images[5]
    res = analyze_face(reader, face)
    model = cached_model(reader.run_dir)
    x = to_input(face[None], in_size=16, method="standardize")
    store = {}
    handle = model.features.conv3.register_forward_hook(lambda m, i, o: store.update(a=o))
    try:
        with torch.enable_grad():
            x.requires_grad_(True)
            logits = model(x)[0]
            for c, name in enumerate(reader.class_names):
                (g,) = torch.autograd.grad(logits[c], store["a"], retain_graph=True)
                cam = F.relu((g[0].mean(dim=(1, 2))[:, None, None] * store["a"][0]).sum(0)).detach()
                cam = F.interpolate(cam[None, None], size=(16, 16), mode="bilinear", align_corners=False)[0, 0]
                want = (cam / cam.max()).numpy() if cam.max() > 0 else np.zeros((16, 16), np.float32)
                np.testing.assert_allclose(res.gradcam[name], want, atol=1e-5)
        np.testing.assert_allclose(res.probs, torch.softmax(logits, 0).detach().numpy(), atol=1e-6)
    finally:
        handle.remove()
