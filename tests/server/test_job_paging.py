"""Job lists page (``limit``/``skip`` on REST); the SDK walks every page."""

from __future__ import annotations

import httpx

from batchpoint import Input
from batchpoint.sdk.operations import _all_pages

from fixtures.flows import make_endpoint, unique


def test_pages_are_disjoint_and_the_sdk_walks_them(server, ml_client, heart_model, batch_cluster, heart_data):
    endpoint = make_endpoint(ml_client, unique("paging"))
    names = {ml_client.batch_endpoints.invoke(endpoint_name=endpoint, input=Input(path=heart_data.file_uri)).name
             for _ in range(3)}
    http = httpx.Client(base_url=server.url, headers=server.auth_headers(), timeout=30)
    pages = [http.get("/jobs", params={"endpoint": endpoint, "limit": 1, "skip": skip}).json() for skip in range(4)]
    assert [len(p) for p in pages] == [1, 1, 1, 0]
    assert {p[0]["name"] for p in pages[:3]} == names
    for url in (f"/batchEndpoints/{endpoint}/jobs", f"/batchEndpoints/{endpoint}/deployments/main/jobs"):
        assert {j["name"] for j in http.get(url, params={"limit": 2, "skip": 1}).json()} < names
    walked = _all_pages(ml_client.jobs._t, "/jobs", {"endpoint": endpoint}, None, size=1)
    assert {j.name for j in walked} == names == {j.name for j in ml_client.jobs.list(endpoint_name=endpoint)}
    assert len(ml_client.jobs.list(endpoint_name=endpoint, max_results=2)) == 2
    assert len(ml_client.batch_endpoints.list_jobs(endpoint)) == 3
    bad = http.get("/jobs", params={"limit": 0})
    assert bad.status_code in (400, 422) and "limit" in bad.text
    for name in names:
        ml_client.jobs.wait(name, timeout=120)
