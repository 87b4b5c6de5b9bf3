"""Regenerate the dashboard's documentation from a fresh default build: the screenshots of every
view (docs/screenshots/), the measured dashboard figures in README.md and docs/dashboard.md, and
(with ``--stages``) the cost of each stage of the default build that weighs the build's progress
bar (``app/jobs.py`` ``STAGE_SECONDS``).

    python scripts/refresh_docs.py                    # the cache of $FERCORE_CACHE, else cache/
    python scripts/refresh_docs.py --stages           # also time a default build in a fresh cache (~3 min)

Steps: build the default run (cached when it exists); train, record and analyse two small
comparison runs on the same phantom faces so that the Runs view has three runs to compare
(``phantom-multitask``, taught the AUs too, and ``phantom-default`` with another initialisation, two folds each);
``bench/bench_app.py`` (server time, AppTest) and ``bench/bench_browser.py`` (real browser, click
to ``notRunning``) on the default run; the screenshots through the real-browser test in
screenshot mode, and the Sequences view's on a run of phantom sequences (``phantom-default``,
folds 0-1, on 40 subjects x 8 sequences x 16 frames, in ``<cache>/docs-sequences``); then README.md's measured-table rows that start with ``| dashboard`` and the marked block of
docs/dashboard.md (``<!-- refresh_docs:speed -->``) are rewritten with the figures. CI does not run
this script (it trains for minutes); run it after a change that alters what the views show.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

#: The comparison runs of the Runs view: (preset, overrides).
EXTRA_RUNS = (("phantom-multitask", {"folds": (1, 2)}), ("phantom-default", {"folds": (0, 1), "init_seed": 1}))


def build_default(progress_log: list) -> Path:
    from fercore.pipeline import build_default as build

    t0 = time.perf_counter()
    last = [None]

    def progress(done, total, stage):
        name = stage.split(" ")[0]
        if name != last[0]:
            progress_log.append((name, time.perf_counter() - t0))
            last[0] = name

    run = build(progress=progress)
    progress_log.append(("end", time.perf_counter() - t0))
    return Path(run)


def stage_costs(log: list) -> dict[str, float]:
    return {a: round(tb - ta, 1) for (a, ta), (_, tb) in zip(log, log[1:], strict=False) if a not in ("done", "end")}


def extra_runs(default_run: Path) -> list[Path]:
    from fercore.analysis.analyze import analyze
    from fercore.recording.record import record
    from fercore.store.reader import open_run
    from fercore.training.presets import train_preset

    data = Path(open_run(default_run).config["faceset"]["path"])
    out = []
    for preset, overrides in EXTRA_RUNS:
        run = Path(train_preset(data, preset, **overrides))
        reader = open_run(run)
        if not reader.has_records:
            record(run)
        if not open_run(run).has_stats or (open_run(run).analysis_info().get("null") or None) != "untrained":
            analyze(run, null="untrained")
        out.append(run)
    return out


#: The Sequences view's screenshot shows a run on phantom sequences, kept in a cache of its own
#: (``<cache>/docs-sequences``) so that the Runs view and the benches see only the three runs above.
SEQUENCE_DATA = {"n_subjects": 40, "n_frames": 16, "seed": 0}
SEQUENCE_RUN = ("phantom-default", {"folds": (0, 1)})


def sequence_run(cache: Path) -> Path:
    """Generate (or reuse) phantom sequences in ``cache`` and train, record and analyse a run on
    them against the untrained null; returns the run directory."""
    from fercore.analysis.analyze import analyze
    from fercore.data.phantom.sequences import generate_sequences
    from fercore.recording.record import record
    from fercore.store.faceset_h5 import save_faceset
    from fercore.store.reader import open_run
    from fercore.training.presets import train_preset

    data = cache / "datasets" / "phantom-seq.h5"
    if not data.exists():
        data.parent.mkdir(parents=True, exist_ok=True)
        save_faceset(generate_sequences(SEQUENCE_DATA["n_subjects"], n_frames=SEQUENCE_DATA["n_frames"],
                                        seed=SEQUENCE_DATA["seed"]), data)
    preset, overrides = SEQUENCE_RUN
    run = Path(train_preset(data, preset, root=cache / "runs", **overrides))
    if not open_run(run).has_records:
        record(run)
    if not open_run(run).has_stats or (open_run(run).analysis_info().get("null") or None) != "untrained":
        analyze(run, null="untrained")
    return run


def sequences_screenshot(cache: Path, run: Path, out: Path, port: int = 8631) -> None:
    """The Sequences view of ``run`` in Chromium, as the browser tests take their screenshots."""
    sys.path[:0] = [str(REPO / "bench"), str(REPO / "tests" / "app")]
    from bench_browser import CHROMIUM, CHROMIUM_ARGS, IDLE, _server
    from playwright.sync_api import sync_playwright
    from test_browser import shoot

    proc = _server(port, dict(os.environ, FERCORE_CACHE=str(cache)))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(f"http://127.0.0.1:{port}/sequences?run={run.name}&layer=features.conv3")
            page.get_by_role("heading", name="Sequences").first.wait_for()
            page.wait_for_selector(IDLE)
            page.locator("[data-testid=stImage] img").first.wait_for()  # the frame
            page.locator("[data-testid=stVegaLiteChart] :is(canvas, svg.marks)").first.wait_for()  # the curves
            page.wait_for_timeout(1500)
            page.wait_for_selector(IDLE)
            if page.locator("[data-testid=stException]").count():
                raise SystemExit("the Sequences view shows an exception")
            shoot(page, out)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_json(cmd: list[str], env: dict) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    subprocess.run([*cmd, "--json", path], cwd=REPO, env=env, check=True)
    return json.loads(Path(path).read_text())


def replace_block(path: Path, marker: str, text: str) -> None:
    """Replace what stands between ``<!-- refresh_docs:marker -->`` and ``<!-- /refresh_docs:marker -->``."""
    body = path.read_text()
    pat = re.compile(rf"(<!-- refresh_docs:{marker} -->\n).*?(<!-- /refresh_docs:{marker} -->)", re.S)
    if not pat.search(body):
        raise SystemExit(f"{path}: no <!-- refresh_docs:{marker} --> block")
    path.write_text(pat.sub(lambda m: m.group(1) + text + m.group(2), body))


def replace_rows(path: Path, prefix: str, rows: str) -> None:
    """Replace the table rows of ``path`` that start with ``prefix`` by ``rows``, where the first
    stood (a comment marker inside a Markdown table would end the table)."""
    lines = path.read_text().splitlines(keepends=True)
    at = [i for i, line in enumerate(lines) if line.startswith(prefix)]
    if not at:
        raise SystemExit(f"{path}: no table row starting with {prefix!r}")
    keep = [line for i, line in enumerate(lines) if i not in at]
    keep[at[0]:at[0]] = [rows]
    path.write_text("".join(keep))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", action="store_true", help="also time a default build in a fresh cache")
    ap.add_argument("--no-bench", action="store_true", help="screenshots only")
    args = ap.parse_args()
    env = dict(os.environ)
    from fercore.store.layout import cache_dir

    print(f"cache: {cache_dir()}")
    if args.stages:
        with tempfile.TemporaryDirectory() as fresh:
            os.environ["FERCORE_CACHE"] = fresh
            log: list = []
            build_default(log)
            print("stage costs of a fresh default build (s):", json.dumps(stage_costs(log)),
                  f"(load {os.getloadavg()[0]:.1f}); put them in app/jobs.py STAGE_SECONDS")
            os.environ.pop("FERCORE_CACHE")
            if "FERCORE_CACHE" in env:
                os.environ["FERCORE_CACHE"] = env["FERCORE_CACHE"]
    log = []
    default = build_default(log)
    print(f"default run: {default.name} (ready in {log[-1][1]:.1f} s)")
    for run in extra_runs(default):
        print(f"comparison run: {run.name}")

    if not args.no_bench:
        app = run_json([sys.executable, "bench/bench_app.py", "--run", str(default)], env)
        web = run_json([sys.executable, "bench/bench_browser.py", "--run", default.name], env)
        server = {r["what"].split(" (")[0].split(",")[0]: r for r in app["rows"]}
        browser = {r["what"].split(" (")[0].split(",")[0]: r for r in web["rows"]}
        lines = ["| what | browser: click to idle, median ms | server (AppTest) median ms | target ms |",
                 "|---|---:|---:|---:|"]
        for key, label in (("switch view", "switch view (round robin over 5 views)"),
                           ("switch filter", "switch filter (Filters view)"),
                           ("Runs view", "Runs view, three runs compared")):
            b, s = browser.get(key), server.get(key)
            lines.append(f"| {label} | {b['median_ms'] if b else '–'} | {s['median_ms'] if s else '–'} | "
                         f"{(b or s or {}).get('target_ms', '–')} |")
        for r in web["rows"]:  # the round robin's views one by one
            if r["what"].startswith("switch to "):
                lines.append(f"| {r['what']} | {r['median_ms']} | – | {r['target_ms']} |")
        for r in app["rows"]:
            if r["what"].startswith(("switch statistic", "upload", "face models")):
                lines.append(f"| {r['what']} | – | {r['median_ms']} | {r['target_ms']} |")
        when = time.strftime("%Y-%m-%d")
        refs = web.get("reference_ms") or []
        speed = ("\n".join(lines) + f"\n\nMeasured {when} on the default run `{default.name}` with "
                 f"`python scripts/refresh_docs.py` (load average {web['load']:.1f} in the browser bench, "
                 f"{app['load']:.1f} in the server bench, 2 cores). The host's speed at the time, as the "
                 f"benches' fixed reference workloads took it: {' / '.join(map(str, refs))} ms in the page "
                 f"(before / after the clicks), {app.get('reference_ms', '–')} ms in Python; a later run "
                 f"compares by the ratio of its references.\n")
        replace_block(REPO / "docs" / "dashboard.md", "speed", speed)
        sv, sf = server.get("switch view"), server.get("switch filter")
        bv, bf, br = browser.get("switch view"), browser.get("switch filter"), browser.get("Runs view")
        up = next((r for r in app["rows"] if r["what"].startswith("upload:")), None)
        views = {v: browser.get(f"switch to {v}") for v in ("filters", "upload", "overview", "fau-map", "evidence")}
        per_view = " / ".join(str(r["median_ms"]) if r else "–" for r in views.values())
        readme = (f"| dashboard, click to idle in a real browser: switch view to Filters / Upload / Overview / FAU map / "
                  f"Evidence (all five: {bv['median_ms']}); switch filter; Runs view with three runs | "
                  f"{per_view} ms; {bf['median_ms']} ms; {br['median_ms']} ms | `python bench/bench_browser.py` |\n"
                  f"| dashboard: the same, server time; an upload's analysis | "
                  f"{sv['median_ms']} / {sf['median_ms']} ms; {up['median_ms'] if up else '–'} ms | "
                  f"`python bench/bench_app.py` |\n")
        replace_rows(REPO / "README.md", "| dashboard", readme)

    shots = REPO / "docs" / "screenshots"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "browser", "tests/app/test_browser.py", "-k",
                    "every_view", "-p", "no:cacheprovider"], cwd=REPO, check=True,
                   env={**env, "FERCORE_SCREENSHOTS": str(shots), "FERCORE_SCREENSHOTS_RUN": default.name})
    from fercore.store.layout import cache_dir

    seq_cache = cache_dir() / "docs-sequences"
    seq = sequence_run(seq_cache)
    print(f"sequence run: {seq.name} (in {seq_cache})")
    sequences_screenshot(seq_cache, seq, shots / "sequences.png")
    print(f"screenshots: {', '.join(sorted(p.name for p in shots.glob('*.png')))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
