import json

import h5py
import numpy as np
import pytest
import torch

from fercore.data.faceset import FaceSet
from fercore.recording.deconv import deconv_project
from fercore.recording.hooks import LayerCapture, hook_count
from fercore.recording.record import record, record_model
from fercore.store.faceset_h5 import save_faceset
from fercore.store.records_h5 import RECORDS_SCHEMA, read_records_header
from fercore.training.inputs import to_input
from fercore.training.models import ModelSpec, build_model, conv_layers, layer_geometry, load_model


def make_faceset(n=36, size=16, seed=0, n_classes=3):
    """Tiny FaceSet: noise faces, 3 classes, AUs 1/12/25 tied to the label, landmarks, sequences."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
    labels = np.arange(n) % n_classes
    au_ids = np.array([1, 12, 25])
    aus = np.zeros((n, 3), np.float32)
    aus[labels == 1, 1] = 3
    aus[labels == 2, 0] = 2
    aus[rng.random(n) < 0.3, 2] = 1
    aus[0, 2] = np.nan
    subjects = np.array([f"s{i % 6}" for i in range(n)])
    sequences = np.array([f"q{i % 9}" for i in range(n)])
    lm = np.zeros((n, 68, 2), np.float32)
    lm[:, :, 0] = rng.uniform(2, size - 2, size=68)
    lm[:, :, 1] = rng.uniform(2, size - 2, size=68)
    lm[:, 36:42] = [0.3 * size, 0.4 * size]
    lm[:, 42:48] = [0.7 * size, 0.4 * size]
    return FaceSet(images=images, labels=labels, class_names=("neutral", "happy", "surprise")[:n_classes],
                   aus=aus, au_ids=au_ids, subjects=subjects, folds=np.arange(n) % 3, sequences=sequences,
                   landmarks=lm, meta={"preprocess": {"normalize": "standardize"}})


def tiny_model(size=16, n_classes=3, seed=0):
    return build_model(ModelSpec(arch="zero_bias", in_size=size, n_classes=n_classes, width=0.1, init_seed=seed))


def make_run(tmp_path, fs=None, name="tiny-run-abcdef12", seed=0):
    """A run directory the way training writes it: config.json, weights/fold0.pt, the FaceSet."""
    fs = fs if fs is not None else make_faceset()
    run = tmp_path / name
    (run / "weights").mkdir(parents=True)
    fs_path = tmp_path / "tiny.h5"
    digest = save_faceset(fs, fs_path)
    model = tiny_model(fs.size, len(fs.class_names), seed)
    torch.save(model.state_dict(), run / "weights" / "fold0.pt")
    cfg = {"run_hash": "abcdef12" * 8, "name": name, "class_names": list(fs.class_names),
           "faceset": {"path": str(fs_path), "content_hash": digest}, "model": model.spec.to_dict(),
           "train": {}, "normalize": "standardize"}
    (run / "config.json").write_text(json.dumps(cfg))
    return run


def stored_projections(path, layer) -> dict[str, np.ndarray]:
    """Every filter's cached projections of a records file: {"topk": (F, K, P, P), "topk_distinct": ...}."""
    from fercore.store.reader import RunReader

    r = RunReader(path.parent, records_file=path.name)
    got = [r.projections(layer, f) for f in range(r.n_filters(layer))]
    assert all(g is not None for g in got), "projections not computed"
    return {"topk": np.stack([g["raw"] for g in got]), "topk_distinct": np.stack([g["distinct"] for g in got])}


def test_topk_matches_max_matrix_and_patches_are_image_crops(tmp_path):
    fs = make_faceset()
    model = tiny_model()
    path = record_model(model, fs, tmp_path / "r.h5", normalize_method="standardize", k=5, batch_size=7,
                        projections="all")
    head = read_records_header(path)
    assert head["schema_version"] == RECORDS_SCHEMA and head["k"] == 5 and head["n"] == len(fs)
    assert head["layers"] == conv_layers(model)
    x = to_input(fs.images, in_size=16, method="standardize")
    with torch.no_grad(), LayerCapture(model, conv_layers(model)) as cap:
        model(x)
        outs = {k: v.clone() for k, v in cap.outputs.items()}
    with h5py.File(path) as f:
        for layer in conv_layers(model):
            g = f["layers"][layer]
            full = outs[layer].flatten(2).max(2).values.numpy()  # (N, F)
            np.testing.assert_allclose(g["max_act"][()], full, rtol=1e-3, atol=1e-3)
            idx = g["topk/index"][()]
            brute = np.argsort(-full, axis=0, kind="stable")[:5].T
            np.testing.assert_array_equal(np.sort(full[idx, np.arange(full.shape[1])[:, None]], 1),
                                          np.sort(full[brute, np.arange(full.shape[1])[:, None]], 1))
            geo = layer_geometry(model, layer)
            box, pos, patch = g["topk/box"][()], g["topk/pos"][()], g["topk/patch"][()]
            assert patch.shape[2:] == (geo.rf, geo.rf)
            for fi in range(0, full.shape[1], 3):
                for ki in range(5):
                    i, j = pos[fi, ki]
                    assert tuple(box[fi, ki]) == geo.box(i, j)
                    a = outs[layer][idx[fi, ki], fi]
                    assert a[i, j] == a.max()
                    x0, y0, x1, y1 = box[fi, ki]
                    img = fs.images[idx[fi, ki]]
                    for yy in (y0, (y0 + y1) // 2, y1):
                        for xx in (x0, (x0 + x1) // 2, x1):
                            want = img[yy, xx] if 0 <= yy < 16 and 0 <= xx < 16 else 0
                            assert patch[fi, ki, yy - y0, xx - x0] == want
            # deconv entries are the projections of those activations; shared ones are reused
            dec = stored_projections(path, layer)["topk"]
            proj = deconv_project(model, x, layer, torch.from_numpy(idx[:, 0]), torch.arange(full.shape[1]),
                                  torch.from_numpy(pos[:, 0].astype(np.int64)),
                                  torch.from_numpy(g["topk/activation"][:, 0]))
            np.testing.assert_allclose(dec[:, 0], proj.numpy(), rtol=2e-3, atol=2e-3 * float(np.abs(dec).max()))
            ddec, dindex = stored_projections(path, layer)["topk_distinct"], g["topk_distinct/index"][()]
            for fi in range(full.shape[1]):
                for ki in range(5):
                    hit = np.nonzero(idx[fi] == dindex[fi, ki])[0]
                    if len(hit):
                        np.testing.assert_array_equal(ddec[fi, ki], dec[fi, hit[0]])
            # distinct lists never hold two images of one group
            didx = g["topk_distinct/index"][()]
            for row in didx:
                grp = fs.groups[row[row >= 0]]
                assert len(set(grp)) == len(grp)
    assert hook_count(model) == 0


def test_single_bright_pixel_is_seen_exactly_by_the_boxes_that_contain_it():
    model = tiny_model(size=16)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            with torch.no_grad():
                m.weight.abs_().add_(0.01)  # all taps positive and non-zero: every box position sees the pixel
    py, px = 6, 9
    blank = torch.zeros(1, 1, 16, 16)
    lit = blank.clone()
    lit[0, 0, py, px] = 1.0
    for layer in conv_layers(model):
        with torch.no_grad(), LayerCapture(model, [layer]) as cap:
            model(blank)
            a0 = cap.outputs[layer][0, 0].clone()
            model(lit)
            a1 = cap.outputs[layer][0, 0].clone()
        geo = layer_geometry(model, layer)
        seen = (a1 - a0).abs() > 0
        for i in range(geo.out_size):
            for j in range(geo.out_size):
                x0, y0, x1, y1 = geo.box(i, j)
                inside = x0 <= px <= x1 and y0 <= py <= y1
                if layer == "features.conv1":
                    assert bool(seen[i, j]) == inside, (layer, i, j)
                else:  # behind max-pools a unit may not see it, but never one whose box misses it
                    assert not (seen[i, j] and not inside), (layer, i, j)
        # the unit at the pixel sees it; its deconvnet projection lies in its box
        i, j = [int(v) for v in np.unravel_index(int((a1 - a0).flatten().argmax()), a1.shape)]
        proj = deconv_project(model.eval(), lit, layer, torch.tensor([0]), torch.tensor([0]),
                              torch.tensor([[i, j]]), torch.tensor([1.0]))
        x0, y0, _, _ = geo.box(i, j)
        assert proj.shape == (1, geo.rf, geo.rf)
        assert proj[0, py - y0, px - x0] > 0


@torch.no_grad()
def _reference_deconv(model, x, layer, f, i, j, v):
    """Full-map Zeiler-Fergus projection: torch's transposed conv, unpooling by the pool's indices."""
    import torch.nn.functional as F

    chain = []
    for n, m in model.features.named_children():
        chain.append(m)
        if f"features.{n}" == layer:
            break
    h, sw, sizes = x, {}, {}
    for t, m in enumerate(chain):
        sizes[t] = h.shape[-2:]
        if isinstance(m, torch.nn.MaxPool2d):
            h, sw[t] = F.max_pool2d(h, m.kernel_size, m.stride, m.padding, return_indices=True)
        else:
            h = m(h)
    sig = torch.zeros_like(h)
    sig[0, f, i, j] = v
    for t in reversed(range(len(chain))):
        m = chain[t]
        if isinstance(m, torch.nn.Conv2d):
            sig = F.conv_transpose2d(sig, m.weight, stride=m.stride, padding=m.padding)
        elif isinstance(m, torch.nn.ReLU):
            sig = F.relu(sig)
        elif isinstance(m, torch.nn.MaxPool2d):
            # unpooling adds what overlapping windows route to one input (F.max_unpool2d would keep
            # only one of them; for tiling windows the two agree)
            b, c = sig.shape[:2]
            out = torch.zeros(b, c, sizes[t][0] * sizes[t][1])
            out.scatter_add_(2, sw[t].flatten(2), sig.flatten(2))
            sig = out.view(b, c, *sizes[t])
    return sig[0, 0]


@pytest.mark.parametrize("arch", ["zero_bias", "vgg13"])
def test_windowed_deconv_equals_full_map_deconv(arch, one_thread):
    torch.manual_seed(0)
    model = build_model(ModelSpec(arch=arch, in_size=32, width=0.1)).eval()
    x = torch.randn(2, 1, 32, 32)
    for layer in conv_layers(model)[::2] + conv_layers(model)[-1:]:
        geo = layer_geometry(model, layer)
        pos = torch.tensor([[0, 0], [geo.out_size - 1, geo.out_size // 2], [geo.out_size // 2, 1]])
        for ref, crop, out in _windowed_and_full(model, x, layer, pos):
            torch.testing.assert_close(out, crop, atol=1e-5, rtol=1e-4)
            assert float(ref.abs().sum()) == pytest.approx(float(crop.abs().sum()), rel=1e-5, abs=1e-6)


def _windowed_and_full(model, x, layer, pos):
    """For three units of ``layer`` at ``pos`` (images 0, 1, 1; filters 0, 1, 2; values 1, 2, 0.5):
    (full-map reference, its crop to the unit's box, the windowed projection)."""
    geo = layer_geometry(model, layer)
    size = x.shape[-1]
    out = deconv_project(model, x, layer, torch.tensor([0, 1, 1]), torch.tensor([0, 1, 2]), pos,
                         torch.tensor([1.0, 2.0, 0.5]))
    for p in range(3):
        ref = _reference_deconv(model, x[[0, 1, 1][p]:][:1], layer, p, int(pos[p, 0]), int(pos[p, 1]),
                                [1.0, 2.0, 0.5][p])
        x0, y0, x1, y1 = geo.box(int(pos[p, 0]), int(pos[p, 1]))
        crop = torch.zeros(geo.rf, geo.rf)
        ys, xs = slice(max(y0, 0), min(y1, size - 1) + 1), slice(max(x0, 0), min(x1, size - 1) + 1)
        crop[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = ref[ys, xs]
        yield ref, crop, out[p]


def test_hooks_come_off_even_after_an_exception():
    model = tiny_model()
    model.train()
    cap = LayerCapture(model, conv_layers(model))
    with pytest.raises(RuntimeError), cap:
        assert hook_count(model) == 3 and not model.training
        raise RuntimeError("boom")
    assert hook_count(model) == 0 and model.training
    cap.remove()  # safe twice
    with pytest.raises(ValueError, match="conv layers are"):
        LayerCapture(model, ["features.nope"])


def test_record_on_a_run_dir_is_cached_and_a_killed_recording_keeps_the_old_file(tmp_path):
    run = make_run(tmp_path)
    path = record(run, k=4, batch_size=10)
    head = read_records_header(path)
    assert head["fold"] == 0 and head["run"] == run.name and head["k"] == 4
    assert head["faceset_hash"] == json.loads((run / "config.json").read_text())["faceset"]["content_hash"]
    stamp = path.stat().st_mtime_ns
    assert record(run, k=4) == path and path.stat().st_mtime_ns == stamp  # cache hit
    before = path.read_bytes()

    def killer(done, total, stage):
        if stage == "record" and done > 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        record(run, k=6, progress=killer)
    assert path.read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "records.h5", "weights"]
    model = load_model(run)
    assert hook_count(model) == 0
    # a new k rebuilds
    record(run, k=6, layers=["features.conv2"])
    assert read_records_header(path)["layers"] == ["features.conv2"]


def test_bad_arguments_are_named(tmp_path):
    fs = make_faceset(n=6)
    model = tiny_model()
    with pytest.raises(ValueError, match="k: expected"):
        record_model(model, fs, tmp_path / "r.h5", normalize_method="standardize", k=0)
    with pytest.raises(ValueError, match="conv layers are"):
        record_model(model, fs, tmp_path / "r.h5", normalize_method="standardize", layers=["features.relu1"])
    assert not (tmp_path / "r.h5").exists()


def test_capture_survives_an_inplace_relu():
    model = tiny_model()
    model.features.relu1.inplace = True
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad(), LayerCapture(model, ["features.conv1"]) as cap:
        model(x)
        got = cap.outputs["features.conv1"]
        assert (got < 0).any()  # the pre-ReLU values, not overwritten by the in-place ReLU
        torch.testing.assert_close(got, model.features.conv1(x))


def _odd_pool_model(size=19):
    """Overlapping (3/2), tiling 3x3 and 2x2-on-odd-size pools: every switch form the deconvnet reads."""
    from collections import OrderedDict

    from torch import nn

    from fercore.training.models import FERNet

    torch.manual_seed(3)
    feats = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 4, 3, padding=1, bias=False)), ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(3, 2)),  # 19 -> 9, windows overlap: flat-index switches
        ("conv2", nn.Conv2d(4, 5, 3, padding=1, bias=False)), ("relu2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(2, 2)),  # 9 -> 4, tiling on an odd size: the last row/column is never pooled
        ("conv3", nn.Conv2d(5, 6, 3, padding=1, bias=False)), ("relu3", nn.ReLU()),
        ("pool3", nn.MaxPool2d(2, 2)),
    ]))
    head = nn.Sequential(OrderedDict([("fc", nn.Linear(6 * 2 * 2, 3))]))
    return FERNet(ModelSpec(arch="zero_bias", in_size=size, n_classes=3), feats, head).eval()


def test_compact_switches_decode_to_the_pool_indices():
    import torch.nn.functional as F

    from fercore.recording.deconv import compact_switches, run_features

    model = _odd_pool_model()
    x = torch.randn(3, 1, 19, 19)
    _, raw, sizes = run_features(model, x, "features.conv3")
    small = compact_switches(model, raw, sizes)
    assert small["features.pool1"].dtype == torch.int64  # overlapping: kept as flat indices
    ph = small["features.pool2"]
    assert ph.dtype == torch.uint8
    w_in = sizes["features.pool2"][1]
    i = torch.arange(ph.shape[-2])[:, None]
    j = torch.arange(ph.shape[-1])[None, :]
    flat = (i * 2 + ph.long() // 2) * w_in + (j * 2 + ph.long() % 2)
    torch.testing.assert_close(flat, raw["features.pool2"])
    # a 3x3 tiling pool too
    h = torch.randn(2, 3, 12, 12)
    _, idx = F.max_pool2d(h, 3, 3, return_indices=True)
    pool = torch.nn.MaxPool2d(3, 3)
    model3 = torch.nn.Module()
    model3.add_module("p", pool)
    ph3 = compact_switches(model3, {"p": idx}, {"p": (12, 12)})["p"].long()
    i, j = torch.arange(4)[:, None], torch.arange(4)[None, :]
    torch.testing.assert_close((i * 3 + ph3 // 3) * 12 + (j * 3 + ph3 % 3), idx)


def test_deconv_with_overlapping_and_odd_pools_equals_full_map(one_thread):
    model = _odd_pool_model()
    x = torch.randn(2, 1, 19, 19)
    for layer in conv_layers(model):
        geo = layer_geometry(model, layer)
        pos = torch.tensor([[0, 0], [geo.out_size - 1, geo.out_size - 1], [geo.out_size // 2, 1]])
        for _, crop, out in _windowed_and_full(model, x, layer, pos):
            torch.testing.assert_close(out, crop, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("layers", [None, ["features.conv1"], ["features.conv2"]])
def test_recorded_projections_equal_projections_from_scratch(tmp_path, layers):
    """The projections of the records (computed over the listed images, a chunk at a time,
    switches in their compact form) equal projections from one forward pass over all images, also
    for overlapping pools, odd map sizes and small batches."""
    model = _odd_pool_model()
    rng = np.random.default_rng(5)
    n = 40
    fs = FaceSet(images=rng.integers(0, 256, (n, 19, 19), dtype=np.uint8), labels=np.arange(n) % 3,
                 class_names=("a", "b", "c"), aus=np.zeros((n, 0), np.float32), au_ids=np.zeros(0),
                 subjects=np.array([f"s{i % 7}" for i in range(n)]), folds=np.arange(n) % 2)
    path = record_model(model, fs, tmp_path / "r.h5", normalize_method="standardize", k=4, batch_size=3,
                        layers=layers, projections="all")
    x = to_input(fs.images, in_size=19, method="standardize")
    with h5py.File(path) as f:
        for layer in f["layers"]:
            for key in ("topk", "topk_distinct"):
                g = f["layers"][layer][key]
                idx, pos, act = g["index"][()], g["pos"][()].astype(np.int64), g["activation"][()]
                fi, ki = np.nonzero(idx >= 0)
                # the recording projects the rectified maximum: a filter whose best is negative gets 0
                want = deconv_project(model, x, layer, torch.from_numpy(idx[fi, ki]), torch.from_numpy(fi),
                                      torch.from_numpy(pos[fi, ki]), torch.from_numpy(np.maximum(act[fi, ki], 0)))
                got = stored_projections(path, layer)[key][fi, ki]
                np.testing.assert_allclose(got, want.numpy(), rtol=2e-3, atol=2e-3 * max(1e-6, float(np.abs(got).max())))
                assert not np.abs(got[act[fi, ki] <= 0]).any()
    assert hook_count(model) == 0
