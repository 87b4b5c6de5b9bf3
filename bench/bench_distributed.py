"""Training and recording with one process and with several under ``torchrun`` (gloo on loopback,
CPU): the time of a training epoch and of a whole recording, on the same data.

Each process gets ``--threads`` torch threads (default 1), so one process uses one core and P
processes P cores: the figures say what data parallelism buys on this machine (on two cores
little, since one process with two threads already uses both; state which). The data are the
first N default phantom faces (48 px); the network is ``--preset``'s (default cpu-real: zero-bias
at width 0.5), trained for ``--epochs`` epochs on round 0.

Run: ``python bench/bench_distributed.py [--n 1200] [--procs 1 2] [--epochs 2] [--preset cpu-real]``
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

WORKER = textwrap.dedent('''
    import json, sys, time
    import torch
    torch.set_num_threads(int(sys.argv[5]))
    from fercore.training.presets import train_preset
    from fercore.recording.record import record
    fs_path, root, preset, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    run = train_preset(fs_path, preset, root=root, epochs=epochs, folds=(0,))
    t0 = time.perf_counter()
    record(run, k=16)
    from fercore.training import distributed
    ctx = distributed.context()
    if ctx is None or ctx.is_main:
        print(json.dumps({"run": str(run), "record_s": time.perf_counter() - t0}), flush=True)
''')


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1200)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    ap.add_argument("--preset", default="cpu-real")
    args = ap.parse_args()

    from fercore.data.phantom import generate_faceset
    from fercore.store.faceset_h5 import save_faceset

    tmp = Path(tempfile.mkdtemp(prefix="bench-dist-"))
    fs_path = tmp / "faces.h5"
    save_faceset(generate_faceset(args.n, size=48, seed=0), fs_path)
    script = tmp / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads), "GLOO_SOCKET_IFNAME": "lo"}
    print(f"{args.n} phantom faces 48 px, preset {args.preset}, {args.epochs} epochs of round 0, "
          f"{args.threads} torch thread(s) per process, {os.cpu_count()} CPU cores")
    base = None
    for p in args.procs:
        root = tmp / f"runs-{p}"
        head = [sys.executable, str(script)] if p == 1 else [
            sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(p),
            "--master-addr", "127.0.0.1", "--master-port", str(_port()), str(script)]
        t0 = time.perf_counter()
        out = subprocess.run([*head, str(fs_path), str(root), args.preset, str(args.epochs), str(args.threads)],
                             capture_output=True, text=True, env=env, check=False)
        wall = time.perf_counter() - t0
        if out.returncode:
            print(out.stdout[-2000:], out.stderr[-4000:])
            return 1
        res = json.loads([ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1])
        fold = json.loads((Path(res["run"]) / "folds" / "fold0.json").read_text())
        epoch = sorted(fold["epoch_s"])[len(fold["epoch_s"]) // 2]
        base = base or (epoch, res["record_s"])
        print(f"  {p} process(es): epoch median {epoch:6.2f} s (speed-up {base[0] / epoch:4.2f}), "
              f"recording {res['record_s']:6.2f} s (speed-up {base[1] / res['record_s']:4.2f}), "
              f"test accuracy {fold['test_acc']:.3f}, whole command {wall:5.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
