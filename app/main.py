"""fercore dashboard: router and frame (``streamlit run app/main.py``).

The frame picks the run every view shows (sidebar, kept in ``st.session_state`` and the ``run``
query parameter), reads the address once per session (run, layer, filter, AU, statistic,
distinct: :mod:`app.state`) and writes the view back into it after every run, follows the
server-side build of the embedded default when the cache holds no run (:mod:`app.jobs`), and
routes to the views under ``app/views/`` with stable URL paths.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # `streamlit run app/main.py` puts only app/ on sys.path
    sys.path.insert(0, str(_ROOT))

import streamlit as st  # noqa: E402

from app import loaders, state, ui  # noqa: E402

st.set_page_config(page_title="fercore — what did my FER network learn?", page_icon="🙂", layout="wide")

_VIEWS = Path(__file__).resolve().parent / "views"
PAGES = [
    st.Page(_VIEWS / "overview.py", title="Overview", icon=":material/dashboard:", url_path="overview"),
    st.Page(_VIEWS / "filters.py", title="Filters", icon=":material/grid_view:", url_path="filters"),
    st.Page(_VIEWS / "fau_map.py", title="FAU map", icon=":material/grid_on:", url_path="fau-map"),
    st.Page(_VIEWS / "evidence.py", title="Evidence", icon=":material/table_rows:", url_path="evidence"),
    st.Page(_VIEWS / "sequences.py", title="Sequences", icon=":material/movie:", url_path="sequences"),
    st.Page(_VIEWS / "upload.py", title="Upload", icon=":material/add_a_photo:", url_path="upload"),
    st.Page(_VIEWS / "runs.py", title="Runs", icon=":material/compare:", url_path="runs"),
]


def _home() -> None:
    """The root address opens the overview at its own stable address (keeping the query)."""
    st.switch_page(PAGES[0])


page = st.navigation([st.Page(_home, title="fercore", url_path="home", default=True, visibility="hidden"), *PAGES])

_ABOUT_BUILD = (
    "No run exists in the cache yet, so the server builds the embedded default: phantom faces with known "
    "action units, a zero-bias CNN trained on them over 10 subject-independent folds, its filters recorded "
    "and related to AUs, and an untrained network of the same architecture as the control every figure is "
    "compared with. One round is built first, so the views open within about a minute; the other rounds "
    "then train in the background and the views switch to the full run when it is done."
)


def _follow_default_build(job) -> None:
    st.title("fercore")
    st.write(_ABOUT_BUILD)
    ui.follow_job(job.id)


def _pick_run(runs: list[dict], wanted: str | None) -> dict:
    by_dir = {r["run_dir"]: r for r in runs}
    current = st.session_state.get(ui.RUN_KEY)
    if wanted:
        match = [r["run_dir"] for r in runs if r["name"] == wanted]
        match = match or [r["run_dir"] for r in runs if r["name"].startswith(wanted)][:1]
        if match:
            current = match[0]
        else:
            from fercore.store.layout import runs_dir

            fallback = by_dir.get(current) or runs[0]
            state.note(f"The address names run `{wanted}`, which is not in the cache ({runs_dir()}); showing "
                       f"{fallback['label']} (`{fallback['name']}`) instead. Pick another in the sidebar.")
    if current not in by_dir:
        current = runs[0]["run_dir"]
    st.session_state["run_picker"] = current

    def changed() -> None:
        st.session_state[ui.RUN_KEY] = st.session_state["run_picker"]
        state.notes().clear()

    options = list(by_dir)
    chosen = st.sidebar.selectbox(
        "Run", options, key="run_picker", on_change=changed, format_func=lambda d: by_dir[d]["label"],
        help=f"Every run in the cache (data set · model · mean test accuracy · when training ended, or when a network "
             f"trained elsewhere was imported); all views show the run chosen here. This run's directory: "
             f"`{by_dir[current]['name']}`.")
    st.session_state[ui.RUN_KEY] = chosen
    info = by_dir[chosen]
    if info.get("imported"):
        st.sidebar.caption(f"**Recorded on** {info['dataset']}  \n**Model** {info['model']}, trained elsewhere  \n"
                           f"**Run** `{info['name']}`")
    else:
        st.sidebar.caption(f"**Data set** {info['dataset']} ({info['source'] or 'source not recorded'})  \n"
                           f"**Model** {info['model']}  \n**Run** `{info['name']}`")
    return info


url = state.read_url()
if url:
    st.session_state["fercore_url_pending"] = {k: v for k, v in url.items() if k != "run"}
runs = loaders.list_runs()
job = loaders.running_job(None)
if job is not None:  # the default build is running on the server (this tab started it or not)
    _follow_default_build(job)
    st.stop()
if not runs:
    from app import jobs

    last = jobs.registry().latest("default", "")
    if last is not None and last.error:
        st.title("fercore")
        ui.job_outcome("default", "")
        ui.run_job_or_follow(loaders.start_default_build, key="retry_default", label="Build the default run again")
        st.stop()
    job, _ = loaders.start_default_build()
    _follow_default_build(job)
    st.stop()
loaders.resume_full_default(runs)
ui.move_to_full_default()
info = _pick_run(runs, url.get("run"))
ui.background_status()
try:
    with ui.guarded(f"The {page.title} view"):
        page.run()
finally:
    state.sync_url(info["name"])
