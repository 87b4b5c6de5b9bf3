"""End to end in a real browser: Debian's Chromium, driven by Playwright, against live
``streamlit run app/main.py`` servers that this module starts and always stops.

Two servers:

- ``server``, over the tiny run's cache (with its null network): every view is opened, a real
  face photo is uploaded (and nothing new may appear on disk), a heat-map cell is clicked (the
  Filter and AU pickers must follow), a box dragged over four cells selects them, and a link with
  run/layer/filter/AU reopens that view.
- ``build_server``, started exactly as the README says (``streamlit run app/main.py``, only the
  port added, no ``--server.address``) over an empty cache: it must listen on 127.0.0.1 only,
  and it builds the default run in a server-side job. So that the build takes seconds, not three
  minutes, the test hook ``FERCORE_APP_DEFAULT_BUILD`` (:data:`app.loaders.DEFAULT_BUILD_ENV`)
  makes the default the tiny phantom run of ``tests/conftest.py`` (``TINY_PHANTOM``, a tiny
  ``TINY_TRAIN`` over three folds). A second tab shows the same progress with an explanation,
  the first tab is closed, and the build completes anyway.

With ``FERCORE_SCREENSHOTS=<folder>`` the first test writes the README's screenshots from the
run(s) in the normal cache (``$FERCORE_CACHE`` or ``cache/``) instead of the tiny test run,
``FERCORE_SCREENSHOTS_RUN=<run name>`` choosing the run (``scripts/refresh_docs.py`` does this):

    FERCORE_SCREENSHOTS=docs/screenshots python -m pytest -q -m browser tests/app/test_browser.py -k every_view
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run"]
IDLE = "[data-testid=stApp][data-test-script-state=notRunning]"
SCREENSHOTS = os.environ.get("FERCORE_SCREENSHOTS")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(cmd: list[str], env: dict, port: int):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")
    log = tempfile.NamedTemporaryFile("w+b", prefix="fercore-streamlit-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    proc.log_path = log.name  # read by _server_log when a test fails
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            pytest.fail(f"streamlit did not start on {url} (exit code {proc.poll()})")
        time.sleep(0.3)


def _server_log(proc, tail: int = 4000) -> str:
    """The last ``tail`` characters the server printed (for a failing assertion's message)."""
    try:
        return Path(proc.log_path).read_text(errors="replace")[-tail:]
    except (AttributeError, OSError):
        return "(no server log)"


def _stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if getattr(proc, "log_path", None):
        Path(proc.log_path).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def shots_dir(tmp_path_factory) -> Path:
    d = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path_factory.mktemp("screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def server_tmp(tmp_path_factory) -> Path:
    """The server's own temporary folder (``TMPDIR``): an upload must leave it empty."""
    return tmp_path_factory.mktemp("server-tmp")


@pytest.fixture(scope="module")
def server(request, server_tmp):
    """URL of a dashboard server over the tiny run's cache (or the normal cache for screenshots)."""
    env = dict(os.environ, TMPDIR=str(server_tmp))
    if not SCREENSHOTS:
        env["FERCORE_CACHE"] = str(request.getfixturevalue("tiny_cache"))
        request.getfixturevalue("tiny_null")  # the controls need the null network
    proc, url = _local_server(env)
    try:
        yield url
    finally:
        _stop(proc)


def _local_server(env: dict):
    """(process, URL) of ``streamlit run app/main.py`` on a free port of 127.0.0.1."""
    port = _free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.address=127.0.0.1",
           f"--server.port={port}", "--server.headless=true", "--browser.gatherUsageStats=false"]
    return _start(cmd, env, port)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def new_page(browser, width: int = 1600):
    page = browser.new_page(viewport={"width": width, "height": 1000}, device_scale_factor=1)
    page.set_default_timeout(180_000)
    return page


@pytest.fixture(scope="module")
def page(browser, server):
    p = new_page(browser)
    yield p
    p.close()


def settle(page, heading: str) -> None:
    """Wait until the script has run and the view's heading is on the page."""
    page.get_by_role("heading", name=heading).first.wait_for()
    page.wait_for_selector(IDLE)
    page.wait_for_timeout(800)  # charts and images finish drawing after the script stops
    page.wait_for_selector(IDLE)


def shoot(page, path: Path) -> None:
    """Screenshot of the whole view (Streamlit scrolls inside its main block, so the window is
    made as tall as the content first)."""
    width = page.viewport_size["width"]
    js = ("Math.max(...[...document.querySelectorAll('[data-testid=stMain], [data-testid=stMainBlockContainer]')]"
          ".map(e => e.scrollHeight), 800)")
    for _ in range(2):  # images and charts that finish loading make the page taller
        page.set_viewport_size({"width": width, "height": min(int(page.evaluate(js)) + 40, 8000)})
        page.wait_for_timeout(1200)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": width, "height": 1000})


def _tooltip(page, x: float, y: float, wait_ms: int = 1_500) -> dict:
    """The chart's tooltip at a point of the page, as {field: value} (empty where there is none).
    The pointer leaves the chart first, so a tooltip read here is the point's, never the last one's."""
    from playwright.sync_api import TimeoutError as Timeout

    tip = page.locator("#vg-tooltip-element")
    page.mouse.move(1, 1)
    try:
        tip.wait_for(state="hidden", timeout=2_000)
    except Timeout:
        pass
    page.mouse.move(x, y)
    try:
        tip.wait_for(state="visible", timeout=wait_ms)
    except Timeout:  # nothing under the pointer
        return {}
    cells = [c.strip() for c in tip.inner_text().split("\n") if c.strip()]
    return dict(zip(cells[0::2], cells[1::2], strict=False))


def _edge(page, x: float, y: float, dx: float, dy: float, tip: dict) -> float:
    """How far (a fraction of (dx, dy)) from (x, y) the cell whose tooltip is ``tip`` reaches: a
    binary search over the tooltips on the way, to about a thirtieth of the step."""
    inside, outside = 0.0, 1.0
    for _ in range(5):
        mid = (inside + outside) / 2
        at = _tooltip(page, x + dx * mid, y + dy * mid, wait_ms=600)
        if (at.get("filter"), at.get("AU")) == (tip["filter"], tip["AU"]):
            inside = mid
        else:
            outside = mid
    return (inside + outside) / 2


def _find_cell(page, rows: list[int], aus: list[str], row: int, col: int) -> tuple[float, float]:
    """The centre of the cell the FAU map draws at row ``row`` × column ``col`` (``rows``: the
    filter of each row, ``aus``: the column names). The cells' size is fixed (``charts.ROW_PX`` by
    ``charts.COL_PX``), so one cell named by its tooltip, its left and top edges found, locates
    every other; the target's own tooltip is checked."""
    from app import charts

    canvas = page.locator("[data-testid=stVegaLiteChart] :is(canvas, svg.marks)").first
    canvas.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    box = canvas.bounding_box()
    tip = {}
    for fy in np.linspace(0.05, 0.5, 10):  # a point inside the map, below its header
        for fx in np.linspace(0.15, 0.6, 6):
            x0, y0 = box["x"] + box["width"] * fx, box["y"] + box["height"] * fy
            tip = _tooltip(page, x0, y0, wait_ms=400)  # most points of the scan are on a cell
            if "filter" in tip and "AU" in tip:
                break
        if "filter" in tip and "AU" in tip:
            break
    assert "filter" in tip, "no FAU map cell answered with a tooltip"
    r0, c0 = rows.index(int(tip["filter"])), aus.index(tip["AU"])
    # the point found may lie anywhere in its cell: move it to the centre (a box dragged from
    # there must cover the centres of the cells it is meant to select)
    x0 += (0.5 - _edge(page, x0, y0, -charts.COL_PX, 0, tip)) * charts.COL_PX
    y0 += (0.5 - _edge(page, x0, y0, 0, -charts.ROW_PX, tip)) * charts.ROW_PX
    x, y = x0 + (col - c0) * charts.COL_PX, y0 + (row - r0) * charts.ROW_PX
    at = _tooltip(page, x, y)
    assert (at.get("filter"), at.get("AU")) == (str(rows[row]), aus[col]), (at, rows[row], aus[col])
    return x, y


def no_exceptions(page) -> None:
    assert page.locator("[data-testid=stException]").count() == 0
    assert page.locator("[data-testid=stAlertContentError]").count() == 0


def upload_face(page, png: bytes) -> None:
    """Go to the Upload view, upload the photo and wait for its whole analysis (no error)."""
    page.locator("[data-testid=stSidebarNav] a[href$='/upload']").click()
    settle(page, "Upload a face")
    page.locator("[data-testid=stFileUploader] input[type=file]").set_input_files(
        files=[{"name": "astronaut.png", "mimeType": "image/png", "buffer": png}])
    page.get_by_text("Predicted expression").wait_for()
    settle(page, "Grad-CAM per class, weighted by the class probability")
    no_exceptions(page)


def query(page) -> dict:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlparse(page.url).query))


# ------------------------------------------------------------------------- the tiny run's server
def test_every_view_and_an_upload(server, page, shots_dir, face_png):
    run = os.environ.get("FERCORE_SCREENSHOTS_RUN")  # which run the screenshots show
    page.goto(f"{server}/overview" + (f"?run={run}" if run else ""))
    settle(page, "Overview")
    no_exceptions(page)
    page.get_by_text("Mean test accuracy").first.wait_for(timeout=60_000)
    page.get_by_text("within-emotion permutation test", exact=False).first.wait_for(timeout=60_000)  # the funnel
    assert page.get_by_text("No null network yet").count() == 0
    page.locator("[data-testid=stVegaLiteChart] :is(canvas, svg.marks)").first.wait_for()  # the confusion matrix
    shoot(page, shots_dir / "overview.png")
    # the other tabs are drawn when clicked (each click reruns the page; the address names the tab)
    page.get_by_role("tab", name="Learning curves").click()
    page.get_by_text("Show each fold's curve").wait_for()
    settle(page, "Overview")
    page.locator("[data-testid=stVegaLiteChart] :is(canvas, svg.marks)").first.wait_for()
    assert query(page).get("tab") == "curves"
    shoot(page, shots_dir / "overview_curves.png")
    page.get_by_role("tab", name="Data set").click()
    page.locator("[data-testid=stImage] img").first.wait_for()  # the montage
    settle(page, "Overview")
    assert page.locator("[data-testid=stVegaLiteChart]").count() == 0 and query(page).get("tab") == "data"
    no_exceptions(page)

    page.locator("[data-testid=stSidebarNav] a[href$='/filters']").click()
    settle(page, "Filters")
    no_exceptions(page)
    page.locator("[data-testid=stVegaLiteChart] :is(canvas, svg.marks)").first.wait_for()  # the filter gallery
    page.locator("[data-testid=stImage] img").nth(2).wait_for()  # top patches, sources, projections
    shoot(page, shots_dir / "filters.png")

    page.locator("[data-testid=stSidebarNav] a[href$='/fau-map']").click()
    settle(page, "FAU map")
    no_exceptions(page)
    page.locator("[data-testid=stVegaLiteChart] :is(canvas, svg.marks)").first.wait_for()
    shoot(page, shots_dir / "fau_map.png")

    page.locator("[data-testid=stSidebarNav] a[href$='/evidence']").click()
    settle(page, "Evidence")
    no_exceptions(page)
    page.locator("[data-testid=stDataFrame]").first.wait_for()
    page.locator("[data-testid=stVegaLiteChart] :is(canvas, svg.marks)").first.wait_for()  # the AU co-occurrence
    shoot(page, shots_dir / "evidence.png")

    page.locator("[data-testid=stSidebarNav] a[href$='/sequences']").click()
    settle(page, "Sequences")
    no_exceptions(page)  # the phantom still images: the view says what to build instead
    page.get_by_text("keeps no sequences", exact=False).first.wait_for(timeout=60_000)

    page.locator("[data-testid=stSidebarNav] a[href$='/runs']").click()
    settle(page, "Runs")
    no_exceptions(page)
    page.locator("[data-testid=stDataFrame]").first.wait_for()
    shoot(page, shots_dir / "runs.png")

    upload_face(page, face_png)
    assert page.locator("[data-testid=stMetricValue]").first.inner_text().strip()
    assert page.locator("[data-testid=stImage] img").count() > 8  # crop, Grad-CAM and activation overlays
    page.get_by_text("seen only drawn faces", exact=False).first.wait_for(timeout=60_000)  # a phantom-trained run
    shoot(page, shots_dir / "upload.png")

    for name in ("overview", "filters", "fau_map", "evidence", "runs", "upload"):
        assert (shots_dir / f"{name}.png").stat().st_size > 10_000


def test_bad_upload_shows_a_message(server, page):
    page.goto(f"{server}/upload")
    settle(page, "Upload a face")
    page.locator("[data-testid=stFileUploader] input[type=file]").set_input_files(
        files=[{"name": "notes.png", "mimeType": "image/png", "buffer": io.BytesIO(b"not a picture").getvalue()}])
    page.get_by_text("not an image").first.wait_for()
    page.wait_for_selector(IDLE)
    assert page.locator("[data-testid=stException]").count() == 0


def _files(*roots: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for root in roots:
        if root.is_dir():
            for p in root.rglob("*"):
                if p.is_file():
                    st = p.stat()
                    out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.mark.skipif(bool(SCREENSHOTS), reason="checks the tiny test cache")
def test_an_upload_writes_nothing_to_disk(server, browser, tiny_cache, server_tmp, face_png):
    """The photo stays in the server's memory: no new or changed file in the cache folder, the
    server's temporary folder, the system temporary folder or ~/.streamlit."""
    import tempfile

    watched = (tiny_cache, server_tmp, Path(tempfile.gettempdir()), Path.home() / ".streamlit")
    p = new_page(browser)
    try:
        p.goto(f"{server}/upload")
        settle(p, "Upload a face")
        time.sleep(0.5)
        before = _files(*watched[:2], watched[3])
        tmp_before = {f for f in os.listdir(watched[2])}
        marker = face_png + b"fercore-privacy-marker"  # a PNG with trailing bytes: decodes the same
        p.locator("[data-testid=stFileUploader] input[type=file]").set_input_files(
            files=[{"name": "private.png", "mimeType": "image/png", "buffer": marker}])
        p.get_by_text("Predicted expression").wait_for()
        settle(p, "Grad-CAM per class, weighted by the class probability")
        after = _files(*watched[:2], watched[3])
        assert after == before, {k: v for k, v in after.items() if before.get(k) != v}
        new_tmp = {f for f in os.listdir(watched[2])} - tmp_before
        for name in new_tmp:  # other programs share /tmp: only a file holding the photo would count
            path = Path(watched[2]) / name
            if path.is_file() and path.stat().st_size < 50_000_000:
                assert b"fercore-privacy-marker" not in path.read_bytes(), path
    finally:
        p.close()


@pytest.mark.skipif(bool(SCREENSHOTS), reason="checks the tiny test run")
def test_clicking_a_heat_map_cell_sets_the_pickers(server, page, tiny_run):
    from fercore.store.reader import open_run

    ev = open_run(tiny_run).evidence("features.conv3")
    order = [int(f) for f in ev["order_evidence"]]
    au_ids = [int(a) for a in ev["au_ids"]]
    row = 1
    col = next(c for c in range(len(au_ids)) if c != int(ev["judged"][order[row]]))
    want_f, want_au = order[row], au_ids[col]

    page.goto(f"{server}/fau-map?layer=features.conv3&stat=share&distinct=0")
    settle(page, "FAU map")
    assert query(page).get("filter") != str(want_f) or query(page).get("au") != f"AU{want_au}"

    # The map's CSV is made when its button is clicked (not on every run): the file is the map.
    with page.expect_download(timeout=30_000) as dl:
        page.get_by_role("button", name="Heat map data (CSV)").click()
    assert dl.value.suggested_filename == "features.conv3_share_raw.csv"
    lines = Path(dl.value.path()).read_text().splitlines()
    header = lines[0].split(",")
    assert header[:3] == ["filter", "stage reached", "KL selectivity"] and header[3:] == [f"AU{a}" for a in au_ids]
    assert [ln.split(",")[0] for ln in lines[1:]] == [f"filter {f}" for f in order]
    for cell in (c for ln in lines[1:] for c in ln.split(",")[2:] if c):
        assert len(cell.lstrip("-").replace(".", "").lstrip("0")) <= 3 or "e" in cell, cell  # 3 significant digits
    page.wait_for_selector(IDLE)
    x, y = _find_cell(page, order, [f"AU{a}" for a in au_ids], row, col)
    page.mouse.click(x, y)
    page.get_by_role("button", name=f"Open filter #{want_f} in the Filters view").wait_for(timeout=30_000)
    page.wait_for_selector(IDLE)
    assert query(page).get("filter") == str(want_f) and query(page).get("au") == f"AU{want_au}"
    no_exceptions(page)
    page.get_by_role("button", name=f"Open filter #{want_f} in the Filters view").click()
    settle(page, "Filters")
    page.get_by_role("heading", name=f"features.conv3 filter #{want_f} under the controls").wait_for()
    page.get_by_text(f"AU{want_au}", exact=False).first.wait_for(timeout=60_000)


@pytest.mark.skipif(bool(SCREENSHOTS), reason="checks the tiny test run")
def test_a_box_dragged_over_the_map_selects_the_cells_under_it(server, page, tiny_run):
    from app import charts
    from fercore.store.reader import open_run

    ev = open_run(tiny_run).evidence("features.conv3")
    order = [int(f) for f in ev["order_evidence"]]
    aus = [f"AU{int(a)}" for a in ev["au_ids"]]
    page.goto(f"{server}/fau-map?layer=features.conv3&stat=share&distinct=0")
    settle(page, "FAU map")
    x, y = _find_cell(page, order, aus, 2, 3)  # the box spans rows 2-3 and columns 3-4
    page.mouse.move(x - 0.3 * charts.COL_PX, y - 0.3 * charts.ROW_PX)
    page.mouse.down()
    page.mouse.move(x + 1.3 * charts.COL_PX, y + 1.3 * charts.ROW_PX, steps=8)
    page.mouse.up()
    page.get_by_text("4 cells selected", exact=False).first.wait_for(timeout=30_000)
    page.wait_for_selector(IDLE)
    picked = (query(page).get("filter"), query(page).get("au"))
    assert picked in {(str(order[r]), aus[c]) for r in (2, 3) for c in (3, 4)}  # the strongest of the four
    no_exceptions(page)


@pytest.mark.skipif(bool(SCREENSHOTS), reason="checks the tiny test run")
def test_a_link_reopens_the_view(server, browser, tiny_run):
    from fercore.store.reader import open_run

    ev = open_run(tiny_run).evidence("features.conv2")
    f, au = int(ev["order_evidence"][-1]), int(ev["au_ids"][2])
    p = new_page(browser)  # a new browser session: only the address carries the view
    try:
        p.goto(f"{server}/filters?run={tiny_run.name}&layer=features.conv2&filter={f}&au=AU{au}&distinct=1")
        settle(p, "Filters")
        no_exceptions(p)
        p.get_by_role("heading", name=f"features.conv2 filter #{f} under the controls").wait_for()
        p.get_by_role("heading", name=f"features.conv2 filter #{f}: top", exact=False).first.wait_for()
        p.get_by_text("(distinct)", exact=False).first.wait_for(timeout=60_000)
        assert p.get_by_text(f"**AU{au}", exact=False).count() == 0  # markdown rendered, not raw
        q = query(p)
        assert (q["run"], q["layer"], q["filter"], q["au"], q["distinct"]) == \
            (tiny_run.name, "features.conv2", str(f), f"AU{au}", "1")
        p.goto(f"{server}/overview?run=no-such-run-0000")
        settle(p, "Overview")
        p.get_by_text("no-such-run-0000", exact=False).first.wait_for(timeout=60_000)  # named, not a silent fall-back
    finally:
        p.close()


# --------------------------------------------------------------- the README's command, empty cache
def _listening(port: int) -> list[tuple[str, str]]:
    """(file, local address) of every listening TCP socket on ``port`` (from /proc/net)."""
    out = []
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            parts = line.split()
            local, state = parts[1], parts[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                out.append((name, local.rsplit(":", 1)[0]))
    return out


def _other_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback."""
    try:
        text = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        text = ""
    return [a for a in text.split() if "." in a and not a.startswith("127.")]


@pytest.fixture(scope="module")
def build_server(tmp_path_factory):
    """``streamlit run app/main.py`` as README says (port added), over an empty cache whose
    default build is the tiny phantom run."""
    from conftest import TINY_K, TINY_PHANTOM, TINY_TRAIN

    cache = tmp_path_factory.mktemp("empty-cache")
    spec = {"phantom": TINY_PHANTOM, "train_options": {**TINY_TRAIN, "epochs": 4, "folds": [0, 1, 2]},
            "k": TINY_K}
    env = dict(os.environ, FERCORE_CACHE=str(cache), FERCORE_APP_DEFAULT_BUILD=json.dumps(spec))
    port = _free_port()
    proc, url = _start([sys.executable, "-m", "streamlit", "run", "app/main.py", f"--server.port={port}"], env, port)
    try:
        yield url, port, cache, proc
    finally:
        _stop(proc)


def test_the_readme_command_listens_on_loopback_only(build_server):
    url, port, _, _ = build_server
    sockets = _listening(port)
    assert sockets, f"nothing listens on port {port}"
    assert all(addr == "0100007F" for _, addr in sockets), sockets  # 127.0.0.1, no 0.0.0.0, no [::]
    for addr in _other_addresses():
        with socket.socket() as s, pytest.raises(OSError):
            s.settimeout(2)
            s.connect((addr, port))


def test_the_build_runs_on_the_server_and_outlives_its_tab(build_server, browser):
    url, _, cache, proc = build_server
    first = new_page(browser)
    first.goto(url)
    first.get_by_text("builds the embedded default", exact=False).wait_for()
    bar = "[data-testid=stProgress]"
    first.locator(bar).first.wait_for()
    first.get_by_text("Building a first look at the default run", exact=False).first.wait_for()
    first.get_by_text("you may close this tab", exact=False).first.wait_for(timeout=60_000)

    second = new_page(browser)
    try:
        second.goto(url)
        second.get_by_text("from another browser tab or by another user", exact=False).wait_for()
        second.locator(bar).first.wait_for()
        text_2 = second.get_by_text("Building a first look at the default run", exact=False).first.inner_text()
        text_1 = first.get_by_text("Building a first look at the default run", exact=False).first.inner_text()
        stages = []
        for text in (text_2, text_1):  # one job: its stage, elapsed time and estimate in both tabs
            m = re.search(r"\(stage (\d)/5", text)
            assert m and "elapsed" in text and "left" in text, text
            stages.append(int(m.group(1)))
        assert 0 <= stages[1] - stages[0] <= 1  # read one after the other: the same stage, or the next
        first.close()  # closing the tab that started it does not stop the build
        try:  # the build's end reruns the page, which then shows the run's overview
            second.get_by_text("Mean test accuracy").first.wait_for(timeout=600_000)
        except Exception as e:
            page_text = second.locator("[data-testid=stMain]").inner_text(timeout=5_000)
            raise AssertionError(f"the overview did not open after the build.\nPage:\n{page_text}\n"
                                 f"Server log (tail):\n{_server_log(proc)}") from e
        second.get_by_text("First look (partial)", exact=False).first.wait_for()  # the other rounds train
        second.get_by_text("Training the default run's other rounds", exact=False).first.wait_for()
        # the background build's end moves the page to the full run: the partial label goes away
        second.get_by_text("First look (partial)", exact=False).first.wait_for(state="detached", timeout=600_000)
        second.wait_for_selector(IDLE)
    finally:
        second.close()
    runs = sorted(d for d in (cache / "runs").iterdir() if d.is_dir())
    assert len(runs) == 2  # the first look (round 0) and the full default (rounds 0-2)
    for run in runs:
        assert (run / "records.h5").exists() and (run / "null" / "untrained" / "records.h5").exists()


# ------------------------------------------------------------- a network trained elsewhere
@pytest.fixture(scope="module")
def foreign_server(request, tmp_path_factory):
    """A dashboard server over the cache of the imported foreign networks (tests/conftest.py)."""
    foreign = request.getfixturevalue("foreign_recorded")
    env = dict(os.environ, TMPDIR=str(tmp_path_factory.mktemp("foreign-server-tmp")),
               FERCORE_CACHE=str(foreign.cache))
    proc, url = _local_server(env)
    try:
        yield url, foreign
    finally:
        _stop(proc)


@pytest.mark.skipif(bool(SCREENSHOTS), reason="checks the imported test networks")
def test_an_imported_network_in_the_filters_view_and_an_upload(foreign_server, browser, face_png):
    url, foreign = foreign_server
    run = foreign.runs["xception"]["torchscript"]
    page = new_page(browser)
    try:
        page.goto(f"{url}/filters?run={run.name}")
        settle(page, "Filters")
        no_exceptions(page)
        assert run.name in page.locator("[data-testid=stSidebar]").inner_text()
        page.get_by_text("guided backpropagation", exact=False).first.wait_for(timeout=60_000)
        page.locator("[data-testid=stVegaLiteChart] :is(canvas, svg.marks)").first.wait_for()  # the gallery
        page.locator("[data-testid=stImage] img").nth(2).wait_for()  # patches, sources, projections
        from fercore.store.layout import load_config

        layer = load_config(run)["layers"][-1]
        assert page.get_by_text("All ", exact=False).first.inner_text().endswith(layer)

        upload_face(page, face_png)
        assert page.locator("[data-testid=stImage] img").count() > 8
        body = page.locator("[data-testid=stMain]").inner_text()
        assert "block1.sep1.depthwise" in body  # activation maps under the network's own layer names
        assert "seen only drawn faces" not in body  # fercore does not know what an imported network saw
    finally:
        page.close()
