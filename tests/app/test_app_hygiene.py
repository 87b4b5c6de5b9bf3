"""The Runs view names damaged records (and what to do) and dates a run by its own metadata,
not by the time its files were copied."""

from __future__ import annotations

import datetime
import json
import os
import shutil

from test_app import _keep_cache_env, app, assert_clean  # noqa: F401 (the autouse fixture)

OLD = datetime.datetime(2001, 2, 3, 4, 5).timestamp()


def _copy(tiny_run, root, name):
    dest = root / "runs" / name
    shutil.copytree(tiny_run, dest)
    for p in [dest, *dest.rglob("*")]:
        os.utime(p, (OLD, OLD))  # a copy made long ago (cp -p, rsync -a) or restored from a backup
    return dest


def test_runs_view_names_damaged_records_and_dates_runs_by_their_metadata(tiny_run, tmp_path):
    good = _copy(tiny_run, tmp_path, "phantom-good-zero_bias-hard-00000001")
    cut = _copy(tiny_run, tmp_path, "phantom-cut-zero_bias-hard-00000002")
    size = (cut / "records.h5").stat().st_size
    with open(cut / "records.h5", "r+b") as f:
        f.truncate(size // 2)
    legacy = _copy(tiny_run, tmp_path, "phantom-legacy-zero_bias-hard-00000003")
    cfg = json.loads((legacy / "config.json").read_text())
    trained = datetime.datetime.fromisoformat(cfg.pop("trained")).astimezone()
    (legacy / "config.json").write_text(json.dumps(cfg))  # a run made before the date was stored
    os.utime(legacy / "config.json", (OLD, OLD))

    at = app(tmp_path)
    at.run()
    at.switch_page("views/runs.py").run()
    assert_clean(at)
    table = at.dataframe[0].value.set_index("run")
    assert table.loc[good.name, "recorded"] == "✓"
    assert table.loc[cut.name, "recorded"] == "damaged: record again"
    assert table.loc[cut.name, "analysed"] == "✗"
    warned = " ".join(w.value for w in at.warning)
    assert f"python -m fercore record --run {cut.name}" in warned and "truncated" in warned
    assert good.name not in warned
    assert table.loc[good.name, "trained or imported"] == f"{trained:%Y-%m-%d %H:%M}"
    assert table.loc[legacy.name, "trained or imported"] == "2001-02-03 04:05 (file time)"
    assert "file time" in " ".join(c.value for c in at.caption)
