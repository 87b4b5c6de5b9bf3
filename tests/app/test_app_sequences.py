"""The Sequences view on a real tiny run of phantom sequences (generated, trained, recorded and
analysed here): it plays a sequence, draws the filters' and AUs' curves with the run's prediction,
and shows the stored filters in time; a run of still images says there is nothing to play."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_app import _keep_cache_env, app, assert_clean, texts  # noqa: F401 (the autouse fixture)


@pytest.fixture(scope="module")
def seq_cache(tmp_path_factory):
    import os

    cache = tmp_path_factory.mktemp("seq-cache")
    old = os.environ.get("FERCORE_CACHE")
    os.environ["FERCORE_CACHE"] = str(cache)
    try:
        from fercore.analysis.analyze import analyze
        from fercore.data.phantom.sequences import generate_sequences
        from fercore.recording.record import record
        from fercore.store.faceset_h5 import save_faceset
        from fercore.training.presets import train_preset

        fs = generate_sequences(10, per_subject=8, n_frames=8, size=48, seed=0)
        path = cache / "datasets" / "seq.h5"
        path.parent.mkdir(parents=True)
        save_faceset(fs, path)
        run = train_preset(path, "phantom-default", width=0.125, epochs=2, folds=(0,))
        record(run, k=4)
        analyze(run, null=None)
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
    (player,) = at.get("plotly_chart")
    (curves,) = at.get("vega_lite_chart")
    import json

    import pyarrow as pa

    spec = json.loads(player.proto.spec)
    assert len(spec["frames"]) == 8 and spec["layout"]["updatemenus"][0]["buttons"][0]["label"].startswith("▶")
    panels = json.loads(curves.proto.spec)
    assert [v["title"] for v in panels["vconcat"]][:2] == ["Filters: maximum activation per frame",
                                                           "AUs: intensity per frame"]
    data = {d.name: pa.ipc.open_stream(d.data.data).read_pandas() for d in curves.proto.datasets}
    names = set(data["p0"]["series"]) | set(data["p1"]["series"])
    assert any(n.startswith("filter #") for n in names) and any(n.startswith("AU") for n in names)
    table = at.dataframe[0].value
    assert {"best filter", "median r over those sequences", "sequences showing it"} <= set(table.columns)
    assert (table["sequences showing it"] > 0).any()
    # another sequence, a frame: the caption follows
    at.selectbox(key="seq_sequence").select_index(3).run()
    at.slider(key="seq_frame").set_value(2).run()
    assert_clean(at)
    assert "Frame 2: labelled" in texts(at)


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
    assert "keeps no sequences" in texts(at) and "phantom-seq" in texts(at)


def test_a_sequence_is_listed_by_the_expression_of_its_apex(seq_cache):
    from app import loaders
    from fercore.data.faceset import PHASE_CODES

    cache, run, fs = seq_cache
    t = loaders.sequence_table(str(run), loaders.records_stamp(str(run))).set_index("sequence")
    for sid in np.unique(fs.sequences)[:6]:
        rows = np.flatnonzero((fs.sequences == sid) & (fs.phases == PHASE_CODES["apex"]))
        assert t.loc[sid, "expression"] == fs.class_names[fs.labels[rows[-1]]]
