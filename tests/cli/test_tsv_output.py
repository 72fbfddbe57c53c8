"""``-o tsv`` writes what ``az`` (knack's ``_TsvOutput``) writes for the same result, so scripts
ported from ``az ml`` keep working: one line per item of a list result, an object's or a list's
values tab-separated on one line (query order with ``--query``, else sorted keys), nested lists as
their length, nested objects as an empty field, nulls inside a row as ``None``, and a null result
as nothing. The expected texts are written out by hand from knack's rules (issue 10, item 12)."""

from __future__ import annotations

import pytest

from batchpoint.cli.output import render

JOB = {"name": "job-1", "status": "Completed", "tags": {"a": "b"}, "inputs": ["x", "y"], "error": None,
       "count": 3, "ok": True}


@pytest.mark.parametrize(("result", "query", "expected"), [
    # a list of scalars: one per line
    ([JOB, {**JOB, "name": "job-2"}], "[].name", "job-1\njob-2"),
    # a list of lists (az ml job list --query "[].[name,status]" -o tsv): one tab-separated line each
    ([JOB, {**JOB, "name": "job-2"}], "[].[name, status]", "job-1\tCompleted\njob-2\tCompleted"),
    # a multiselect hash keeps the query's order, not sorted keys
    (JOB, "{s: status, n: name}", "Completed\tjob-1"),
    # no query: an object's values in sorted-key order; list → its length, object → empty, null → None
    ({"b": 1, "a": [1, 2, 3], "c": {"x": 1}, "d": None}, None, "3\t1\t\tNone"),
    # inside a row a boolean is written as Python writes it; a lone boolean item in lower case
    (JOB, "[name, ok]", "job-1\ntrue"),
    ([{"ok": True, "n": 1}], "[].[n, ok]", "1\tTrue"),
    (JOB, "ok", "true"),
    # a null result prints nothing; a number prints as itself
    (JOB, "error", ""),
    (JOB, "count", "3"),
])
def test_tsv_matches_az(result: object, query: str | None, expected: str) -> None:
    assert render(result, "tsv", query) == expected
