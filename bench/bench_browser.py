"""Dashboard speed in a real browser: time from a click to the page's script state ``notRunning``.

A ``streamlit run app/main.py`` server is started over the cache (``$FERCORE_CACHE`` or
``cache/``) and Debian's Chromium, driven by Playwright, clicks through it. Each figure is the
time from the click (dispatched in the page) until ``[data-testid=stApp]`` has gone through
``data-test-script-state=running`` back to ``notRunning``: the server's script run plus the round
trips and the browser's work until the run is reported finished (charts may still be painting).

Targets on the default run: a view switch at most 300 ms; a filter switch (the picker, a gallery
tile) and a heat-map cell at most 200 ms; the Runs view comparing three runs at most 1 s. The
round robin visits Filters, FAU map, Evidence, Upload and Overview; each view's own row follows the
round robin's.

Interactions inside a view rerun only the fragment that shows what they change (the Filters view's
gallery and open filter, the FAU map's map and picked filter): a click on a gallery tile and a
click on a heat-map cell are timed from the pointer going down to the end of that run (the views
count their full runs and their fragments' runs in ``st.session_state["fercore_runs"]``; the
address must name the clicked tile's filter afterwards, or the bench stops). Each click opens a
filter not seen before, so its panels are drawn, not read from a cache.

The host's speed changes from hour to hour (these machines share their CPUs): a fixed JavaScript
workload, timed in the same page before and after the clicks, is printed beside the figures so
that two runs of this bench can be compared (scale by the ratio of their references).

    python bench/bench_browser.py                         # the newest run in the cache
    python bench/bench_browser.py --run <run name> --json figures.json

To measure a change, compare two checkouts in one run: ``--against DIR`` starts a second server
from another checkout of the project (``git worktree add /tmp/before <commit>``) over the same
cache, and the two pages take turns, one click each, through the same round robin, so both see
the same machine; it prints each view's median for both and their ratio.

    python bench/bench_browser.py --against /tmp/before --repeats 12
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run"]
IDLE = "[data-testid=stApp][data-test-script-state=notRunning]"

#: Clicks ``selector`` and resolves with the ms until the script state went running -> notRunning.
_TIMED_CLICK = """async (selector) => {
  const app = document.querySelector('[data-testid=stApp]');
  const el = document.querySelector(selector);
  if (!el) return -2;
  return await new Promise((resolve) => {
    let running = false;
    const t0 = performance.now();
    const obs = new MutationObserver((records) => {
      // a short run can go running -> notRunning between two callbacks: the records' old values say so
      if (records.some((r) => r.oldValue === 'running')) running = true;
      const s = app.getAttribute('data-test-script-state');
      if (s === 'running') running = true;
      if (running && s === 'notRunning') { obs.disconnect(); resolve(performance.now() - t0); }
    });
    obs.observe(app, {attributes: true, attributeOldValue: true, attributeFilter: ['data-test-script-state']});
    el.click();
    setTimeout(() => { obs.disconnect(); resolve(-1); }, 60000);
  });
}"""


#: A fixed workload (float arithmetic and string building), the ms it takes in the page.
_REFERENCE_JS = """() => {
  const t0 = performance.now();
  let x = 0, s = '';
  for (let i = 0; i < 3e6; i++) { x += Math.sqrt(i) * Math.sin(i); if (i % 1000 === 0) s += x.toFixed(3); }
  return s.length > 0 ? performance.now() - t0 : -1;
}"""


def reference_ms(page, n: int = 5) -> float:
    """Median ms of :data:`_REFERENCE_JS` in ``page`` (the browser's speed right now)."""
    return statistics.median(page.evaluate(_REFERENCE_JS) for _ in range(n))


#: Arms an observer that resolves (as ``window.__fercoreRun``) with the ms from the next key press
#: until the script state went running -> notRunning.
_ARM_KEY = """() => {
  const app = document.querySelector('[data-testid=stApp]');
  let t0 = null;
  document.addEventListener('keydown', () => { if (t0 === null) t0 = performance.now(); },
                            {capture: true, once: true});
  window.__fercoreRun = new Promise((resolve) => {
    let running = false;
    const obs = new MutationObserver((records) => {
      if (records.some((r) => r.oldValue === 'running')) running = true;
      const s = app.getAttribute('data-test-script-state');
      if (s === 'running') running = true;
      if (running && s === 'notRunning' && t0 !== null) { obs.disconnect(); resolve(performance.now() - t0); }
    });
    obs.observe(app, {attributes: true, attributeOldValue: true, attributeFilter: ['data-test-script-state']});
    setTimeout(() => { obs.disconnect(); resolve(-1); }, 60000);
  });
}"""


#: The same from the next pointer press (a click on a chart, which reports its selection when the
#: pointer comes up).
_ARM_POINTER = _ARM_KEY.replace("'keydown'", "'pointerdown'")


def _timed_mouse_click(page, x: float, y: float) -> float:
    """ms from a real mouse click at page point (x, y) to the end of the run it starts (-1: none)."""
    page.evaluate(_ARM_POINTER)
    page.mouse.click(x, y)
    return page.evaluate("() => window.__fercoreRun")


def _address_filter(page) -> str | None:
    import urllib.parse

    return dict(urllib.parse.parse_qsl(urllib.parse.urlparse(page.url).query)).get("filter")


def gallery_clicks(page, n: int) -> list[float]:
    """Click ``n`` tiles of the Filters view's gallery in turn (each another filter), each timed; the
    address must follow each click."""
    from app import loaders

    chart = page.locator("[data-testid=stVegaLiteChart] :is(canvas, svg.marks)").first
    chart.scroll_into_view_if_needed()
    box = chart.bounding_box()
    cell_w = loaders.GALLERY_TILE + loaders.GALLERY_PAD
    cell_h = loaders.GALLERY_TILE + 2 * 14 + loaders.GALLERY_PAD
    cells = [(r, c) for r in range(5) for c in range(loaders.GALLERY_COLS)]
    times = []
    for i in range(n):
        r, c = cells[(7 * i + 1) % len(cells)]  # a different tile each time
        before = _address_filter(page)
        x, y = box["x"] + 9 + c * cell_w + loaders.GALLERY_TILE / 2, box["y"] + 9 + r * cell_h + loaders.GALLERY_TILE / 2
        times.append(_timed_mouse_click(page, x, y))
        _settle(page)
        if _address_filter(page) == before:
            raise SystemExit(f"a click on the gallery's tile at row {r}, column {c} did not open another filter")
    return times


def _map_cell(page) -> tuple[float, float, dict]:
    """A point on a cell of the FAU map and the cell's tooltip (the map's cells are read by hovering)."""
    chart = page.locator("[data-testid=stVegaLiteChart] :is(canvas, svg.marks)").first
    chart.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    box = chart.bounding_box()
    tip = page.locator("#vg-tooltip-element")
    for fy in (0.1, 0.15, 0.2, 0.25, 0.3):
        for fx in (0.2, 0.3, 0.4, 0.5):
            x, y = box["x"] + box["width"] * fx, box["y"] + box["height"] * fy
            page.mouse.move(x, y)
            page.wait_for_timeout(250)
            if tip.is_visible():
                cells = [t.strip() for t in tip.inner_text().split("\n") if t.strip()]
                d = dict(zip(cells[0::2], cells[1::2], strict=False))
                if "filter" in d and "AU" in d:
                    return x, y, d
    raise SystemExit("no cell of the FAU map answered with a tooltip")


def map_clicks(page, n: int) -> list[float]:
    """Click ``n`` cells of the FAU map in turn (each another cell), each timed."""
    from app import charts

    x0, y0, _ = _map_cell(page)
    times = []
    for i in range(n):
        x, y = x0 + (i % 3) * charts.COL_PX, y0 + (i % 7) * charts.ROW_PX  # another cell each time
        page.mouse.move(x, y)
        times.append(_timed_mouse_click(page, x, y))
        _settle(page)
    page.mouse.move(1, 1)
    return times


def _server(port: int, env: dict | None = None, repo: Path = REPO) -> subprocess.Popen:
    """``streamlit run app/main.py`` of checkout ``repo`` on loopback ``port`` (environment
    ``env``, default this process's), returned once it answers its health check."""
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app/main.py", f"--server.port={port}",
                             "--server.address=127.0.0.1"], cwd=repo, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit("streamlit did not start")


def _settle(page) -> None:
    page.wait_for_selector(IDLE)
    page.wait_for_timeout(600)
    page.wait_for_selector(IDLE)


def _open_warmed(browser, url: str, run: str | None):
    """A new page on ``url``'s Overview (of ``run``), every view of :data:`VIEWS` visited once."""
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(300_000)
    page.goto(f"{url}/overview" + (f"?run={run}" if run else ""))
    _settle(page)
    for v in VIEWS:
        page.evaluate(_TIMED_CLICK, f"[data-testid=stSidebarNav] a[href$='/{v}']")
        _settle(page)
    return page


VIEWS = ["filters", "fau-map", "evidence", "upload", "overview"]


def compare(args) -> int:
    """Round robins of this checkout and of ``args.against`` in one browser, one click each in
    turn: per view the two medians and their ratio (figures of one run, on the same machine)."""
    from playwright.sync_api import sync_playwright

    other = args.against.resolve()
    if other == REPO or not (other / "app" / "main.py").is_file():
        raise SystemExit(f"--against {args.against}: not another checkout of the project (no app/main.py there, or "
                         f"this one); give another checkout "
                         f"(git worktree add /tmp/before <commit>)")
    from fercore.store.layout import cache_dir

    env = {**os.environ, "FERCORE_CACHE": str(cache_dir().resolve())}  # both read this checkout's cache
    names = {REPO: "this checkout", other: f"{other}"}
    procs = [_server(args.port, env, REPO), _server(args.port + 1, env, other)]
    times = {(repo, v): [] for repo in names for v in VIEWS}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pages = {repo: _open_warmed(browser, f"http://127.0.0.1:{args.port + k}", args.run)
                     for k, repo in enumerate(names)}
            for i in range(args.repeats * len(VIEWS)):
                v = VIEWS[i % len(VIEWS)]
                for repo, page in pages.items():
                    page.bring_to_front()
                    times[repo, v].append(page.evaluate(_TIMED_CLICK, f"[data-testid=stSidebarNav] a[href$='/{v}']"))
                    _settle(page)
            browser.close()
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
    a, b = list(names)
    print(f"\nA = {names[a]} ({a}), B = {names[b]}; {args.repeats} switches to each view, interleaved")
    print(f"{'switch to':12s} {'A median ms':>12s} {'B median ms':>12s} {'A / B':>7s}")
    out = []
    for v in VIEWS:
        ta, tb = ([t for t in times[r, v] if t >= 0] for r in (a, b))
        if not ta or not tb:
            continue
        ma, mb = statistics.median(ta), statistics.median(tb)
        print(f"{v:12s} {ma:12.0f} {mb:12.0f} {ma / mb:7.2f}")
        out.append({"view": v, "a_median_ms": round(ma), "b_median_ms": round(mb), "ratio": round(ma / mb, 3)})
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs while measuring)")
    if args.json:
        Path(args.json).write_text(json.dumps({"a": str(a), "b": str(b), "rows": out}, indent=1))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="run name to open (default: the one the dashboard opens first)")
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--port", type=int, default=8599)
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--against", type=Path, metavar="DIR",
                    help="another checkout of the project: compare the view switches of both, interleaved")
    args = ap.parse_args()
    if args.against:
        return compare(args)
    from playwright.sync_api import sync_playwright

    proc = _server(args.port)
    url = f"http://127.0.0.1:{args.port}"
    rows = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = _open_warmed(browser, url, args.run)
            refs = [reference_ms(page)]
            times, per_view = [], {v: [] for v in VIEWS}
            for i in range(args.repeats * len(VIEWS)):
                ms = page.evaluate(_TIMED_CLICK, f"[data-testid=stSidebarNav] a[href$='/{VIEWS[i % len(VIEWS)]}']")
                times.append(ms)
                per_view[VIEWS[i % len(VIEWS)]].append(ms)
                _settle(page)
            rows.append(("switch view (round robin over 5 views)", times, 300))
            rows += [(f"switch to {v} (of the round robin)", t, 300) for v, t in per_view.items()]

            page.evaluate(_TIMED_CLICK, "[data-testid=stSidebarNav] a[href$='/filters']")
            _settle(page)
            times = []
            for i in range(args.repeats + 2):
                picker = page.locator("[data-testid=stSelectbox] input[aria-label='Filter']")
                picker.focus()
                for _ in range(1 + i % 5):  # open the list and walk down it
                    page.keyboard.press("ArrowDown")
                page.locator("[role=option]").first.wait_for()
                page.evaluate(_ARM_KEY)
                page.keyboard.press("Enter")  # the filter is chosen: timed from this key press
                ms = page.evaluate("() => window.__fercoreRun")
                _settle(page)
                if i >= 2:  # the first two fill the caches of new filters
                    times.append(ms)
            rows.append(("switch filter (Filters view, Filter picker, Enter)", times, 200))

            times = gallery_clicks(page, args.repeats + 2)[2:]  # the first two are warm-up, as above
            rows.append(("open a filter (Filters view, click on a gallery tile)", times, 200))

            page.evaluate(_TIMED_CLICK, "[data-testid=stSidebarNav] a[href$='/fau-map']")
            _settle(page)
            times = map_clicks(page, args.repeats + 2)[2:]
            rows.append(("pick a cell (FAU map, click on the heat map)", times, 200))

            page.evaluate(_TIMED_CLICK, "[data-testid=stSidebarNav] a[href$='/runs']")
            _settle(page)
            # the chosen runs are the multiselect's tags, one line of "data set · model · accuracy · date" each
            chosen = page.locator("[data-testid=stMultiSelect]").first.inner_text()
            n_runs = sum(" · " in line for line in chosen.splitlines())
            times = []
            for _ in range(args.repeats):
                page.evaluate(_TIMED_CLICK, "[data-testid=stSidebarNav] a[href$='/overview']")
                _settle(page)
                times.append(page.evaluate(_TIMED_CLICK, "[data-testid=stSidebarNav] a[href$='/runs']"))
                _settle(page)
            rows.append((f"Runs view, {n_runs} runs compared", times, 1000))
            refs.append(reference_ms(page))
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"\n{'what':48s} {'median ms':>10s} {'max ms':>8s}  target ms")
    out = []
    for what, times, target in rows:
        bad = [t for t in times if t < 0]
        ok = [t for t in times if t >= 0]
        print(f"{what}: {[round(t) for t in times]}")
        if not ok:
            continue
        med, mx = statistics.median(ok), max(ok)
        print(f"{what:48s} {med:10.0f} {mx:8.0f}  {target}" + (f"  ({len(bad)} timed out)" if bad else ""))
        out.append({"what": what, "median_ms": round(med), "max_ms": round(mx), "target_ms": target, "n": len(ok)})
    load = os.getloadavg()[0]
    print(f"(load average {load:.1f} on {os.cpu_count()} CPUs while measuring; reference workload in the page "
          f"{refs[0]:.0f} ms before the clicks, {refs[1]:.0f} ms after)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": out, "load": load, "reference_ms": [round(r) for r in refs]},
                                              indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
