"""Sequences: one sequence of the run's data frame by frame — the face at the chosen frame (a frame
slider and ▶ play), the run's prediction per frame, the chosen filters' activation curves beside
the AU intensity curves with that frame marked — and, per AU, the filter whose curve follows it best
over all sequences (what ``analyze`` stored under ``temporal``).

The frame slider drives the face and the curves alike and reruns only the part of the page that
shows the frame (a fragment). On a run of still images the view offers to build a small run of
phantom sequences as a server-side job (:func:`app.loaders.start_sequence_build`) and opens it when
it is done.

Layer and AU are the shared view state (:mod:`app.state`)."""

import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from app import charts, figures, loaders, state, ui

#: The button that builds a sequence run, and the session keys of the build this tab follows (the
#: one it started: :func:`app.ui.run_job_or_follow`'s key; or one it found running).
BUILD = "build_sequences"
_STARTED = f"fercore_job_{BUILD}"
_FOLLOWED = "fercore_seq_build_job"
#: Session key: play the sequence once on the next run (the ▶ button, or a run just built).
PLAY = "seq_play"
#: Seconds each frame is shown while the sequence plays.
PLAY_S = 0.2
#: Side (px) of the face image sent; the browser scales it to its column.
FACE_PX = 256
#: Width (px) of the curves' plot area: with the y axis and legends on top it fits the curves'
#: column at a 1400 px wide window (tests/app/test_browser_layout.py).
CURVES_PX = 590


def _open_run(run: str) -> None:
    """Show run ``run`` (in every view: the sidebar's choice) and play its first sequence."""
    st.session_state[ui.RUN_KEY] = run
    st.session_state[PLAY] = True
    st.rerun()


def offer_sequence_run(reader) -> None:
    """A run of still images has nothing to play: offer the sequence runs of the cache and to build
    a small one on the server; follow that build while it runs (in every tab that opens this
    view) and open its run when it is done."""
    job = loaders.sequence_build_job()
    if job is not None:
        st.session_state[_FOLLOWED] = job.id
        st.info("Building a small run of phantom sequences on the server; this view opens it when it is done.")
        ui.follow_job(job.id)
        return
    ids = [st.session_state.pop(k, None) for k in (_STARTED, _FOLLOWED)]
    built = next((r for r in (loaders.sequence_build_result(i) for i in ids if i) if r), None)
    if built is not None:
        _open_run(built)
    ui.job_outcome("sequences", "")
    st.info(f"Run {reader.name} was recorded on still images: its data set keeps no sequences with frame order, "
            "so there is nothing to play.")
    have = loaders.sequence_runs()
    for r in have[:3]:
        if st.button(f"Show {r['label']}", key=f"seq_show_{r['name']}",
                     help=f"run `{r['name']}`, trained on phantom sequences ({r['dataset']})"):
            _open_run(r["run_dir"])
    st.markdown(f"**Build a small sequence run** — {loaders.sequence_build_words()}: about "
                f"{loaders.SEQUENCE_BUILD_SECONDS} s on two CPU cores, on the server (you may close the tab). "
                "Every stage is cached: building it again, from any tab, finds the same run in seconds.")
    ui.run_job_or_follow(loaders.start_sequence_build, key=BUILD,
                         label=f"Build a sequence run (about {loaders.SEQUENCE_BUILD_SECONDS} s)")
    with st.expander("The same from the command line, or on your own sequences"):
        st.code("python -m fercore phantom-seq --out seq.h5          # or: import ckplus DIR --frames all\n"
                "python -m fercore train --data seq.h5 --preset phantom-default\n"
                "python -m fercore record --run <run> && python -m fercore analyze --run <run>", language="bash")
        st.caption("then pick that run in the sidebar.")


st.title("Sequences")
ctx = ui.require_run()
if ctx is None:
    st.stop()
run_dir, stamp, reader = ctx

table = loaders.sequence_table(run_dir, stamp)
if table is None or table.empty:
    offer_sequence_run(reader)
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


def _play() -> None:
    st.session_state[PLAY] = True


@st.fragment(key="seq_frames")
def frames_panel() -> None:
    """The face at the chosen frame and the curves over the frames with that frame marked, under
    one frame slider: moving it (or ▶) reruns only this."""
    with ui.guarded("The sequence's frames"):
        _frames()


def _frames() -> None:
    acts = v["activation"][layer]
    t_n = len(v["images"])
    pred = v["probs"].argmax(1)
    names = v["class_names"]
    lab = [names[y] if y >= 0 else "—" for y in v["labels"]]

    c_au, c_f = st.columns(2)
    present = [j for j in range(len(au_ids)) if np.nanmax(np.nan_to_num(v["intensity"][:, j], nan=0)) > 0]
    au_default = state.get("au") if state.get("au") in [au_ids[j] for j in present] else None
    picked_aus = c_au.multiselect("AU curves", [au_ids[j] for j in present],
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
    filters = c_f.multiselect("Filters", list(range(acts.shape[1])), default=suggested,
                              format_func=lambda f: f"#{f}", key=f"seq_filters_{layer}",
                              help="default: the filter whose curve follows each chosen AU best over all sequences")
    series_f = {f"filter #{f}": acts[:, f] for f in filters}
    series_a = {au_labels[au_ids.index(a)]: v["intensity"][:, au_ids.index(a)] for a in picked_aus}
    series_p = {names[c]: v["probs"][:, c] for c in np.unique(np.r_[pred, v["labels"][v["labels"] >= 0]])}
    panels = [("Filters: maximum activation per frame", series_f, "activation"),
              ("AUs: intensity per frame", series_a, "intensity"),
              ("The run's prediction", series_p, "probability")]

    left, right = st.columns([1, 3])
    face, controls, said = left.empty(), left.container(), left.empty()
    curves = right.empty()

    def show(i: int) -> None:
        face.image(figures.resize(v["images"][i], FACE_PX), width="stretch", output_format="PNG",
                   caption=f"frame {i}: predicted {names[pred[i]]} ({v['probs'][i, pred[i]]:.2f})")
        curves.vega_lite_chart(charts.time_panels(panels, frame=i, phases=v["phases"], width=CURVES_PX),
                               width="content")
        said.caption(f"Frame {i}: labelled {lab[i]}, predicted **{names[pred[i]]}** "
                     f"(probability {v['probs'][i, pred[i]]:.2f}).")

    if st.session_state.get("seq_frame", t_n - 1) not in range(t_n):  # a shorter sequence than the last
        st.session_state["seq_frame"] = t_n - 1
    if st.session_state.pop(PLAY, False):
        for i in range(t_n):  # the face and the curves' mark move together, frame by frame
            show(i)
            time.sleep(PLAY_S)
        st.session_state["seq_frame"] = t_n - 1
    st.session_state.setdefault("seq_frame", t_n - 1)
    frame = controls.slider("Frame", 0, t_n - 1, key="seq_frame",
                            help="the frame shown: the face, its prediction, and the dashed line in the curves")
    controls.button("▶ Play", key="seq_play_button", on_click=_play,
                    help=f"steps through the {t_n} frames ({PLAY_S:.1f} s each), the face and the curves together")
    show(frame)
    with right:
        st.caption("Shaded: the apex frames (or the micro-expression's frames); dashed: the frame shown. Activation is "
                   "the filter's spatial maximum on the frame, as recorded; intensity is the ground truth (phantom) or "
                   "the codes of the apex frames (CK+).")
        per_frame = pd.DataFrame({"frame": np.arange(t_n), "label": lab, "predicted": [names[p] for p in pred],
                                  **{k: np.asarray(s, dtype=float) for k, s in {**series_f, **series_a}.items()},
                                  **{f"p({k})": s for k, s in series_p.items()}})
        ui.csv_button("These curves (CSV)", partial(figures.csv_text, figures.sig3(per_frame)), f"{seq}_curves.csv",
                      "dl_seq_curves")


frames_panel()

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
    num = st.column_config.NumberColumn
    st.dataframe(tt, hide_index=True, width="stretch", column_config={  # short headers: it fits without scrolling
        "sequences showing it": num("sequences", help="sequences showing the AU"),
        "median r over those sequences": num("median r", help="the best filter's median r over those sequences"),
        "its r with the expression where the AU is absent": num(
            "r, AU absent", help="the best filter's r with the expression in sequences where the AU is absent"),
        "most AU-specific filter": st.column_config.TextColumn("most specific filter",
                                                               help="the most AU-specific filter"),
        "its specificity": num("specificity", help="the most AU-specific filter's r minus its control r")})
    st.caption("Per AU: the filter whose activation curve correlates best with the AU's intensity curve (Pearson r "
               "per sequence, median over the sequences that show the AU); as a control, its r with the whole "
               "expression's curve (summed AU intensities) in sequences that show an expression without the AU; and "
               "the filter with the largest r minus that control (its specificity). An r near 1 only says the filter rises as "
               "the face moves; the still-image funnel says whether it follows the AU beyond the emotion.")
    ui.csv_button("Filters in time (CSV)", partial(figures.csv_text, tt), f"{layer}_temporal.csv", "dl_temporal")
