"""The Parquet report's layout: row groups of whole batches up to a bound, statistics only
where a reader filters, and the same table as the report's own columns."""

from functools import lru_cache
from pathlib import Path

import pandas as pd
import pytest

from gradrun import layout, report, runner, spec

pq = pytest.importorskip("pyarrow.parquet")
ROOT = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=None)
def run(stem):
    return runner.run_spec(spec.load_spec(str(ROOT / "experiments" / f"{stem}.yaml")))


@pytest.mark.parametrize("bound", [7, 20, 10_000])
def test_row_groups_join_whole_batches_up_to_the_bound(tmp_path, monkeypatch, bound):
    results = run("chain")
    monkeypatch.setattr(layout, "CHUNK", 7)
    monkeypatch.setattr(report, "ROW_GROUP", bound)
    batches = [len(b) for b in layout.report_batches(results)]
    report.write_parquet(tmp_path / "r.parquet", results)
    meta = pq.ParquetFile(tmp_path / "r.parquet").metadata
    groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sum(groups) == sum(batches) == sum(r.rows for r in results)
    assert all(g <= bound for g in groups)
    # each group is a run of whole batches that the next batch would have overfilled
    ends, at = set(), 0
    for n in batches:
        at += n
        ends.add(at)
    at = 0
    for i, g in enumerate(groups):
        at += g
        assert at in ends
        if i + 1 < len(groups):
            following = batches[sorted(ends).index(at) + 1]
            assert g + following > bound
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "r.parquet"), layout.report_table(results).to_pandas(),
                                  check_exact=True)


def test_statistics_only_for_the_columns_readers_filter_by(tmp_path):
    results = run("chain")
    report.write_parquet(tmp_path / "r.parquet", results)
    meta = pq.ParquetFile(tmp_path / "r.parquet").metadata
    group = meta.row_group(0)
    with_stats = {group.column(j).path_in_schema for j in range(group.num_columns) if group.column(j).is_stats_set}
    assert with_stats == set(report.FILTERED)
    assert meta.num_row_groups == 1  # a small report is one row group
