"""The benchmark scripts run on the runs users have (they print figures; here they only must run)."""

import sys
from pathlib import Path

from test_record import make_faceset, make_run

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))


def test_bench_record_runs_on_a_run_whose_input_is_not_48_px(tmp_path, capsys):
    import bench_record

    run = make_run(tmp_path, make_faceset(n=24, size=32))
    bench_record.throughput(40, batch_size=16, repeats=1, run=str(run))
    out = capsys.readouterr().out
    assert "40 noise images 32x32" in out and "ratio median" in out and "projections on demand" in out
