"""What makes the figures fit their columns, checked without a browser (AppTest over the tiny run,
and the chart specs): the Evidence view shows a chosen set of columns under short headers, with
every column behind a toggle and in the CSV; the Upload view's class probabilities fit their
column; the Sequences view's curves keep their legends above the plots and their width fixed.
tests/app/test_browser_layout.py checks the same in Chromium at 1400 px."""

from __future__ import annotations

import json

import numpy as np
from test_app import _keep_cache_env, app, assert_clean  # noqa: F401 (the autouse fixture)


def _ranked(at):
    (table,) = [d for d in at.dataframe if "verdict" in d.value.columns]
    return table


def test_the_evidence_table_shows_its_chosen_columns_and_every_column_on_request(tiny_cache, tiny_null):
    from app import loaders
    from fercore.analysis.summary import CSV_COLUMNS

    at = app(tiny_cache)
    at.run()
    at.switch_page("views/evidence.py").run()
    assert_clean(at)
    table = _ranked(at)
    shown = list(table.proto.column_order)
    assert shown[:3] == ["filter", "AU name", "stage reached"] and shown[-1] == "verdict"
    assert {"within-emotion AUC", "its 95 % interval, low", "q (Benjamini-Hochberg)"} <= set(shown)
    assert len(shown) < len(CSV_COLUMNS) and list(table.value.columns) == list(CSV_COLUMNS)  # all still there
    config = json.loads(table.proto.columns)
    assert config["within-emotion AUC"]["label"] == "AUC" and config["within-emotion AUC"]["width"] <= 80
    at.toggle(key="evidence_every_column").set_value(True).run()
    assert_clean(at)
    assert list(_ranked(at).proto.column_order) == []  # every column
    layer = at.selectbox(key="evidence_layer").value
    header = loaders.evidence_csv(str(at.session_state["run_dir"]), loaders.records_stamp(at.session_state["run_dir"]),
                                  (layer,)).splitlines()[0]
    assert header.split(",")[:3] == list(CSV_COLUMNS)[:3] and header.count(",") >= len(CSV_COLUMNS) - 1


def test_class_probabilities_fit_their_column_and_write_each_value():
    from app import charts

    spec = charts.class_probabilities(np.array([0.02, 0.92, 0.06]), ["anger", "happy", "sadness"])
    assert spec["width"] == "container" and spec["autosize"]["type"] == "fit-x"  # axes and labels inside
    frame = spec["datasets"]["probs"]
    assert list(frame["text"]) == ["0.02", "0.92", "0.06"]
    inside, outside = (layer["transform"][0]["filter"] for layer in spec["layer"][2:0:-1])
    assert ">= 0.8" in inside and "< 0.8" in outside  # 0.92 is written inside its bar, not past the axis


def test_the_curves_keep_their_legends_above_and_a_fixed_width():
    from app import charts

    spec = charts.time_panels([("A", {"filter #12": np.arange(5.0)}, "activation"),
                               ("B", {"AU4 brow lowerer": np.ones(5), "AU7 lid tightener": np.zeros(5)}, "intensity")],
                              frame=3, width=500)
    for view in spec["vconcat"]:
        assert view["width"] == 500
        line = view["layer"][-2]
        assert line["encoding"]["color"]["legend"]["orient"] == "top"
        assert line["encoding"]["y"]["axis"]["minExtent"] == 40  # the plots line up frame for frame
        assert view["layer"][-1]["data"] == {"name": "frame"}
    assert list(spec["datasets"]["frame"]["f"]) == [3]
    assert spec["vconcat"][1]["layer"][-2]["encoding"]["color"]["sort"] == ["AU4 brow lowerer", "AU7 lid tightener"]
