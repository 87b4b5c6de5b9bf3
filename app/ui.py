"""The frame every view shares: the chosen run, error boundaries, progress bars, downloads."""

from __future__ import annotations

import contextlib
import traceback

import streamlit as st
from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException

from app import loaders

RUN_KEY = "run_dir"


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


def progress_bar(label: str):
    """A ``progress(done, total, stage)`` callback drawing into a page progress bar."""
    bar = st.progress(0.0, text=label)

    def progress(done: int, total: int, stage: str) -> None:
        frac = min(max(done / total, 0.0), 1.0) if total else 0.0
        bar.progress(frac, text=f"{label}: {stage} — {frac:.0%}")

    return progress


def require_run() -> tuple[str, float, object] | None:
    """(run_dir, records stamp, reader) of the chosen run; draws the reason and None when the
    run cannot be shown (none chosen, records missing or corrupt — with a rebuild button)."""
    run_dir = current_run()
    if not run_dir:
        st.info("No run chosen. Pick one in the sidebar.")
        return None
    stamp = loaders.records_stamp(run_dir)
    r = loaders.reader(run_dir, stamp)
    if not r.has_records or not r.has_stats:
        st.error(r.records_error or f"Run {r.name} has records but no filter–AU statistics yet "
                 f"(the analysis step did not run or was interrupted).")
        if st.button("Rebuild the records (record + analyse)", key="rebuild_records", type="primary"):
            loaders.rebuild_records(run_dir, progress_bar("Rebuilding records"))
            st.rerun()
        return None
    try:
        loaders.faceset(run_dir, stamp)
    except (ValueError, OSError) as e:  # the data set file changed or vanished since recording
        st.error(f"Run {r.name}: the data set its records were made on cannot be used: {e}")
        if st.button("Record and analyse again on the current data set", key="rebuild_records", type="primary"):
            loaders.rebuild_records(run_dir, progress_bar("Rebuilding records"))
            st.rerun()
        return None
    return run_dir, stamp, r


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
    st.info("**No null network yet.** The funnel is shown without the counts of an untrained network of "
            "the same architecture recorded on the same images (about as long as recording the run once).")
    if st.button("Build the null network", key=f"build_null_{key}", type="primary"):
        with guarded("Building the null network"):
            loaders.build_null(run_dir, progress_bar("Building the null network"))
            st.rerun()


def csv_button(label: str, data: str, file_name: str, key: str) -> None:
    st.download_button(label, data=data.encode(), file_name=file_name, mime="text/csv", key=key)


def png_button(label: str, png: bytes, file_name: str, key: str) -> None:
    st.download_button(label, data=png, file_name=file_name, mime="image/png", key=key)
