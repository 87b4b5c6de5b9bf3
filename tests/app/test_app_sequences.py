"""The Sequences view on a real tiny run of phantom sequences (generated, trained, recorded and
analysed here): one frame slider drives the face and the curves' mark, the curves show the filters,
AUs and the run's prediction, and the stored filters in time are listed; a run of still images
offers to build a sequence run on the server, and opens it when it is built."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pandas as pd
import pytest
from test_app import _keep_cache_env, app, assert_clean, finish_jobs, texts  # noqa: F401 (the autouse fixture)

#: The Sequences view's build made tiny (``app.loaders.SEQUENCE_BUILD``): 6 subjects in 3 folds,
#: 8 frames (the fewest it draws), one epoch of one round, no null network; a few seconds.
TINY_SEQUENCE_BUILD = {"sequences": dict(n_subjects=6, per_subject=8, n_frames=8, size=48, seed=0, n_folds=3),
                       "preset": "phantom-default", "train_options": dict(width=0.125, epochs=1, folds=(0,)),
                       "null": None}


def make_sequence_run(cache):
    """Phantom sequences (10 subjects x 8 sequences x 8 frames) in ``cache``, a tiny network trained,
    recorded and analysed on them; returns (run directory, FaceSet). ``FERCORE_CACHE`` must name
    ``cache``. Also used by tests/app/test_browser_layout.py."""
    from fercore.analysis.analyze import analyze
    from fercore.data.phantom.sequences import generate_sequences
    from fercore.recording.record import record
    from fercore.store.faceset_h5 import save_faceset
    from fercore.training.presets import train_preset

    fs = generate_sequences(10, per_subject=8, n_frames=8, size=48, seed=0)
    path = cache / "datasets" / "seq.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_faceset(fs, path)
    run = train_preset(path, "phantom-default", width=0.125, epochs=2, folds=(0,))
    record(run, k=4)
    analyze(run, null=None)
    return run, fs


@pytest.fixture(scope="module")
def seq_cache(tmp_path_factory):
    import os

    cache = tmp_path_factory.mktemp("seq-cache")
    old = os.environ.get("FERCORE_CACHE")
    os.environ["FERCORE_CACHE"] = str(cache)
    try:
        run, fs = make_sequence_run(cache)
        yield cache, run, fs
    finally:
        if old is None:
            os.environ.pop("FERCORE_CACHE", None)
        else:
            os.environ["FERCORE_CACHE"] = old


def test_a_sequence_plays_with_its_curves_and_the_filters_in_time(seq_cache):
    cache, run, fs = seq_cache
    at = app(cache)
    at.run()
    at.switch_page("views/sequences.py").run()
    assert_clean(at)
    seq = at.selectbox(key="seq_sequence")
    assert len(seq.options) == len(np.unique(fs.sequences))
    assert not at.get("plotly_chart")  # one frame control: the slider, for the face and the curves alike
    (frame,) = at.slider
    assert frame.key == "seq_frame" and (frame.min, frame.max, frame.value) == (0, 7, 7)
    assert at.button(key="seq_play_button").label.startswith("▶")
    (curves,) = at.get("vega_lite_chart")
    import json

    import pyarrow as pa

    assert "frame 7: predicted" in _face_caption(at)
    panels = json.loads(curves.proto.spec)
    assert [v["title"] for v in panels["vconcat"]][:2] == ["Filters: maximum activation per frame",
                                                           "AUs: intensity per frame"]
    data = {d.name: pa.ipc.open_stream(d.data.data).read_pandas() for d in curves.proto.datasets}
    names = set(data["p0"]["series"]) | set(data["p1"]["series"])
    assert any(n.startswith("filter #") for n in names) and any(n.startswith("AU") for n in names)
    table = at.dataframe[0].value
    assert {"best filter", "median r over those sequences", "sequences showing it"} <= set(table.columns)
    assert (table["sequences showing it"] > 0).any()
    assert _marked_frame(curves) == 7
    # another sequence, a frame: the face, its caption and the curves' mark follow
    at.selectbox(key="seq_sequence").select_index(3).run()
    at.slider(key="seq_frame").set_value(2).run()
    assert_clean(at)
    assert "Frame 2: labelled" in texts(at) and "frame 2: predicted" in _face_caption(at)
    assert _marked_frame(at.get("vega_lite_chart")[0]) == 2


def _face_caption(at) -> str:
    (face,) = at.get("image")
    return " ".join(face.captions)


def _marked_frame(chart) -> int:
    """The frame the curves' dashed rule marks (its own dataset, ``frame``)."""
    import pyarrow as pa

    (d,) = [d for d in chart.proto.datasets if d.name == "frame"]
    return int(pa.ipc.open_stream(d.data.data).read_pandas()["f"][0])


def test_play_steps_through_the_frames_and_ends_on_the_last(seq_cache):
    cache, run, fs = seq_cache
    at = app(cache)
    at.run()
    at.switch_page("views/sequences.py").run()
    at.slider(key="seq_frame").set_value(1).run()
    t0 = time.perf_counter()
    at.button(key="seq_play_button").click().run()
    assert time.perf_counter() - t0 >= 8 * 0.2 * 0.9  # every frame shown for a moment
    assert_clean(at)
    assert at.slider(key="seq_frame").value == 7 and _marked_frame(at.get("vega_lite_chart")[0]) == 7


def test_the_curves_csv_has_frames_and_three_significant_digits(seq_cache):
    cache, run, fs = seq_cache
    at = app(cache)
    at.run()
    at.switch_page("views/sequences.py").run()
    from app import loaders

    t = loaders.sequence_table(str(run), loaders.records_stamp(str(run)))
    assert isinstance(t, pd.DataFrame) and (t["frames"] == 8).all()
    assert set(t["expression"]) <= set(fs.class_names)


def test_a_run_of_still_images_says_there_is_nothing_to_play(tiny_cache, tiny_run):
    at = app(tiny_cache)
    at.run()
    at.switch_page("views/sequences.py").run()
    assert not at.exception and not at.error
    assert "keeps no sequences" in texts(at) and "phantom-seq" in at.code[0].value
    from app import loaders

    assert at.button(key="build_sequences").label == f"Build a sequence run (about {loaders.SEQUENCE_BUILD_SECONDS} s)"
    assert "two CPU cores" in texts(at)


@pytest.fixture()
def still_cache(tiny_cache, tmp_path, monkeypatch):
    """A copy of the tiny run's cache (a run of still images) that a test may add runs to, and the
    Sequences view's build made tiny."""
    from app import loaders

    cache = tmp_path / "cache"
    shutil.copytree(tiny_cache, cache)
    monkeypatch.setattr(loaders, "SEQUENCE_BUILD", TINY_SEQUENCE_BUILD)
    return cache


def _runs(cache) -> set[str]:
    return {d.name for d in (cache / "runs").iterdir() if d.is_dir()}


def test_the_offer_builds_a_sequence_run_opens_it_and_plays_it(still_cache):
    still = _runs(still_cache)
    at = app(still_cache)
    at.run()
    at.switch_page("views/sequences.py").run()
    assert_clean(at)
    at.button(key="build_sequences").click().run()
    assert_clean(at)
    finish_jobs(at)  # the job ends; the page opens the new run and plays its first sequence
    assert_clean(at)
    (new,) = _runs(still_cache) - still
    assert at.sidebar.selectbox(key="run_picker").value.endswith(new)
    assert at.slider(key="seq_frame").value == 7  # played to the last of the 8 frames
    assert at.get("vega_lite_chart") and len(at.selectbox(key="seq_sequence").options) == 6 * 8
    datasets = sorted(p.name for p in (still_cache / "datasets").glob("phantom-seq-*.h5"))
    assert len(datasets) == 1

    # a second session on the still run: the built run is offered, and building again reuses it
    at = app(still_cache)
    at.run()
    (tiny,) = still
    at.sidebar.selectbox(key="run_picker").set_value(str(still_cache / "runs" / tiny)).run()
    at.switch_page("views/sequences.py").run()
    assert_clean(at)
    assert at.button(key=f"seq_show_{new}")
    t0 = time.perf_counter()
    at.button(key="build_sequences").click().run()
    finish_jobs(at)
    assert time.perf_counter() - t0 < 30  # every stage cached (the first build trained a network)
    assert_clean(at)
    assert _runs(still_cache) - still == {new} and at.sidebar.selectbox(key="run_picker").value.endswith(new)
    assert sorted(p.name for p in (still_cache / "datasets").glob("phantom-seq-*.h5")) == datasets


def test_a_sequence_is_listed_by_the_expression_of_its_apex(seq_cache):
    from app import loaders
    from fercore.data.faceset import PHASE_CODES

    cache, run, fs = seq_cache
    t = loaders.sequence_table(str(run), loaders.records_stamp(str(run))).set_index("sequence")
    for sid in np.unique(fs.sequences)[:6]:
        rows = np.flatnonzero((fs.sequences == sid) & (fs.phases == PHASE_CODES["apex"]))
        assert t.loc[sid, "expression"] == fs.class_names[fs.labels[rows[-1]]]
