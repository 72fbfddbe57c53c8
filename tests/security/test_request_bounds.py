"""Bounds on what a request may ask for: paging parameters and JSON nesting (no 500s).

Reproduces: ``GET /auditLog?limit=-2…`` and ``GET /jobs?skip=9223372036854775808`` answered 500
OverflowError; ``/auditLog?limit=-1`` returned the whole log past the 1,000 cap; arrays nested
1,000 deep sent to invoke answered 500 RecursionError.
"""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("url", [
    "/auditLog?limit=-1", "/auditLog?limit=-2", "/auditLog?limit=0", "/auditLog?limit=1001",
    "/auditLog?limit=99999999999999999999", "/jobs?skip=9223372036854775808", "/jobs?skip=-1",
    "/jobs?limit=0", "/jobs?limit=1001", "/batchEndpoints/x/jobs?skip=18446744073709551616",
])
def test_paging_parameters_are_bounded(server, url):
    with server.rest() as rest:
        response = rest.get(url)
    assert response.status_code == 400, (url, response.status_code, response.text)
    error = response.json()["error"]
    assert error["code"] == "validation_error" and ("limit" in error["message"] or "skip" in error["message"])


def test_audit_log_never_returns_more_than_a_page(server, ml_client):
    for i in range(3):
        ml_client.principals.create(f"user:bounds-{i}")
    with server.rest() as rest:
        assert len(rest.get("/auditLog?limit=2").json()) == 2
        assert len(rest.get("/auditLog?limit=1000").json()) <= 1000


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deeply_nested_json_is_a_400(server, depth):
    body = '{"properties": {"InputData": ' + "[" * depth + "]" * depth + "}}"
    with server.rest() as rest:
        response = rest.post("/batchEndpoints/nosuch/invoke", content=body,
                             headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text
        assert "nested too deeply" in response.json()["error"]["message"], response.text
        assert rest.get("/health").status_code == 200  # the server is fine afterwards
