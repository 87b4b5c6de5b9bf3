"""Filters: every filter of a layer in a clickable gallery (its top patch, or for a layer whose
receptive field covers most of the face the strongest face with the field's box), marked by the
deepest stage of the funnel it reaches; beside it the open filter: its verdict stage by stage, its
figures beside the null network's, its top-K (raw or distinct), sources, projections (deconvnet or
guided backpropagation) and AU profile.

Layer, filter, AU and *distinct* are the shared view state (:mod:`app.state`): what the FAU map
selected is shown here, and the address reproduces it. A click on a tile, or a pick of the filter
or the AU, reruns only the fragment that shows the gallery and the open filter (:data:`PICK`), not
the layer's controls above it; :data:`RUNS` counts both kinds of run."""

from collections import Counter
from functools import partial

import pandas as pd
import streamlit as st

from app import charts, components, figures, loaders, state, ui
from fercore.analysis.criteria import auc_with_interval

#: Session-state key of the run counters: ``filters`` counts full runs of this view,
#: ``filters_pick`` runs of its fragment (read by the tests and the browser bench).
RUNS = "fercore_runs"
#: The fragment that draws the gallery and the open filter (the key ``st.rerun`` can name).
PICK = "filters_pick"
#: Session-state key of the filter the gallery frames.
FRAMED = "filters_gallery_framed"
#: The id of the open filter's heading (``/filters#filter-details``; :data:`_LAND_JS` finds it).
DETAILS_ANCHOR = "filter-details"
#: Brings the open filter's heading into view: the page from the top, then as little scrolling as
#: the window needs (a page switched to can keep the scroll offset of the page before it).
_LAND_JS = """<script>(() => {
  const t0 = Date.now();
  const land = () => {
    const main = document.querySelector('[data-testid=stMain]');
    const heading = document.getElementById('filter-details');
    if (main && heading) { main.scrollTop = 0; heading.scrollIntoView({block: 'nearest'}); return; }
    if (Date.now() - t0 < 5000) setTimeout(land, 50);
  };
  land();
})();</script>"""
#: Height (px) of the gallery's scrolling box: the open filter's first figures stand beside it.
GALLERY_HEIGHT = 760

st.session_state.setdefault(RUNS, Counter())["filters"] += 1
st.title("Filters")
ctx = ui.require_run()
if ctx is None:
    st.stop()
run_dir, stamp, reader = ctx
au_labels = loaders.au_labels(run_dir, stamp)
au_ids = [int(a) for a in reader.au_ids]


def _layer_changed() -> None:  # a new layer: its filter with the most evidence, judged by its AU
    state.view().pop("filter", None)
    state.view().pop("au", None)


def _judged_au(f: int) -> int:
    return au_ids[int(loaders.evidence(run_dir, stamp, state.get("layer"))["judged"][int(f)])]


def _gallery_key() -> str:
    return f"filters_gallery_{st.session_state.get('filters_gallery_gen', 0)}"


def _filter_changed() -> None:  # a new filter is judged by its own AU first, and framed in the gallery
    state.put("au", _judged_au(state.get("filter")))
    st.session_state[FRAMED] = state.get("filter")
    if charts.selected_filter(st.session_state.get(_gallery_key())) is not None:
        # A tile clicked before stays selected in the browser, which reports a click on it again as
        # no change: a gallery of a new key starts with nothing selected.
        st.session_state["filters_gallery_gen"] = st.session_state.get("filters_gallery_gen", 0) + 1


def _tile_clicked(key: str) -> None:  # a click on a tile opens that filter
    f = charts.selected_filter(st.session_state.get(key))
    if f is not None and f != state.get("filter"):
        state.put("filter", f)
        state.put("au", _judged_au(f))


layers = list(reader.layers)
head = st.container(horizontal=True, vertical_alignment="bottom", gap="small")
layer = state.selectbox(head, "Layer", layers, name="layer", key="filters_layer", default=layers[-1],
                        on_change=_layer_changed, width=260)
order_by = head.radio("Sort filters by", ["evidence", "cluster", "index"], horizontal=True, key="filters_sort",
                      help="evidence: the deepest stage of the funnel first; cluster: filters that prefer the same AUs together")
kind = head.radio("Show each filter by", ["patch", "deconv"], horizontal=True, key="filters_kind",
                  format_func=lambda k: {"patch": "patch", "deconv": "projection"}[k],
                  help="its top image patch (or, where the receptive field covers most of the face, the face with "
                       "the field's box), or the projection of its top activation (deconvnet for a network "
                       "trained here, guided backpropagation for any other)")
distinct = state.toggle(head, "Distinct", name="distinct", key="filters_distinct", width="content",
                        help="one image per sequence (or subject) in the top-K, instead of the raw top-K; "
                             "kept for every view")

ev = loaders.evidence(run_dir, stamp, layer)
judged = ev["judged"]
depth = ev["stage"].max(axis=1)
order = loaders.filter_order(run_dir, stamp, layer, order_by)
filters = [int(i) for i in order]
n = len(order)
st.subheader(f"All {n} filters of {layer}")
if kind == "deconv" and not ui.projections_or_wait(run_dir, stamp, layer, None,
                                                  what=f"the projection of every filter's top image of {layer}"):
    kind = "patch"  # the patches meanwhile
gallery = loaders.filter_gallery(run_dir, stamp, layer, kind, order_by)
projection = loaders.projection_words(run_dir, stamp, layer)
if kind == "deconv":
    shown = f"the {projection} of its top activation"
elif gallery["faces"]:
    shown = (f"the face of its top activation with the receptive field's box ({gallery['rf']} px of a "
             f"{gallery['image_size']} px face: a patch would be most of the face, padded with black where the "
             "field runs past the image)")
else:
    shown = "its top patch"
st.caption(f"Each filter by {shown}, in {order_by} order; under it its number, the AU it is judged by and the deepest "
           f"stage of the funnel it reaches for it ({figures.STAGE_LEGEND}). {int((depth >= 3).sum())} of {n} filters "
           "pass beyond emotion. **Click a filter** to open it beside the gallery, or pick it there by number; a cell "
           "clicked in the FAU map opens here too.")


def _label(i: int) -> str:
    return figures.filter_label(i, au_labels[judged[i]], int(depth[i]))


@st.fragment(key=PICK)
def _pick() -> None:
    """The gallery and the open filter: a click on a tile, or a pick of the filter or the AU,
    reruns only this."""
    st.session_state[RUNS]["filters_pick"] += 1
    with ui.guarded("The filter's details"):
        left, right = st.columns([5, 7], gap="medium")
        key = _gallery_key()
        box = left.container(height=GALLERY_HEIGHT, border=False)
        box.vega_lite_chart(charts.gallery(gallery["uri"], gallery["size"], gallery["tiles"],
                                           current=st.session_state.get(FRAMED)),
                            key=key, on_select=partial(_tile_clicked, key), selection_mode="tile", width="content")
        with right:
            _details()
        _profile()
        state.sync_url(reader.name)  # a fragment's run does not reach the frame, which writes the address


def _details() -> None:
    """The open filter: its verdict, its figures beside the null's, its top-K."""
    f = state.selectbox(st, "Filter", filters, name="filter", key="filters_filter", on_change=_filter_changed,
                        format_func=_label)
    st.subheader(f"{layer} filter #{f} under the controls", anchor=DETAILS_ANCHOR)
    au = state.selectbox(st, "AU to judge", au_ids, name="au", key="filters_verdict_au",
                         format_func=lambda a: au_labels[au_ids.index(a)],
                         help="default: the AU the analysis judges this filter by (the deepest stage it reaches); "
                              "kept for every view")
    j = au_ids.index(au)
    components.verdict_lines(loaders.verdict(run_dir, stamp, layer, f, j), au_labels[j])
    null = ev.get("null") or {}
    figs = [(label, name) for label, name in (
        ("top-K AU share", "share_raw"), ("distinct top-K AU share", "share_distinct"),
        ("within-emotion AUC", "auc_emotion"), ("excess over the emotions", "excess"),
        ("correlation with AU", "r_au"), ("partial correlation given emotion", "r_partial")) if name in ev]
    badges = [(label, float(ev[name][f, j]), float(null[name][j]) if name in null else None) for label, name in figs]
    badges.append(("KL selectivity", float(ev["kl"][f]), float(null["kl"]) if "kl" in null else None))
    for row in range(0, len(badges), 4):  # four to a row: the column is narrow
        for col, (label, value, p95) in zip(st.columns(4), badges[row:row + 4], strict=False):
            with col:
                components.null_badge(value, p95, label=label)
    st.caption(f"Figures at AU{au}, each beside the null network's 95th percentile over its "
               "filters (same layer, same AU): green when above it.")

    p = loaders.filter_details(run_dir, stamp, layer, f, distinct)
    st.subheader(f"{layer} filter #{f}: top {p['n']} images" + (" (distinct)" if distinct else ""))
    st.markdown("**Top patches** (activation value under each)")
    st.image(p["patches"], width="content", output_format="PNG")
    st.markdown("**Source images** with the receptive field box; image number, label and AUs present under each")
    st.image(p["sources"], width="content", output_format="PNG")
    ui.png_button("Top-K sources (PNG)", p["sources"], f"{layer}_{f}_topk.png", "dl_topk")
    st.markdown(f"**Projections**: {projection} of each activation onto its receptive field")
    if ui.projections_or_wait(run_dir, stamp, layer, f, what=f"the projections of filter #{f}'s top {p['n']} images"):
        proj_png = loaders.projection_tiles(run_dir, stamp, layer, f, distinct)
        st.image(proj_png, width="content", output_format="PNG")
        ui.png_button("Projections (PNG)", proj_png, f"{layer}_{f}_projections.png", "dl_projections")
    st.caption(f"Made by {projection}: " + ("the unit's activation sent back through the network's convolutions, "
               "ReLUs and max-pool switches" if reader.projection(layer) == "deconvnet" else
               "the gradient of the unit with respect to the input, each ReLU passing back only positive signal "
               "(for networks other than a plain conv / ReLU / max-pool stack)") + ".")
    with st.expander(f"The top {p['n']} images (table)"):
        st.dataframe(p["table"], hide_index=True, width="stretch",
                     column_config={"activation": st.column_config.NumberColumn(format="%.3g")})
        ui.csv_button("Top-K images (CSV)", partial(figures.csv_text, p["table"]), f"{layer}_{f}_topk.csv",
                      "dl_topk_csv")


def _profile() -> None:
    """The open filter's AU profile against the base rates (the width of the page)."""
    f = int(state.get("filter"))
    st.subheader(f"Filter #{f}: AU profile against the base rates")
    share = ev["share_distinct"][f] if distinct else ev["share_raw"][f]
    which = "distinct top-K" if distinct else "top-K"
    # The title stays the same from filter to filter: only the chart's data changes, which Streamlit
    # updates in place instead of drawing a new chart.
    fig = charts.bars({f"share of {which}": share, "base rate": ev["base_rate"]}, au_labels,
                      value_title="share of images", title=f"How often each AU is present in the filter's {which} images",
                      domain=(0.0, 1.0))
    st.vega_lite_chart(fig, key="au_profile", width="content")
    profile = figures.sig3(pd.DataFrame({"AU": au_ids, "AU name": au_labels, f"{which} share": share,
                                         "base rate": ev["base_rate"]}))
    ui.csv_button("AU profile (CSV)", partial(figures.csv_text, profile), f"{layer}_{f}_au_profile.csv", "dl_profile")


# The gallery frames the open filter as it stood when the gallery was drawn; a click on a tile frames
# that tile in the browser. So a click leaves the gallery's message as it was, and Streamlit sends
# the browser, which keeps it, only its hash (about 30 KB go over the wire per click, not 200).
current = state.get("filter")
st.session_state[FRAMED] = current if current in filters else filters[0]  # what the picker will show
_pick()
ui.png_button("Filter gallery (PNG)", gallery["png"], f"{layer}_filters.png", "dl_grid")
with st.expander("Filters and controls (table)"):
    grid_table = figures.sig3(pd.DataFrame({
        "filter": filters,
        "AU judged": [f"AU{int(ev['au_ids'][judged[f]])}" for f in order],
        "stage reached": [figures.STAGE_NAMES[int(depth[f])] for f in order],
        "distinct share": [float(ev["share_distinct"][f, judged[f]]) for f in order],
        "excess share": [float(ev["excess"][f, judged[f]]) for f in order],
        "within-emotion AUC [95 % CI]": [auc_with_interval(ev, f, judged[f]) for f in order],
        "detectable AUC on this data": [float(ev["detectable_auc"][judged[f]]) for f in order],
        "q (Benjamini-Hochberg)": [float(ev["q_emotion"][f, judged[f]]) for f in order],
        "KL selectivity": [float(ev["kl"][f]) for f in order],
    }))
    st.dataframe(grid_table, hide_index=True, width="stretch", key="filters_controls",
                 column_config={c: st.column_config.NumberColumn(format="%.3g")
                                for c in ("distinct share", "excess share", "q (Benjamini-Hochberg)", "KL selectivity",
                                          "detectable AUC on this data")})
    ui.csv_button("Filters and controls (CSV)", partial(figures.csv_text, grid_table), f"{layer}_controls.csv", "dl_controls")
if state.landing() is not None:  # sent here by "Open filter": its details in view, not the page where it was
    st.html(_LAND_JS, unsafe_allow_javascript=True)
loaders.freeze_heap()  # once per server: the clicks that follow are not held up by full garbage collections
