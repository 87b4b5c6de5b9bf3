"""The frame every view shares: the chosen run and view state, error boundaries, the progress of
server-side jobs, downloads."""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable

import numpy as np
import streamlit as st
from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException

from app import loaders, state

RUN_KEY = "run_dir"
#: The Overview's tabs, by the name the address uses (``?tab=curves``).
OVERVIEW_TABS = {"confusion": "Confusion matrix", "curves": "Learning curves", "data": "Data set"}
#: How often a page following a server-side job redraws its progress (seconds).
POLL_S = 1.0
#: What recording and analysing costs, said beside the buttons that start it.
RECORD_COST = ("What it costs: a pass over the data set, a null network recorded the same way, and the analysis — "
               "about 6 s for the default network on 2,400 phantom faces on two free cores, minutes for a large "
               "network on tens of thousands of faces; the progress bar then shows the time left.")
#: Seconds between two redraws of the background build's progress in the sidebar.
BACKGROUND_POLL_S = 3.0


def current_run() -> str | None:
    """The run directory chosen in the sidebar (shared by every view), or None."""
    return st.session_state.get(RUN_KEY)


@contextlib.contextmanager
def guarded(what: str):
    """Show an unexpected exception as a short error with the details folded away."""
    try:
        yield
    except ScriptControlException:  # st.stop() / st.rerun() pass through
        raise
    except Exception as e:
        st.error(f"{what} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        with st.expander("Details"):
            st.code("".join(traceback.format_exception(e)), language="text")


# ------------------------------------------------------------------------------- server jobs
def _duration(s: float | None) -> str:
    if s is None:
        return "estimating…"
    s = max(0, int(round(s)))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def job_text(snap: dict) -> str:
    """One line of a job's progress: stage n/N (fold k/10), percent, elapsed, remaining."""
    stage = snap["stage"] or "starting"
    fold = f", fold {snap['fold']}" if snap["fold"] else ""
    return (f"{snap['label']}: {stage} (stage {snap['stage_number']}/{snap['n_stages']}{fold}) — "
            f"{snap['fraction']:.0%} · {_duration(snap['elapsed'])} elapsed · about "
            f"{_duration(snap['remaining'])} left")


def follow_job(job_id: str, *, explain: bool = True) -> None:
    """Draw a server-side job's progress and redraw it every :data:`POLL_S` seconds; when the job
    ends, rerun the whole page (which then shows the result, or the job's error)."""
    from app import jobs

    job = jobs.registry().get(job_id)
    if job is None:
        return
    if explain:
        snap = job.snapshot()
        started = time.strftime("%H:%M:%S", time.localtime(snap["started"]))
        if snap["started_by"] and snap["started_by"] != jobs.session_id():
            st.info(f"This job was started at {started} from another browser tab or by another user of this "
                    "server. It runs on the server, not in a tab: this page follows the same progress and opens "
                    "the result when it is done.")
        else:
            st.caption(f"Started at {started}. The work runs on the server: you may close this tab; opening the "
                       "dashboard again (in any tab) shows the same progress.")

    @st.fragment(run_every=POLL_S)
    def _progress() -> None:
        snap = job.snapshot()
        st.progress(min(max(snap["fraction"], 0.0), 1.0), text=job_text(snap))
        if not snap["running"]:
            st.rerun(scope="app")

    _progress()


def job_outcome(kind: str, target: str = "") -> None:
    """Show the error of the last job of ``kind`` on ``target`` when it failed."""
    from app import jobs

    job = jobs.registry().latest(kind, target)
    if job is None or job.running or not job.error:
        return
    st.error(f"{job.label} failed: {job.error}")
    with st.expander("Details"):
        st.code(job.details, language="text")


def run_job_or_follow(start, *args, key: str, label: str) -> None:
    """A primary button that starts a server-side job (``start(*args)`` of :mod:`app.loaders`);
    the page then follows it."""
    if st.button(label, key=key, type="primary"):
        job, _ = start(*args)
        st.session_state[f"fercore_job_{key}"] = job.id
        st.rerun()


# -------------------------------------------------------------------------------- the run
def require_run() -> tuple[str, float, object] | None:
    """(run_dir, records stamp, reader) of the chosen run; draws the reason and None when the
    run cannot be shown (none chosen, being rebuilt on the server, records missing or corrupt —
    with a rebuild button). Also makes the shared view state valid for the run and shows what
    the address asked for that the run does not have."""
    out = _require_run()
    show_notes()
    return out


def _require_run() -> tuple[str, float, object] | None:
    run_dir = current_run()
    if not run_dir:
        st.info("No run chosen. Pick one in the sidebar.")
        return None
    job = loaders.running_job(run_dir)
    if job is not None:
        follow_job(job.id)
        return None
    job_outcome("run", run_dir)
    stamp = loaders.records_stamp(run_dir)
    r = loaders.reader(run_dir, stamp)
    if r.config.get("kind") == "imported" and not r.has_records:
        record_imported(r)
        return None
    if not r.has_records or not r.has_stats:
        job_outcome("default", "")  # the default build failed after this run was trained: say why
        st.error(r.records_error or f"Run {r.name} has records but no filter–AU statistics yet "
                 f"(the analysis step did not run or was interrupted).")
        run_job_or_follow(loaders.start_rebuild, run_dir, key="rebuild_records",
                          label="Rebuild the records (record + analyse)")
        st.caption(RECORD_COST)
        return None
    try:
        loaders.faceset(run_dir, stamp)
    except (ValueError, OSError) as e:  # the data set file changed or vanished since recording
        st.error(f"Run {r.name}: the data set its records were made on cannot be used: {e}")
        run_job_or_follow(loaders.start_rebuild, run_dir, key="rebuild_records",
                          label="Record and analyse again on the current data set")
        return None
    resolve_view(r)
    first_look_note(run_dir)
    au_targets_note(r)
    return run_dir, stamp, r


def first_look_note(run_dir: str) -> None:
    """At the top of every view of the default's first look while the full default trains."""
    job = loaders.background_default()
    if job is not None and job.running and job.about == run_dir:
        snap = job.snapshot()
        st.info(f"**First look (partial)**: this run is one round of the default's {job.rounds or 10}, trained, "
                "recorded and analysed so that the views open at once; its accuracy is that round's. The full "
                f"default is training in the background ({job_text(snap)}); the views switch to it when it is "
                "done.", icon="⏳")


def move_to_full_default() -> None:
    """When the background build of the full default has ended, a session still on its first
    look moves to the full run (once)."""
    job = loaders.background_default()
    if job is None or job.running or job.error or not job.result or not job.about:
        return
    if st.session_state.get(RUN_KEY) == job.about and st.session_state.get("fercore_moved_to_full") != job.id:
        st.session_state[RUN_KEY] = job.result
        st.session_state["fercore_moved_to_full"] = job.id


def background_status() -> None:
    """In the sidebar: the full default training in the background, redrawn every few seconds;
    when it ends the whole page runs again (and :func:`move_to_full_default` moves the session)."""
    job = loaders.background_default()
    if job is None:
        return
    if not job.running:
        if job.error:
            st.sidebar.error(f"{job.label} failed: {job.error}")
        return

    @st.fragment(run_every=BACKGROUND_POLL_S)
    def _status() -> None:
        snap = job.snapshot()
        if not snap["running"]:
            st.rerun(scope="app")
        st.progress(min(max(snap["fraction"], 0.0), 1.0), text=job_text(snap))
        st.caption("The server trains the full default in the background; the views show its first look "
                   "(one round) meanwhile and switch to it when it is done.")

    with st.sidebar:
        _status()


def au_targets_note(r) -> None:
    """At the top of every view of a run taught the AUs: say so, and where the emotion-only
    answer is."""
    if r.au_targets:
        st.warning(f"**Trained with AU targets**: besides the emotion this network was taught the AUs "
                   f"({r.au_targets}), so its AU-selective filters are partly there by construction. Whether an "
                   "*expression* network learns the AUs by itself is answered by a run trained on the emotions "
                   "only (the default, preset `phantom-default`); the Runs view compares the two.", icon="ℹ️")


def record_imported(r) -> None:
    """An imported network without records: say so, and record and analyse it on a FaceSet of the
    cache chosen here (what ``record --data`` then ``analyze`` do) as a server-side job."""
    st.info(f"**{r.name} is a network trained elsewhere** ({loaders.imported_text(r.config)}). fercore does not "
            "have the faces it was trained on: record it on a FaceSet to see its filters. From the command line: "
            f"`python -m fercore record --run {r.name} --data FACES.h5` then `python -m fercore analyze --run {r.name}`.")
    sets = loaders.facesets()
    if not sets:
        st.caption("No FaceSet in the cache yet: make one with `python -m fercore phantom --out faces.h5` or import a "
                   "data set (`python -m fercore import ...`).")
        return
    names = list(sets)
    data = st.selectbox("FaceSet to record on", names, key="imported_data", format_func=lambda n: sets[n],
                        help="the FaceSet files in the cache's datasets folder (phantom faces, imported data sets)")
    run_job_or_follow(loaders.start_record, str(r.run_dir), data, key="record_imported",
                      label="Record and analyse on this FaceSet")
    st.caption(RECORD_COST)


def resolve_view(r) -> None:
    """Make the shared layer, filter, AU, statistic and Overview tab valid for run ``r``: values the address
    asked for are used when the run has them and named in a note when it does not; unset values
    get defaults (the last layer, the filter with the most evidence, the AU it is judged by)."""
    v = state.view()
    pending = st.session_state.pop("fercore_url_pending", {})
    layers = list(r.layers)
    if "layer" in pending:
        if pending["layer"] in layers:
            v["layer"] = pending["layer"]
        else:
            state.note(f"The address asks for layer `{pending['layer']}`, which run {r.name} did not record "
                       f"(recorded: {', '.join(layers)}); showing {layers[-1]}.")
    if v.get("layer") not in layers:
        v["layer"] = layers[-1]
    ev = loaders.evidence(str(r.run_dir), loaders.records_stamp(str(r.run_dir)), v["layer"])
    n = ev.n_filters
    if "filter" in pending:
        if 0 <= int(pending["filter"]) < n:
            v["filter"] = int(pending["filter"])
        else:
            state.note(f"The address asks for filter {pending['filter']}, but {v['layer']} has {n} filters "
                       f"(0–{n - 1}); showing the filter with the most evidence.")
            v.pop("filter", None)
    if not isinstance(v.get("filter"), int) or not 0 <= v["filter"] < n:
        v["filter"] = int(ev["order_evidence"][0])
        v.pop("au", None)
    au_ids = [int(a) for a in ev["au_ids"]]
    if "au" in pending:
        if int(pending["au"]) in au_ids:
            v["au"] = int(pending["au"])
        else:
            state.note(f"The address asks for AU{pending['au']}, which run {r.name} has no codes for "
                       f"(AUs: {' '.join(f'AU{a}' for a in au_ids)}); showing the AU the filter is judged by.")
    if v.get("au") not in au_ids:
        v["au"] = au_ids[int(ev["judged"][v["filter"]])]
    _take(v, pending, "stat", loaders.STATISTICS, "the statistic")
    if v.get("stat") not in loaders.STATISTICS:
        v["stat"] = "share"
    if "distinct" in pending:
        v["distinct"] = bool(pending["distinct"])
    v.setdefault("distinct", False)
    _take(v, pending, "tab", OVERVIEW_TABS, "the Overview tab")


def _take(v: dict, pending: dict, name: str, known, what: str) -> None:
    """Use the address's value of ``name`` when it is one of ``known``; else name it in a note."""
    if name not in pending:
        return
    if pending[name] in known:
        v[name] = pending[name]
    else:
        state.note(f"The address asks for {what} `{pending[name]}`; known: {', '.join(known)}.")


def au_column(ev, au: int) -> int:
    """The column of AU number ``au`` in a layer's evidence."""
    return int(np.flatnonzero(np.asarray(ev["au_ids"]) == int(au))[0])


def show_notes() -> None:
    """The notes about the address (unknown run, layer, filter, AU), with a button that clears them."""
    notes = state.notes()
    if not notes:
        return
    for n in notes:
        st.warning(n)
    if st.button("Dismiss", key="dismiss_url_notes"):
        notes.clear()
        st.rerun()


# --------------------------------------------------------------------------- the controls
def honest_summary(run_dir: str, stamp: float, *, key: str) -> dict:
    """Draw the run's funnel of controls (raw, distinct top-K, beyond emotion, in the AU's region)
    beside the null network's, and, when the analysis has no null, a note and a button that
    builds it. Returns the stored summary."""
    from app import components

    summary = loaders.summary(run_dir, stamp)
    components.summary_table(summary, key=f"{key}_summary")
    if not summary.get("null"):
        null_missing(run_dir, key=key)
    return summary


def null_missing(run_dir: str, *, key: str) -> None:
    """The note shown while the run has no null network, with the button that builds it."""
    st.info("**No null network yet.** The funnel is shown without the counts of a null network (an untrained "
            "network of the same architecture; for an imported network its own weights permuted) recorded on the "
            "same images (about as long as recording the run once).")
    run_job_or_follow(loaders.start_null, run_dir, key=f"build_null_{key}", label="Build the null network")


# ----------------------------------------------------------------------- projections on demand
def projections_or_wait(run_dir: str, stamp: float, layer: str, f: int | None, *, what: str) -> bool:
    """True when filter ``f``'s projections (``None``: every filter's first, for the grid) exist.
    Otherwise start computing them on the server (once: another tab asking for the same filter
    joins the job), show a placeholder that redraws the page as soon as they exist, and return
    False; the rest of the view is not held up."""
    if loaders.projections_ready(run_dir, stamp, layer, f):
        return True
    job = loaders.projection_job(run_dir, stamp, layer, f)
    if job is not None and not job.running and job.error:
        st.error(f"{job.label} failed: {job.error}")
        if st.button("Try again", key=f"projections_retry_{layer}_{f}"):
            loaders.start_projections(run_dir, stamp, layer, f)
            st.rerun()
        return False
    loaders.start_projections(run_dir, stamp, layer, f)

    @st.fragment(run_every=POLL_S)
    def _wait() -> None:
        if loaders.projections_ready(run_dir, stamp, layer, f):
            st.rerun(scope="app")
        done = loaders.projection_job(run_dir, stamp, layer, f)
        if done is not None and not done.running:
            st.rerun(scope="app")  # failed: the page says why
        st.info(f"⏳ Computing {what}… Projections are made the first time they are asked for, then kept with "
                "the records.")

    _wait()
    return False


# ---------------------------------------------------------------------------- downloads
def csv_button(label: str, data: str | Callable[[], str], file_name: str, key: str) -> None:
    """A CSV download. Pass a callable to make the file only when the button is clicked (the
    page's run then neither formats the table nor holds the file); a click does not rerun."""
    payload = (lambda: data().encode()) if callable(data) else data.encode()
    st.download_button(label, data=payload, file_name=file_name, mime="text/csv", key=key, on_click="ignore")


def png_button(label: str, png: bytes | Callable[[], bytes], file_name: str, key: str) -> None:
    """A PNG download (``png`` may be a callable, as for :func:`csv_button`)."""
    st.download_button(label, data=png, file_name=file_name, mime="image/png", key=key, on_click="ignore")
