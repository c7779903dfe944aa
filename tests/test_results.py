"""The results CSV: rows accumulate, old headers are upgraded, torn lines are repaired."""

from pathlib import Path

import pytest

from parablur import results
from parablur.errors import ResultsError


def test_rows_accumulate_with_one_header(tmp_path: Path):
    path = tmp_path / "r.csv"
    results.append_rows(path, [{"executor": "dask", "speedup": 1.9}])
    results.append_rows(path, [{"executor": "dask", "speedup": 1.8}, {"executor": "threads"}])
    text = path.read_text()
    assert text.count("schema_version,") == 1
    rows = results.read_rows(path)
    assert [r["executor"] for r in rows] == ["dask", "dask", "threads"]
    assert rows[0]["speedup"] == "1.9" and rows[0]["schema_version"] == str(results.SCHEMA_VERSION)


def test_old_header_is_upgraded_without_shifting(tmp_path: Path):
    path = tmp_path / "old.csv"
    path.write_text("timestamp,num_images,workers,seq_s,par_s,speedup\n2024-01-01,160,8,100,22,4.52\n")
    note = results.append_rows(path, [{"num_images": 16, "workers": 2, "speedup": 1.9}])
    assert note and "upgraded 1 rows" in note
    rows = results.read_rows(path)
    assert rows[0]["speedup"] == "4.52" and rows[0]["workers"] == "8" and rows[0]["executor"] == ""
    assert rows[1]["speedup"] == "1.9"


def test_torn_last_line_is_dropped(tmp_path: Path):
    path = tmp_path / "r.csv"
    results.append_rows(path, [{"executor": "dask", "speedup": 2.0}])
    with path.open("a") as fh:
        fh.write("1,2026-01-01,abc,bench,2,da")  # an append cut short
    assert len(results.read_rows(path)) == 1
    note = results.append_rows(path, [{"executor": "threads", "speedup": 1.5}])
    assert note and "torn" in note
    assert [r["executor"] for r in results.read_rows(path)] == ["dask", "threads"]


def test_foreign_csv_is_refused(tmp_path: Path):
    path = tmp_path / "x.csv"
    path.write_text("name,age\nbob,3\n")
    with pytest.raises(ResultsError, match="not a ParaBlur results CSV"):
        results.append_rows(path, [{"executor": "dask"}])


def test_unknown_keys_are_an_error_naming_them(tmp_path: Path):
    path = tmp_path / "r.csv"
    results.append_rows(path, [{"executor": "dask", "speedup": 1.9}])
    before = path.read_bytes()
    with pytest.raises(ResultsError, match="overlap_ios, speed_up"):
        results.append_rows(path, [{"executor": "dask", "speed_up": 2.0},
                                   {"executor": "threads", "overlap_ios": True}])
    assert path.read_bytes() == before  # nothing appended, nothing dropped silently


def test_overlap_io_is_a_column_added_at_the_end(tmp_path: Path):
    # Version 1 ended with parablur_version; every later column comes after it.
    first_new = results.COLUMNS.index("parablur_version") + 1
    assert results.COLUMNS[first_new] == "overlap_io"
    path = tmp_path / "v1.csv"
    v1 = results.COLUMNS[:first_new]
    path.write_text(",".join(v1) + "\n" + ",".join("1" if c == "schema_version" else
                                                    "dask" if c == "executor" else "" for c in v1)
                    + "\n")
    note = results.append_rows(path, [{"executor": "threads", "overlap_io": True}])
    assert note and "upgraded 1 rows" in note
    old, new = results.read_rows(path)
    assert (old["schema_version"], old["executor"], old["overlap_io"]) == ("1", "dask", "")
    assert new["overlap_io"] == "true" and new["schema_version"] == str(results.SCHEMA_VERSION)
