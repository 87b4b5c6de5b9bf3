"""Several processes under ``torchrun`` (gloo on loopback): recording gives the single-process
records.h5, training completes with a run that loads like any other."""

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from test_train import make_faceset

from fercore.recording.record import record_model
from fercore.store.faceset_h5 import load_faceset, save_faceset
from fercore.training import distributed
from fercore.training.loop import TrainConfig, train
from fercore.training.models import ModelSpec, build_model, load_model

REPO = Path(__file__).resolve().parents[2]

SPEC = ModelSpec(arch="zero_bias", in_size=16, n_classes=3, width=0.125, init_seed=3)
CONFIG = TrainConfig(epochs=2, batch_size=8, lr=0.01, folds=[0], augment=True)

WORKER = textwrap.dedent('''
    import json, sys
    import torch
    torch.set_num_threads(1)
    from fercore.training import distributed
    from fercore.training.loop import TrainConfig, train
    from fercore.training.models import ModelSpec, build_model
    from fercore.recording.record import record_model
    from fercore.store.faceset_h5 import load_faceset
    mode, fs_path, out, spec, config = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
    spec = ModelSpec(**json.loads(spec))
    if mode == "record":
        model = build_model(spec).eval()
        record_model(model, load_faceset(fs_path), out, normalize_method="standardize", k=4, batch_size=5)
    else:
        train(fs_path, spec, TrainConfig.from_dict(json.loads(config)), root=out)
    ctx = distributed.context()
    open(f"done-{ctx.rank}-of-{ctx.world_size}", "w").close()
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(tmp_path, *args, nproc=2):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(nproc),
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), str(script), *map(str, args)]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return sorted(p.name for p in tmp_path.glob("done-*"))


def test_no_torchrun_is_a_single_process(monkeypatch):
    for var in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(var, raising=False)
    assert distributed.context() is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.context() is None
    # without a process group every helper is the identity
    assert distributed.broadcast_flag(None, 7) == 7 and distributed.broadcast_bytes(None, b"x") == b"x"
    np.testing.assert_array_equal(distributed.all_reduce_sum(None, [1.0, 2.0]), [1.0, 2.0])


@pytest.mark.parametrize("n, world", [(10, 3), (2, 4), (9, 1), (0, 2)])
def test_shards_cover_every_image_once_in_order(n, world):
    parts = [distributed.shard(n, r, world) for r in range(world)]
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))
    assert max(e - s for s, e in parts) - min(e - s for s, e in parts) <= 1


def test_two_process_recording_equals_one_process(tmp_path):
    fs = make_faceset(n=43, size=16)  # 43: the shards are unequal (22 + 21)
    fs_path = tmp_path / "faces.h5"
    save_faceset(fs, fs_path)
    one = record_model(build_model(SPEC).eval(), load_faceset(fs_path), tmp_path / "one.h5",
                       normalize_method="standardize", k=4, batch_size=5)
    out = _torchrun(tmp_path, "record", fs_path, tmp_path / "two.h5", json.dumps(SPEC.to_dict()), "{}")
    assert out == ["done-0-of-2", "done-1-of-2"]
    with h5py.File(one) as a, h5py.File(tmp_path / "two.h5") as b:
        assert list(a["layers"]) == list(b["layers"])
        for layer in a["layers"]:
            la, lb = a["layers"][layer], b["layers"][layer]
            np.testing.assert_array_equal(la["max_act"][()], lb["max_act"][()])  # gathered in order
            for key in ("topk", "topk_distinct"):
                ga, gb = la[key], lb[key]
                for name in ("index", "pos", "box", "group"):
                    if name in ga:
                        np.testing.assert_array_equal(ga[name][()], gb[name][()], err_msg=f"{layer}/{key}/{name}")
                np.testing.assert_array_equal(ga["activation"][()], gb["activation"][()])
                np.testing.assert_array_equal(ga["patch"][()], gb["patch"][()])
                assert "deconv" not in ga and "deconv" not in gb  # projections are made on demand


def test_two_process_training_completes_and_loads(tmp_path):
    fs_path = tmp_path / "faces.h5"
    save_faceset(make_faceset(n=60, size=16), fs_path)
    roots = tmp_path / "runs"
    out = _torchrun(tmp_path, "train", fs_path, roots, json.dumps(SPEC.to_dict()), json.dumps(CONFIG.to_dict()))
    assert out == ["done-0-of-2", "done-1-of-2"]
    (run,) = list(roots.iterdir())
    m = json.loads((run / "metrics.json").read_text())
    assert m["processes"] == 2 and [f["fold"] for f in m["folds"]] == [0]
    assert len(m["folds"][0]["curves"]["train_loss"]) == CONFIG.epochs
    assert np.isfinite(m["folds"][0]["curves"]["train_loss"]).all()
    model = load_model(run, fold=0)
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 3)
    # same config, same cache layout: a single process finds the run and trains nothing
    assert train(fs_path, SPEC, CONFIG, root=roots) == run
    assert not (run / "ckpt").exists()


def test_the_documented_torchrun_record_command_runs_as_written(tmp_path):
    """docs/training.md's ``torchrun ... -m fercore record`` line, run verbatim (only ``<run>``
    filled in), gives the records of one process."""
    import os
    import shlex
    import shutil

    from fercore.recording.record import record

    doc = (REPO / "docs" / "training.md").read_text()
    (line,) = [ln.strip() for ln in doc.splitlines()
               if ln.strip().startswith("torchrun --standalone") and "fercore record" in ln]
    from test_record import make_run

    run = make_run(tmp_path, fs=make_faceset(n=43, size=16))
    twin = tmp_path / "one" / run.name
    shutil.copytree(run, twin)
    record(twin, k=16)  # one process, the command's defaults
    argv = shlex.split(line.replace("<run>", str(run)))
    assert argv[0] == "torchrun"
    argv[0] = str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    res = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    with h5py.File(twin / "records.h5") as a, h5py.File(run / "records.h5") as b:
        assert list(a["layers"]) == list(b["layers"]) and a.attrs["k"] == b.attrs["k"] == 16
        for layer in a["layers"]:
            la, lb = a["layers"][layer], b["layers"][layer]
            np.testing.assert_array_equal(la["max_act"][()], lb["max_act"][()])
            for key in ("topk", "topk_distinct"):
                for name in ("index", "pos", "box", "activation", "patch"):
                    np.testing.assert_array_equal(la[f"{key}/{name}"][()], lb[f"{key}/{name}"][()])
