"""The Filters view's gallery and the way from the FAU map to a filter, in a real browser
(Debian's Chromium driven by Playwright against a live server over the tiny run; the fixtures and
helpers are those of ``test_browser.py``).

- a click on a tile of the gallery (a Vega-Lite chart of one image with a point selection) opens
  that filter beside the gallery, in view without scrolling, and the address names it;
- "Open filter #N in the Filters view" in the FAU map lands on filter N's details, in view;
- at 1400 px the header rows of both views show the whole "Distinct" label.
"""

from __future__ import annotations

import os

import pytest
from test_browser import (  # noqa: F401  (browser: the Chromium fixture of test_browser.py)
    IDLE,
    _local_server,
    _stop,
    _tooltip,
    browser,
    new_page,
    no_exceptions,
    query,
    settle,
)

pytestmark = pytest.mark.browser

LAYER = "features.conv3"
VIEWPORT_H = 1000


@pytest.fixture(scope="module")
def live(request, tmp_path_factory):
    """URL of a dashboard server over the tiny run's cache (with its null network)."""
    request.getfixturevalue("tiny_null")
    env = dict(os.environ, TMPDIR=str(tmp_path_factory.mktemp("gallery-server-tmp")),
               FERCORE_CACHE=str(request.getfixturevalue("tiny_cache")))
    proc, url = _local_server(env)
    try:
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def chromium(browser):  # noqa: F811 (browser: the Chromium of test_browser.py, launched once)
    return browser


def _order(tiny_run) -> list[int]:
    from fercore.store.reader import open_run

    return [int(f) for f in open_run(tiny_run).evidence(LAYER)["order_evidence"]]


def _tile(page, row: int, col: int) -> tuple[float, float, dict]:
    """Where the gallery draws the tile at ``row``, ``col`` (its centre) and its tooltip."""
    from app import loaders

    chart = page.locator("[data-testid=stVegaLiteChart] :is(canvas, svg.marks)").first
    chart.wait_for()
    box = chart.bounding_box()
    cell_w = loaders.GALLERY_TILE + loaders.GALLERY_PAD
    cell_h = loaders.GALLERY_TILE + 2 * 14 + loaders.GALLERY_PAD
    for origin in range(4, 14, 2):  # Vega's padding and the frame drawn round a tile set the offset
        x = box["x"] + origin + col * cell_w + loaders.GALLERY_TILE / 2
        y = box["y"] + origin + row * cell_h + loaders.GALLERY_TILE / 2
        tip = _tooltip(page, x, y)
        if "filter" in tip:
            return x, y, tip
    raise AssertionError("no tile of the gallery answered with a tooltip")


def _picker(page) -> str:
    """What the Filter picker shows."""
    return page.locator("[data-testid=stSelectbox] input[aria-label='Filter']").first.input_value()


def _in_view(page, locator) -> bool:
    locator.wait_for()
    box = locator.bounding_box()
    return box is not None and 0 <= box["y"] and box["y"] + box["height"] <= VIEWPORT_H


def test_a_tile_click_opens_that_filter_beside_the_gallery(live, chromium, tiny_run):
    order = _order(tiny_run)
    page = new_page(chromium, width=1400)
    try:
        page.goto(f"{live}/filters?layer={LAYER}&filter={order[0]}&distinct=0")
        settle(page, "Filters")
        no_exceptions(page)
        page.get_by_role("heading", name=f"{LAYER} filter #{order[0]} under the controls").wait_for()
        row, col = 1, 2
        x, y, tip = _tile(page, row, col)
        want = order[row * 5 + col]  # the gallery is 5 tiles wide, in evidence order
        assert tip["filter"] == str(want) and tip.get("AU judged", "").startswith("AU"), tip
        page.mouse.click(x, y)
        heading = page.get_by_role("heading", name=f"{LAYER} filter #{want} under the controls")
        heading.wait_for(timeout=60_000)
        page.wait_for_selector(IDLE)
        no_exceptions(page)
        assert query(page).get("filter") == str(want)  # the address follows a fragment's run too
        assert _in_view(page, heading)  # beside the gallery: no scrolling to see it
        assert _picker(page).startswith(f"#{want} · judged by AU")
        page.get_by_text(f"{LAYER} filter #{want}: top", exact=False).first.wait_for()
        # another tile, then the first again: each click opens its filter
        x2, y2, tip2 = _tile(page, 0, 1)
        page.mouse.click(x2, y2)
        page.get_by_role("heading", name=f"{LAYER} filter #{tip2['filter']} under the controls").wait_for()
        page.wait_for_selector(IDLE)
        page.mouse.click(x, y)
        page.get_by_role("heading", name=f"{LAYER} filter #{want} under the controls").wait_for()
        page.wait_for_selector(IDLE)
        assert query(page).get("filter") == str(want)
        no_exceptions(page)
    finally:
        page.close()


def test_open_filter_from_the_fau_map_lands_on_its_details(live, chromium, tiny_run):
    order = _order(tiny_run)
    f = order[-1]  # the last filter of the gallery: its tile is far down, its details are not
    page = new_page(chromium, width=1400)
    try:
        page.goto(f"{live}/fau-map?layer={LAYER}&stat=share&filter={f}&distinct=0")
        settle(page, "FAU map")
        no_exceptions(page)
        assert _picker(page).startswith(f"#{f} · judged by AU")  # the Filters view's words
        page.get_by_role("button", name=f"Open filter #{f} in the Filters view").click()
        settle(page, "Filters")
        no_exceptions(page)
        heading = page.get_by_role("heading", name=f"{LAYER} filter #{f} under the controls")
        assert _in_view(page, heading), heading.bounding_box()  # not at the FAU map's scroll offset
        assert query(page).get("filter") == str(f)
    finally:
        page.close()


@pytest.mark.parametrize("view, heading", [("filters", "Filters"), ("fau-map", "FAU map")])
def test_the_distinct_toggle_is_not_cut_off_at_1400_px(live, chromium, view, heading):
    page = new_page(chromium, width=1400)
    try:
        page.goto(f"{live}/{view}?layer={LAYER}")
        settle(page, heading)
        label = page.locator("[data-testid=stCheckbox], [data-testid=stToggle]").filter(has_text="Distinct").first
        text = label.locator("p").first
        assert text.inner_text().strip() == "Distinct"
        assert text.evaluate("e => e.scrollWidth <= e.clientWidth")  # no ellipsis
        layer = page.locator("[data-testid=stSelectbox]").first.bounding_box()
        toggle = label.bounding_box()
        assert toggle["y"] < layer["y"] + layer["height"]  # on the header row, not wrapped under it
    finally:
        page.close()
