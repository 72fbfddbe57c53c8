"""A compute of ``type: ray`` as users create it (CLI, SDK, REST), and what they meet when it is
wrong or Ray is not installed. None of these need the Ray cluster."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from conftest import record_secret
from batchpoint import AmlCompute
from batchpoint.engines import base
from batchpoint.exceptions import BackendNotInstalledError


def test_cli_creates_a_ray_compute_and_never_shows_its_token(cli: Any, server: Any) -> None:
    token = record_secret("ray-token-" + "b7" * 20)  # stop_server checks no server file holds it
    with tempfile.TemporaryDirectory() as where:  # the user's token file: outside the server home stop_server scans
        (Path(where) / "token").write_text(token + "\n")
        created = cli("compute", "create", "-n", "ray-cli", "--type", "ray", "--address", "127.0.0.1:6379",
                      "--auth-token-file", str(Path(where) / "token"), "--num-cpus-per-worker", "0.5")
    shown = cli("compute", "show", "-n", "ray-cli")
    with server.rest() as http:
        rest = http.get("/computes/ray-cli")
    for text in (created.out, shown.out, rest.text):
        assert token not in text and "auth_token" not in text
    assert '"type": "ray"' in shown.out and '"address": "127.0.0.1:6379"' in shown.out
    assert rest.json()["num_cpus_per_worker"] == 0.5


@pytest.mark.parametrize(("body", "wanted"), [
    ({"type": "ray"}, "a compute of type ray needs address"),
    ({"type": "ray", "address": "http://head:8265"}, "is not a Ray head address: give host:port"),
    ({"type": "amlcompute", "address": "10.0.0.5:6379"}, "address apply only to a compute of type ray"),
])
def test_rest_refuses_a_ray_compute_that_cannot_work(server: Any, body: dict, wanted: str) -> None:
    with server.rest() as http:
        response = http.put("/computes/ray-bad", json=body)
    assert response.status_code == 400, response.text
    assert wanted in response.text


def test_sdk_round_trip_keeps_the_address(ml_client: Any, ray_address: str) -> None:
    # the address must answer (compute create checks it, and one Ray cluster per workspace)
    got = ml_client.compute.begin_create_or_update(
        AmlCompute(name="ray-sdk", type="ray", address=ray_address, auth_token="t0ken")).result()
    assert (got.type, got.address, got.auth_token) == ("ray", ray_address, None)


def test_ray_compute_without_the_ray_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as when it is not installed
    monkeypatch.delitem(sys.modules, "batchpoint.engines.ray_engine", raising=False)
    with pytest.raises(BackendNotInstalledError, match=r"engine 'ray' needs a package .*\(ray\); run: "
                                                       r"pip install 'batchpoint\[ray\]'"):
        base.engine_for({"type": "ray", "name": "c", "address": "127.0.0.1:6379"})
