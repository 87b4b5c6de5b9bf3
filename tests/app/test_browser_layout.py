"""The figures fit their columns in a real browser 1400 px wide: Debian's Chromium, driven by
Playwright (as in tests/app/test_browser.py), against a live ``streamlit run app/main.py`` over a
tiny run of phantom sequences (tests/app/test_app_sequences.py ``make_sequence_run``), which the
Sequences, Evidence and Upload views can all show.

In each view every chart, image and table must lie inside the column it is drawn in; a Vega-Lite
chart's plot, axes, legends and titles inside the chart's own box (a legend cut off at the
column's edge read "filter #", "AU4 b", "neutra"); and no table may scroll sideways. The Sequences
view has one frame slider, which moves the face and the curves' mark together.
"""

from __future__ import annotations

import os

import pytest
from test_app_sequences import make_sequence_run
from test_browser import _local_server, _stop, browser, new_page, no_exceptions, settle, upload_face  # noqa: F401

pytestmark = pytest.mark.browser

#: The window's width (px) at which the figures were found cut off.
WIDTH = 1400

#: What does not fit, in words (an empty list when everything does). A figure's column is the
#: ``stColumn`` it is drawn in, else the main block.
MISFITS_JS = """() => {
  const bad = [];
  const column = el => (el.closest('[data-testid=stColumn]') || el.closest('[data-testid=stMainBlockContainer]'))
    .getBoundingClientRect();
  const inside = (r, c) => r.left >= c.left - 1 && r.right <= c.right + 1;
  const span = r => `${Math.round(r.left)}-${Math.round(r.right)} px`;
  const figures = '[data-testid=stVegaLiteChart], [data-testid=stImage] img, [data-testid=stPlotlyChart], '
    + '[data-testid=stDataFrame]';
  for (const el of document.querySelectorAll(figures)) {
    const r = el.getBoundingClientRect();
    if (!r.width) continue;
    const c = column(el);
    if (!inside(r, c)) bad.push(`${el.dataset.testid || el.tagName} at ${span(r)}, its column ${span(c)}`);
  }
  for (const chart of document.querySelectorAll('[data-testid=stVegaLiteChart]')) {
    const box = chart.getBoundingClientRect(), c = column(chart);
    const parts = chart.querySelectorAll('canvas, svg.marks, .role-legend, .role-axis, .role-title');
    for (const part of parts) {
      const r = part.getBoundingClientRect();
      if (!r.width) continue;
      const what = part.classList.contains('marks') ? 'svg' : (part.classList[0] || part.tagName);
      if (!inside(r, box) || !inside(r, c)) {
        bad.push(`a chart's ${what} at ${span(r)}, the chart ${span(box)}, its column ${span(c)}: `
                 + (part.textContent || '').slice(0, 60));
      }
    }
  }
  for (const sc of document.querySelectorAll('[data-testid=stDataFrame] .dvn-scroller')) {
    if (sc.scrollWidth > sc.clientWidth + 1) bad.push(`a table scrolls sideways: ${sc.scrollWidth} px in ${sc.clientWidth}`);
  }
  return bad;
}"""


@pytest.fixture(scope="module")
def layout_cache(tmp_path_factory):
    """(cache, run directory): a tiny run of phantom sequences, recorded and analysed."""
    cache = tmp_path_factory.mktemp("layout-cache")
    old = os.environ.get("FERCORE_CACHE")
    os.environ["FERCORE_CACHE"] = str(cache)
    try:
        run, _ = make_sequence_run(cache)
    finally:
        if old is None:
            os.environ.pop("FERCORE_CACHE", None)
        else:
            os.environ["FERCORE_CACHE"] = old
    return cache, run


@pytest.fixture(scope="module")
def layout_server(layout_cache):
    cache, run = layout_cache
    proc, url = _local_server(dict(os.environ, FERCORE_CACHE=str(cache)))
    try:
        yield url, run
    finally:
        _stop(proc)


@pytest.fixture()
def page(browser, layout_server):  # noqa: F811 (browser: the module's Chromium)
    p = new_page(browser, width=WIDTH)
    yield p
    p.close()


def misfits(page) -> list[str]:
    page.wait_for_timeout(500)  # charts lay themselves out after they are drawn
    return page.evaluate(MISFITS_JS)


def test_the_sequences_view_fits_and_one_slider_moves_the_face_and_the_curves(layout_server, page):
    url, run = layout_server
    page.goto(f"{url}/sequences?run={run.name}&layer=features.conv3")
    settle(page, "Sequences")
    no_exceptions(page)
    page.locator("[data-testid=stVegaLiteChart] :is(canvas, svg.marks)").first.wait_for()
    page.locator("[data-testid=stImage] img").first.wait_for()
    assert misfits(page) == []
    assert page.locator("[data-testid=stPlotlyChart]").count() == 0
    assert page.locator("[data-testid=stSlider]").count() == 1  # one frame control
    face = page.locator("[data-testid=stImage]").first
    assert "frame 7: predicted" in face.inner_text()
    page.get_by_role("slider", name="Frame").press("Home")  # frame 0: the fragment reruns
    page.get_by_text("Frame 0: labelled", exact=False).wait_for()
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]")
    assert "frame 0: predicted" in page.locator("[data-testid=stImage]").first.inner_text()
    no_exceptions(page)
    assert misfits(page) == []


def test_the_evidence_table_fits_without_scrolling_sideways(layout_server, page):
    url, run = layout_server
    page.goto(f"{url}/evidence?run={run.name}&layer=features.conv3")
    settle(page, "Evidence")
    no_exceptions(page)
    page.get_by_text("Every column").wait_for()  # the ranked table's toggle
    page.locator("[data-testid=stDataFrame]").last.wait_for()
    page.locator("[data-testid=stVegaLiteChart] :is(canvas, svg.marks)").first.wait_for()  # the co-occurrence
    assert misfits(page) == []


def test_the_upload_view_fits_with_its_probabilities(layout_server, page, face_png):
    url, run = layout_server
    page.goto(f"{url}/overview?run={run.name}")
    settle(page, "Overview")
    upload_face(page, face_png)
    page.get_by_text("Class probabilities").first.wait_for()
    page.locator("[data-testid=stVegaLiteChart] :is(canvas, svg.marks)").first.wait_for()
    assert misfits(page) == []
