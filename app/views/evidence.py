"""Evidence: every filter × AU pair of the chosen layers whose distinct top-K share is above the
AU's base rate, ranked by the deepest stage of the funnel it reaches, with the figures behind each
stage; and the data set's AU × AU co-occurrence, which says which AUs cannot be told apart by the
data alone (the same table as ``python -m fercore analyze --csv FILE``)."""

from functools import partial

import streamlit as st

from app import components, figures, loaders, state, ui

#: The ranked table's columns shown unless *Every column* is on: column -> (short header, width in
#: px, what it is). Together they fit the main column of a 1400 px wide window without scrolling
#: sideways; the toggle shows the others, and both CSV downloads carry every column.
SHOWN = {
    "filter": ("filter", 52, None),
    "AU name": ("AU", 128, None),
    "stage reached": ("stage reached", 118, "the deepest stage of the funnel the pair reaches"),
    "distinct top-K share": ("distinct", 66, "distinct top-K share: the share of the filter's top-K (at most one "
                             "image per sequence, else subject) that show the AU"),
    "excess share": ("excess", 62, "excess share: the distinct share less what the images' emotions predict"),
    "within-emotion AUC": ("AUC", 54, "within-emotion AUC: does the filter tell the units that carry the AU from "
                           "those that do not, within the emotions"),
    "its 95 % interval, low": ("CI low", 58, "the within-emotion AUC's 95 % interval, low end"),
    "its 95 % interval, high": ("CI high", 60, "the within-emotion AUC's 95 % interval, high end"),
    "detectable AUC on this data": ("detectable", 76, "the within-emotion AUC the test detects on this data "
                                    "(80 % power at the layer's burden)"),
    "q (Benjamini-Hochberg)": ("q", 58, "the within-emotion test's q (Benjamini-Hochberg)"),
    "verdict": ("verdict", 190, "the verdict in words (every word: Every column, or the CSV)"),
}

st.title("Evidence")
ctx = ui.require_run()
if ctx is None:
    st.stop()
run_dir, stamp, reader = ctx
st.caption(f"{loaders.run_label(run_dir)} · run `{reader.name}`")

layers = list(reader.layers)
layer = state.selectbox(st, "Layer", layers, name="layer", key="evidence_layer", default=layers[-1])
summary = loaders.summary(run_dir, stamp)
if not summary.get("warnings") and components.power_frame(summary, layer) is not None:
    st.subheader(f"What the beyond-emotion test could find in {layer}")
    st.dataframe(components.power_frame(summary, layer), hide_index=True, width="stretch", key="evidence_power")
    st.caption(components.power_caption(summary, layer))
st.subheader(f"Ranked filter × AU evidence, {layer}")
table = loaders.evidence_table(run_dir, stamp, (layer,))
every = st.toggle("Every column", key="evidence_every_column",
                  help=f"the table shows {len(SHOWN)} of its {len(table.columns)} columns so that it fits the page; "
                       "this shows them all (both CSV downloads always have every column)")
config = {c: st.column_config.NumberColumn(format="%.3g") for c in table.columns if table[c].dtype.kind == "f"}
if not every:
    for c, (label, px, what) in SHOWN.items():
        if c not in table.columns:
            continue
        kind = st.column_config.NumberColumn if table[c].dtype.kind in "fiu" else st.column_config.TextColumn
        config[c] = kind(label, width=px, help=what or c, **({"format": "%.3g"} if table[c].dtype.kind == "f" else {}))
st.dataframe(table, hide_index=True, width="stretch", height=420, column_config=config,
             column_order=None if every else [c for c in SHOWN if c in table.columns])
st.caption(f"{len(table)} pairs whose distinct top-K share is above the AU's base rate, ranked by the deepest stage "
           "of the funnel they reach, then the within-emotion test's q, then the excess share; each within-emotion AUC "
           "with its 95 % interval beside the AUC the test detects on this data. Pick a pair in the "
           "FAU map or the Filters view to see its images.")
c1, c2 = st.columns([1, 1])
with c1:
    ui.csv_button(f"Evidence table, {layer} (CSV)", partial(loaders.evidence_csv, run_dir, stamp, (layer,)),
                  f"{layer}_evidence.csv", "dl_matches")
with c2:
    ui.csv_button("Evidence table, every layer (CSV)", partial(loaders.evidence_csv, run_dir, stamp, tuple(layers)),
                  "evidence.csv", "dl_matches_all")

st.subheader("AU × AU co-occurrence in the data set")
fig, cooc = loaders.cooc_heatmap(run_dir, stamp)
st.vega_lite_chart(fig, key="au_cooc", width="content")
st.caption("P(column AU present | row AU present) over the run's images: AUs that always come together cannot be "
           "told apart by any filter of a network trained on these data.")
ui.csv_button("AU co-occurrence (CSV)", partial(figures.csv_text, cooc, index=True, index_label="AU"),
              "au_cooccurrence.csv", "dl_cooc")
