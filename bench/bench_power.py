"""The power of the beyond-emotion test: does the detectable effect say what the test finds, and
what does it cost?

Three parts, each selectable:

``--phantom`` (default on): the ``phantom-au`` runs of ``bench/bench_honest_phantom.py`` (AUs vary
within the emotions at full intensity; one run per ``--seeds``; built or reused under
``$FERCORE_CACHE``). Per run and ground-truth AU group (1+2, 4, 5, 6, 9, 12, 15, 20, 25+26): the
detectable effect (80 % power at the layer's burden), the best filter's within-emotion AUC with
its 95 % interval, whether its test passes and whether a filter is found beyond emotion (any
layer); the group's figures are those of its AU and layer whose best filter comes closest to or
furthest beyond the detectable effect. Prints how often "found" agrees with "best AUC above the
detectable effect".

``--planted RUN``: the closed-form power against planted units run through the real test
(Monte Carlo, ``--draws`` per AU) at the detectable effect (should be 0.8) and at the critical
AUC (0.5), per testable AU of the run's last layer.

``--speed RUN``: ``analyze`` (null network already built) with and without the power figures and
the AUC intervals, interleaved ``--repeat`` times: the ratio is the figure to compare (at most 1.3).

Usage::

    FERCORE_CACHE=/tmp/honest python bench/bench_power.py [--seeds 0 1 2 3 4]
    python bench/bench_power.py --no-phantom --planted RUN --speed RUN
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def phantom_table(seeds: list[int]) -> None:
    from types import SimpleNamespace

    from bench_fau_groundtruth import GROUPS
    from bench_honest_phantom import build

    from fercore.analysis.summary import summary_dict

    args = SimpleNamespace(epochs=None, preset="phantom-au", folds=[0], k=16)
    rows = []
    for seed in seeds:
        opts = dict(n=2400, size=48, seed=0, au_variation=1.0, p_extra=0.5, extra_max=5)
        run = build(opts, args, seed)
        s = summary_dict(run)
        for group in GROUPS:
            cands = [(lay["layer"], r) for lay in s["layers"] for r in lay["power"]["aus"]
                     if r["au"] in group and r["status"] == "detectable" and r["best_auc"] is not None]
            if not cands:
                rows.append((seed, group, None, None, None, None, None, None))
                continue
            layer, best = max(cands, key=lambda c: c[1]["best_auc"] - c[1]["detectable_auc"])
            found = any(r["found"] for lay in s["layers"] for r in lay["power"]["aus"] if r["au"] in group)
            test = any(r["test_passed"] for lay in s["layers"] for r in lay["power"]["aus"] if r["au"] in group)
            rows.append((seed, group, layer, best, best["detectable_auc"], best["best_auc"], test, found))
    print("\nphantom-au (2,400 faces, 8 classes, round 0, top-16, AUs vary within emotions), per run and AU group:")
    print(f"{'seed':>4}  {'group':<6} {'layer':<15} {'AU':<5} {'detectable':>10}  {'best filter: AUC [95 % CI]':<28} "
          f"{'test':<5} {'found':<5} agrees")
    agree = n = 0
    for seed, group, layer, best, det, auc, test, found in rows:
        name = "+".join(map(str, group))
        if best is None:
            print(f"{seed:>4}  {name:<6} untestable")
            continue
        above = auc > det
        ok = above == found
        agree += ok
        n += 1
        cell = f"#{best['best_filter']}: {auc:.2f} [{best['best_low']:.2f}, {best['best_high']:.2f}]"
        print(f"{seed:>4}  {name:<6} {layer:<15} AU{best['au']:<3} {det:>10.2f}  {cell:<28} "
              f"{'yes' if test else 'no':<5} {'yes' if found else 'no':<5} {'yes' if ok else 'NO'}")
    print(f"found <=> best AUC above the detectable effect: {agree} of {n} rows ({agree / max(n, 1):.0%})")
    ok_test = sum((r[5] >= r[3]["critical_auc"]) == r[6] for r in rows if r[3] is not None)
    print(f"its test passes <=> best AUC at or above the critical AUC (the 50 % point): {ok_test} of {n} rows "
          "(found also needs the top-K lists to pass raw and distinct)")


def planted(run: str, draws: int) -> None:
    from fercore.analysis import estimators as est
    from fercore.analysis.power import au_power, planted_rate
    from fercore.data.facs import presence
    from fercore.store.reader import open_run

    reader = open_run(run)
    fs = reader.faceset()
    crit = reader.analysis_info()["criteria"]
    units = est.unit_table(fs.groups, fs.labels, presence(fs.aus).astype(np.float64), len(fs.class_names))
    layer = reader.layers[-1]
    pw = au_power(units, reader.evidence(layer)["p_emotion"], alpha=crit["alpha"], margin=crit["min_auc"],
                  min_minority=crit["min_minority"])
    thr = float(pw["bh_threshold"])
    print(f"\n{reader.name}, {layer}: closed-form power against planted units through the real test "
          f"({draws} draws per cell; found: p <= {thr:.2g})")
    print(f"{'AU':<5} {'units':>5} {'critical':>8} {'planted found':>13} {'detectable':>10} {'planted found':>13}")
    for a, au in enumerate(fs.au_ids):
        if not np.isfinite(pw["detectable_auc"][a]):
            continue
        c, d = float(pw["critical_auc"][a]), float(pw["detectable_auc"][a])
        kw = dict(margin=crit["min_auc"], min_minority=crit["min_minority"], draws=draws, seed=a)
        print(f"AU{int(au):<3} {int(units.minority[a]):>5} {c:>8.3f} {planted_rate(units, a, c, thr, **kw):>13.3f} "
              f"{d:>10.3f} {planted_rate(units, a, d, thr, **kw):>13.3f}")
    print("(expected: 0.5 at the critical AUC, 0.8 at the detectable one; 'units': the AU's minority units)")


def speed(run: str, repeat: int) -> None:
    from fercore.analysis import analyze as an
    from fercore.analysis import estimators as est

    def bare(units, p, **kw):
        n = units.present.shape[1]
        nan = np.full(n, np.nan)
        return {"detectable_auc": nan, "detectable_r": nan, "critical_auc": nan,
                "power_status": np.zeros(n, np.int8), "bh_threshold": np.float64(np.nan)}

    an.analyze(run)  # the null network built and analysed once, outside the timing
    times = {"with power": [], "without": []}
    for _ in range(repeat):
        for label in times:
            t0 = time.perf_counter()
            if label == "without":
                with mock.patch.object(an, "au_power", bare), \
                        mock.patch.object(est, "_delong_var", lambda x, r, pos: np.zeros(x.shape[1])):
                    an.analyze(run, null=None)
            else:
                an.analyze(run, null=None)
            times[label].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"\nanalyze {run} (null=None, {repeat} interleaved runs, median): with the power figures and AUC "
          f"intervals {med['with power']:.2f} s, without {med['without']:.2f} s; ratio "
          f"{med['with power'] / med['without']:.3f} (target <= 1.3)")
    an.analyze(run)  # leave the run analysed against its null


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-phantom", action="store_true", help="skip the phantom-au table")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--planted", metavar="RUN", help="check the closed form against planted units on RUN")
    ap.add_argument("--draws", type=int, default=400)
    ap.add_argument("--speed", metavar="RUN", help="time analyze on RUN with and without power")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not args.no_phantom:
        os.environ.setdefault("FERCORE_CACHE", str(Path(tempfile.gettempdir()) / "bench-honest"))
        print(f"cache: {os.environ['FERCORE_CACHE']}", flush=True)
        phantom_table(args.seeds)
    if args.planted:
        planted(args.planted, args.draws)
    if args.speed:
        speed(args.speed, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
