"""End to end in a real browser: Debian's Chromium, driven by Playwright, against a live
``streamlit run app/main.py`` that this module starts and always stops.

Every view is opened, a real face photo is uploaded, and screenshots are saved (to a temporary
folder). With ``FERCORE_SCREENSHOTS=<folder>`` the same test writes the README's screenshots from
the run(s) in the normal cache (``$FERCORE_CACHE`` or ``cache/``) instead of the tiny test run,
``FERCORE_SCREENSHOTS_RUN=<run name>`` choosing the run:

    FERCORE_SCREENSHOTS=docs/screenshots python -m pytest -q -m browser tests/app/test_browser.py
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run"]
IDLE = "[data-testid=stApp][data-test-script-state=notRunning]"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def shots_dir(tmp_path_factory) -> Path:
    out = os.environ.get("FERCORE_SCREENSHOTS")
    d = Path(out) if out else tmp_path_factory.mktemp("screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def server(request):
    """URL of a dashboard server over the tiny run's cache (or the normal cache for screenshots)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")
    env = dict(os.environ)
    if not os.environ.get("FERCORE_SCREENSHOTS"):
        env["FERCORE_CACHE"] = str(request.getfixturevalue("tiny_cache"))
        request.getfixturevalue("tiny_null")  # the controls need the null network
    port = _free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.address=127.0.0.1",
           f"--server.port={port}", "--server.headless=true", "--browser.gatherUsageStats=false"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start on {url} (exit code {proc.poll()})")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            ctx = browser.new_page(viewport={"width": 1600, "height": 1000}, device_scale_factor=1)
            ctx.set_default_timeout(120_000)
            yield ctx
        finally:
            browser.close()


def settle(page, heading: str) -> None:
    """Wait until the script has run and the view's heading is on the page."""
    page.get_by_role("heading", name=heading).first.wait_for()
    page.wait_for_selector(IDLE)
    page.wait_for_timeout(800)  # charts and images finish drawing after the script stops
    page.wait_for_selector(IDLE)


def shoot(page, path: Path) -> None:
    """Screenshot of the whole view (Streamlit scrolls inside its main block, so the window is
    made as tall as the content first)."""
    height = page.evaluate(
        "Math.max(...[...document.querySelectorAll('[data-testid=stMain], [data-testid=stMainBlockContainer]')]"
        ".map(e => e.scrollHeight), 800)")
    page.set_viewport_size({"width": 1600, "height": min(int(height) + 40, 6000)})
    page.wait_for_timeout(1000)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1600, "height": 1000})


def no_exceptions(page) -> None:
    assert page.locator("[data-testid=stException]").count() == 0
    assert page.locator("[data-testid=stAlertContentError]").count() == 0


def test_every_view_and_an_upload(server, page, shots_dir, face_png):
    run = os.environ.get("FERCORE_SCREENSHOTS_RUN")  # which run the screenshots show
    page.goto(f"{server}/overview" + (f"?run={run}" if run else ""))
    settle(page, "Overview")
    no_exceptions(page)
    assert page.get_by_text("Mean test accuracy").count() > 0
    assert page.get_by_text("exact within-emotion permutation test", exact=False).count() > 0  # the funnel
    assert page.get_by_text("No null network yet").count() == 0
    page.locator("[data-testid=stPlotlyChart]").nth(1).wait_for()  # confusion matrix, learning curves
    page.locator("[data-testid=stImage] img").first.wait_for()  # the montage
    shoot(page, shots_dir / "overview.png")

    page.goto(f"{server}/filters")
    settle(page, "Filters")
    no_exceptions(page)
    page.locator("[data-testid=stImage] img").nth(8).wait_for()  # the filter grid
    shoot(page, shots_dir / "filters.png")

    page.goto(f"{server}/fau-map")
    settle(page, "FAU map")
    no_exceptions(page)
    page.locator("[data-testid=stPlotlyChart] .heatmaplayer, [data-testid=stPlotlyChart] .hm").first.wait_for()
    shoot(page, shots_dir / "fau_map.png")

    page.goto(f"{server}/upload")
    settle(page, "Upload a face")
    page.locator("[data-testid=stFileUploader] input[type=file]").set_input_files(
        files=[{"name": "astronaut.png", "mimeType": "image/png", "buffer": face_png}])
    page.get_by_text("Predicted expression").wait_for()
    settle(page, "Grad-CAM per class")
    no_exceptions(page)
    assert page.locator("[data-testid=stMetricValue]").first.inner_text().strip()
    assert page.locator("[data-testid=stImage] img").count() > 8  # crop, Grad-CAM and activation overlays
    shoot(page, shots_dir / "upload.png")

    for name in ("overview", "filters", "fau_map", "upload"):
        assert (shots_dir / f"{name}.png").stat().st_size > 10_000


def test_bad_upload_shows_a_message(server, page):
    page.goto(f"{server}/upload")
    settle(page, "Upload a face")
    page.locator("[data-testid=stFileUploader] input[type=file]").set_input_files(
        files=[{"name": "notes.png", "mimeType": "image/png", "buffer": io.BytesIO(b"not a picture").getvalue()}])
    page.get_by_text("not an image").first.wait_for()
    page.wait_for_selector(IDLE)
    assert page.locator("[data-testid=stException]").count() == 0
