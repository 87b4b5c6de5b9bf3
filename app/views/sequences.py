"""Sequences: one sequence of the run's data played frame by frame — the face (slider and play),
the run's prediction per frame, the chosen filters' activation curves beside the AU intensity
curves — and, per AU, the filter whose curve follows it best over all sequences (what ``analyze``
stored under ``temporal``).

Layer and AU are the shared view state (:mod:`app.state`)."""

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from app import charts, figures, loaders, state, ui

st.title("Sequences")
ctx = ui.require_run()
if ctx is None:
    st.stop()
run_dir, stamp, reader = ctx

table = loaders.sequence_table(run_dir, stamp)
if table is None or table.empty:
    st.info(f"Run {reader.name} was recorded on still images: its data set keeps no sequences with frame order, "
            "so there is nothing to play. Make a data set of sequences and a run on it:\n\n"
            "```\npython -m fercore phantom-seq --out seq.h5          # or: import ckplus DIR --frames all\n"
            "python -m fercore train --data seq.h5 --preset phantom-default\n"
            "python -m fercore record --run <run> && python -m fercore analyze --run <run>\n```\n\n"
            "then pick that run in the sidebar.")
    st.stop()

au_labels = loaders.au_labels(run_dir, stamp)
au_ids = [int(a) for a in reader.au_ids]
layers = list(reader.layers)
c1, c2, c3 = st.columns([3, 2, 2])
expressions = ["all"] + sorted(table["expression"].unique())
expr = c2.selectbox("Expression", expressions, key="seq_expression",
                    help="only sequences whose labelled frames carry this expression")
shown = table if expr == "all" else table[table["expression"] == expr]
labels = {r["sequence"]: f"{r['sequence']} · {r['expression']} · {r['frames']} frames"
          + (f" · {r['micro frames']} micro frames" if r["micro frames"] else "") for r in shown.to_dict("records")}
by_label = {text: sid for sid, text in labels.items()}
seq = by_label[c1.selectbox("Sequence", list(by_label), key="seq_sequence",
                            help=f"{len(table)} sequences in the run's data set "
                                 f"({Path(str(reader.header.get('faceset_path', '?'))).stem})")]
layer = state.selectbox(c3, "Layer", layers, name="layer", key="seq_layer", default=layers[-1])

try:
    v = loaders.sequence_view(run_dir, stamp, seq)
except ValueError as e:
    st.error(str(e))
    st.stop()
ev = loaders.evidence(run_dir, stamp, layer)
temporal = ev.get("temporal") or {}
acts = v["activation"][layer]
t_n = len(v["images"])
pred = v["probs"].argmax(1)
names = v["class_names"]

left, right = st.columns([1, 2])
with left:
    captions = [f"frame {i}: predicted {names[pred[i]]} ({v['probs'][i, pred[i]]:.2f})" for i in range(t_n)]
    st.plotly_chart(figures.frames_player(v["images"], captions=captions), key="seq_player",
                    config={"displayModeBar": False})
    st.caption("▶ plays the sequence in the browser; the slider steps through its frames. The title says the "
               "run's prediction for the frame shown (one forward pass per frame).")
    frame = st.slider("Frame marked in the curves", 0, t_n - 1, t_n - 1, key="seq_frame")
    lab = [names[y] if y >= 0 else "—" for y in v["labels"]]
    st.caption(f"Frame {frame}: labelled {lab[frame]}, predicted **{names[pred[frame]]}** "
               f"(probability {v['probs'][frame, pred[frame]]:.2f}).")

with right:
    present = [j for j in range(len(au_ids)) if np.nanmax(np.nan_to_num(v["intensity"][:, j], nan=0)) > 0]
    au_default = state.get("au") if state.get("au") in [au_ids[j] for j in present] else None
    picked_aus = st.multiselect("AU curves", [au_ids[j] for j in present],
                                default=[au_default] if au_default else [au_ids[j] for j in present][:3],
                                format_func=lambda a: au_labels[au_ids.index(a)], key="seq_aus",
                                help="the AUs this sequence shows (intensity 0-5 per frame)")
    best = temporal.get("best_filter")
    suggested = []
    if best is not None:
        for a in picked_aus:
            f = int(best[au_ids.index(a)])
            if f >= 0 and f not in suggested:
                suggested.append(f)
    if not suggested:
        suggested = [int(i) for i in np.argsort(-acts.std(0))[:2]]
    filters = st.multiselect("Filters", list(range(acts.shape[1])), default=suggested,
                             format_func=lambda f: f"#{f}", key=f"seq_filters_{layer}",
                             help="default: the filter whose curve follows each chosen AU best over all sequences")
    series_f = {f"filter #{f}": acts[:, f] for f in filters}
    series_a = {au_labels[au_ids.index(a)]: v["intensity"][:, au_ids.index(a)] for a in picked_aus}
    series_p = {names[c]: v["probs"][:, c] for c in np.unique(np.r_[pred, v["labels"][v["labels"] >= 0]])}
    fig = charts.time_panels([("Filters: maximum activation per frame", series_f, "activation"),
                               ("AUs: intensity per frame", series_a, "intensity"),
                               ("The run's prediction", series_p, "probability")],
                              frame=frame, phases=v["phases"])
    st.vega_lite_chart(fig, key="seq_curves", width="content")
    st.caption("Shaded: the apex frames (or the micro-expression's frames). Activation is the filter's spatial "
               "maximum on the frame, as recorded; intensity is the ground truth (phantom) or the codes of the apex "
               "frames (CK+).")
    curves = pd.DataFrame({"frame": np.arange(t_n), "label": lab, "predicted": [names[p] for p in pred],
                           **{k: np.asarray(s, dtype=float) for k, s in {**series_f, **series_a}.items()},
                           **{f"p({k})": s for k, s in series_p.items()}})
    ui.csv_button("These curves (CSV)", partial(figures.csv_text, figures.sig3(curves)), f"{seq}_curves.csv", "dl_seq_curves")

st.subheader(f"Filters in time over all sequences, {layer}")
if not temporal:
    st.info("No filters-in-time figures are stored for this layer (the analysis predates them, or the data set "
            "has too few sequences showing an AU). `python -m fercore analyze --run "
            f"{reader.name}` stores them.")
else:
    n_seq = np.asarray(temporal["n_sequences"])
    rows = []
    for j in range(len(au_ids)):
        f = int(temporal["best_filter"][j])
        rows.append({"AU": au_labels[j], "sequences showing it": int(n_seq[j]),
                     "best filter": f"#{f}" if f >= 0 else "—",
                     "median r over those sequences": float(temporal["best_r"][j]) if f >= 0 else np.nan,
                     "its r with the expression where the AU is absent": float(temporal["r_absent"][f, j]) if f >= 0 else np.nan,
                     "most AU-specific filter": (f"#{int(temporal['specific_filter'][j])}"
                                                 if int(temporal["specific_filter"][j]) >= 0 else "—"),
                     "its specificity": float(temporal["specific_score"][j])})
    tt = figures.sig3(pd.DataFrame(rows))
    st.dataframe(tt, hide_index=True, width="stretch")
    st.caption("Per AU: the filter whose activation curve correlates best with the AU's intensity curve (Pearson r "
               "per sequence, median over the sequences that show the AU); as a control, its r with the whole "
               "expression's curve (summed AU intensities) in sequences that show an expression without the AU; and "
               "the filter with the largest r minus that control (its specificity). An r near 1 only says the filter rises as "
               "the face moves; the still-image funnel says whether it follows the AU beyond the emotion.")
    ui.csv_button("Filters in time (CSV)", partial(figures.csv_text, tt), f"{layer}_temporal.csv", "dl_temporal")
