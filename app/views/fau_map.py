"""FAU map: filters × action units under a chosen stored figure, with each filter's KL selectivity
beside it and the layer's funnel of controls in a line above; selecting a cell (a click, or a box
dragged over several) picks that filter and AU and offers to open the filter. The ranked evidence
and the AU co-occurrence have a view of their own (Evidence).

A selection in the map, or a pick of the filter or the AU, reruns only the fragment under the map
that shows the pick (:data:`PICK`): the map itself is not sent again. :data:`RUNS` counts full runs
of the view and runs of the fragment."""

from collections import Counter
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from app import charts, components, figures, loaders, state, ui

#: Session-state key of the run counters: ``fau_map`` counts full runs of this view, ``fau_pick``
#: runs of its fragment (read by the tests and the browser bench).
RUNS = "fercore_runs"
#: The fragment that shows the picked filter and AU (the key ``st.rerun`` names).
PICK = "fau_pick"

st.session_state.setdefault(RUNS, Counter())["fau_map"] += 1
st.title("FAU map")
ctx = ui.require_run()
if ctx is None:
    st.stop()
run_dir, stamp, reader = ctx
au_labels = loaders.au_labels(run_dir, stamp)
au_ids = [int(a) for a in reader.au_ids]
au_short = [f"AU{a}" for a in au_ids]


def _layer_changed() -> None:
    state.view().pop("filter", None)
    state.view().pop("au", None)


def _filter_changed() -> None:
    ev_ = loaders.evidence(run_dir, stamp, state.get("layer"))
    state.put("au", au_ids[int(ev_["judged"][int(state.get("filter"))])])


def _cells_selected() -> None:
    """A new selection in the map moves the pickers to its strongest cell."""
    cells = charts.selected_cells(st.session_state.get("fau_heatmap"), filters, len(au_ids))
    if cells:
        strength = [abs(values[f, a]) if a >= 0 and np.isfinite(values[f, a]) else -1.0 for f, a in cells]
        f_pick, a_pick = cells[int(np.argmax(strength))]
        state.put("filter", int(f_pick))
        state.put("au", au_ids[int(a_pick)] if a_pick >= 0 else au_ids[int(ev["judged"][f_pick])])


layers = list(reader.layers)
head = st.container(horizontal=True, vertical_alignment="bottom", gap="small")
layer = state.selectbox(head, "Layer", layers, name="layer", key="fau_layer", default=layers[-1],
                        on_change=_layer_changed, width=220)
ev = loaders.evidence(run_dir, stamp, layer)
summary = loaders.summary(run_dir, stamp)
components.funnel_line(summary, layer)
if not summary.get("null"):
    ui.null_missing(run_dir, key="fau")
stat = state.selectbox(head, "Figure", loaders.statistics(ev), name="stat", key="fau_stat",
                       format_func=loaders.STATISTICS.get, width=300)
order_by = head.radio("Order filters by", ["evidence", "cluster", "index"], horizontal=True, key="fau_order",
                      help="evidence: the deepest stage of the funnel first, then the strongest figures; cluster: "
                           "filters that prefer the same AUs together (both as analyze stored them)")
distinct = state.toggle(head, "Distinct", name="distinct", key="fau_distinct", width="content",
                        help="the top-K share and the region share on the distinct top-K (one image per sequence, "
                             "else subject) instead of the raw top-K; kept for every view")

fig, df, zname = loaders.fau_heatmap(run_dir, stamp, layer, stat, distinct, order_by)
key = loaders.stored_figure(stat, distinct)
filters = [int(f) for f in loaders.filter_order(run_dir, stamp, layer, order_by)]  # the map's rows
values = np.asarray(ev[key], dtype=float)
judged = ev["judged"]
depth = ev["stage"].max(axis=1)
null = ev.get("null") or {}
null_line = ("  \n**Null network, 95th percentile over its filters** (same layer, same figure, per AU): "
             + " · ".join(f"{a} {v:.3g}" for a, v in zip(au_short, null[key], strict=True) if np.isfinite(v))
             if key in null else "")


@st.fragment(key=PICK)
def _pick() -> None:
    """The map, the cells selected in it, the picked filter and AU, their verdict and the way to
    the Filters view: a selection or a pick reruns only this."""
    st.session_state[RUNS]["fau_pick"] += 1
    with ui.guarded("The picked filter"):
        _map()
        _picked()
    state.sync_url(reader.name)  # a fragment's run does not reach the frame, which writes the address


def _map() -> None:
    # Inside the fragment, so that a click on the map reruns the fragment only. A map outside it
    # whose callback calls st.rerun(PICK) would not be sent again, but with Streamlit 1.67 such a
    # targeted rerun began about 300 ms after the click, against about 90 ms for the fragment's own
    # rerun (same page, same machine), which outweighs sending the map again.
    st.vega_lite_chart(fig, key="fau_heatmap", on_select=_cells_selected, width="content")
    st.markdown(":gray[Rows: filters, labelled by the deepest stage of the funnel they reach for any AU; a ring marks a "
               "filter × AU pair that passes the beyond-emotion stage; the grey bars beside the map are each "
               "filter's KL selectivity. **Click a cell** to pick that filter and AU below, or **drag a box** over "
               "several (the strongest is picked; a double click clears the box); a click on a KL bar picks the "
               "filter. The chart's menu (⋯, top right) saves it as PNG.]" + null_line)
    ui.csv_button("Heat map data (CSV)", partial(figures.csv_text, df, index=True, index_label="filter"),
                  f"{layer}_{key}.csv", "dl_heat")


def _picked() -> None:
    cells = charts.selected_cells(st.session_state.get("fau_heatmap"), filters, len(au_ids))
    if len(cells) > 1:
        with st.expander(f"{len(cells)} cells selected (the pickers show the strongest)"):
            sel = pd.DataFrame([{"filter": f, "AU": au_short[a], zname: float(values[f, a])}
                                for f, a in cells if a >= 0])
            sel = figures.sig3(sel) if len(sel) else sel
            st.dataframe(sel, hide_index=True, width="stretch")
            ui.csv_button("Selected cells (CSV)", partial(figures.csv_text, sel), f"{layer}_selection.csv",
                          "dl_selection")
    st.markdown("**Open a filter** — select a cell in the heat map, or pick here:")
    c1, c2 = st.columns([1, 1])
    f = state.selectbox(c1, "Filter", filters, name="filter", key="fau_filter", on_change=_filter_changed,
                        format_func=lambda i: figures.filter_label(i, au_labels[judged[i]], int(depth[i])))
    au = state.selectbox(c2, "AU", au_ids, name="au", key="fau_au", format_func=lambda a: au_labels[au_ids.index(a)])
    j = au_ids.index(au)
    components.null_badge(float(ev[key][f, j]), float(null[key][j]) if key in null else None,
                          label=f"filter #{f} × AU{au}, {loaders.STATISTICS[stat]}")
    components.verdict_lines(loaders.verdict(run_dir, stamp, layer, f, j), au_labels[j])
    if st.button(f"Open filter #{f} in the Filters view", key="open_filter", type="primary"):
        state.land_on_filter(f)
        st.switch_page("views/filters.py")


_pick()
loaders.freeze_heap()  # once per server: the clicks that follow are not held up by full garbage collections
